//! A real S3-compatible server for the tests: moto on a free 127.0.0.1 port,
//! started per test and killed on drop, plus raw-HTTP helpers to create
//! buckets and plant or read objects behind swamp's back.
#![allow(dead_code)]

use super::{wait_until, DEADLINE};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let moto = Moto { child, port };
        wait_until("moto answers", || moto.request("GET", "/", b"").is_some());
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one raw HTTP request; returns (status, body) or None if unreachable.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let status_line = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = status_line.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, raw[split + 4..].to_vec()))
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let (status, _) = self
            .request("PUT", &format!("/{bucket}"), b"")
            .expect("moto reachable");
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    /// Writes an object directly (as another tool or an attacker would).
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _) = self
            .request("PUT", &format!("/{bucket}/{key}"), body)
            .expect("moto reachable");
        assert_eq!(status, 200, "put {key}");
    }

    /// Reads an object directly; None if it does not exist.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        match self.request("GET", &format!("/{bucket}/{key}"), b"") {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Every key in a bucket (from ListObjectsV2's XML).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (_, body) = self
            .request("GET", &format!("/{bucket}?list-type=2&max-keys=1000"), b"")
            .expect("moto reachable");
        let text = String::from_utf8_lossy(&body);
        text.split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Freezes the server (requests hang) until `resume`.
    pub fn freeze(&self) {
        super::signal_group(self.child.id(), nix::sys::signal::Signal::SIGSTOP);
    }

    /// Resumes a frozen server.
    pub fn resume(&self) {
        super::signal_group(self.child.id(), nix::sys::signal::Signal::SIGCONT);
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGCONT);
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Sets the environment a swamp process needs to reach moto as "a machine"
/// whose swamp home (and so S3 cache) is `home`.
pub fn s3_env(cmd: &mut Command, moto: &Moto, home: &Path) {
    cmd.env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "y")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env("SWAMP_HOME", home)
        .env("SWAMP_S3_TIMEOUT_SECS", "20");
    let _ = moto;
}

/// Generous wait used by S3 tests.
pub const S3_DEADLINE: Duration = Duration::from_secs(120);
