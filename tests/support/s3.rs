//! A real S3-compatible server for the tests: moto on a free 127.0.0.1 port,
//! started per test and killed on drop, plus raw-HTTP helpers to create
//! buckets and plant or read objects behind swamp's back, and a `World` of
//! one moto, one bucket and one repo that runs swamp as several "machines".
#![allow(dead_code)]

use super::{init_repo, kill_group, read_config, run, stderr, swamp, wait_until, DEADLINE};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Generous wait used by S3 tests.
pub const S3_DEADLINE: Duration = Duration::from_secs(120);

/// The key prefix every S3 test sets its datastore up under.
pub const PREFIX: &str = "proj";

/// The key of the remote index under `PREFIX`.
pub fn index_key() -> String {
    format!("{PREFIX}/.datastore-index.json")
}

/// moto's server handles requests on threads and checks `If-None-Match: *` /
/// `If-Match` in a separate step from the write, so two concurrent
/// conditional creates of the lock object can both succeed (real S3 makes the
/// condition and the write atomic). For tests where many processes race for
/// the lock, moto runs behind one lock around the whole WSGI app, which gives
/// conditional writes the atomicity S3 guarantees.
const SERIAL_MOTO: &str = r#"
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serial(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple("127.0.0.1", int(sys.argv[1]), serial, threaded=True)
"#;

/// A running moto server.
pub struct Moto {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Moto {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        Self::spawn("moto answers", |cmd, port| {
            cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", port]);
        })
    }

    /// Starts moto with serialized request handling (see `SERIAL_MOTO`) and
    /// waits until it answers.
    pub fn start_serial() -> Self {
        Self::spawn("serial moto answers", |cmd, port| {
            cmd.args(["-c", SERIAL_MOTO, port]).env("MOTO_PORT", port);
        })
    }

    /// Runs `python3` with the arguments `args` adds for a free port, in its
    /// own process group, and waits until it answers.
    fn spawn(what: &str, args: impl FnOnce(&mut Command, &str)) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new("python3");
        args(&mut cmd, &port.to_string());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let moto = Moto { child, port };
        wait_until(what, || moto.request("GET", "/", b"").is_some());
        moto
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one raw HTTP request; returns (status, body) or None if unreachable.
    ///
    /// It carries an `Authorization` header: moto answers 403 to anonymous
    /// reads and overwrites of objects that were written with credentials (it
    /// applies their ACL), so unsigned requests could not touch what swamp
    /// wrote; moto does not verify signatures, so any header will do.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: AWS x:y\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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

    /// Writes (or overwrites) an object directly, as another tool or an
    /// attacker would.
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
        kill_group(self.child.id());
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

/// A test world: one moto with a bucket and one repo, run as any number of
/// "machines" (each a swamp home with its own S3 cache). Test files add their
/// own constructors in an `impl World` block of their own.
pub struct World {
    pub moto: Moto,
    pub repo: TempDir,
    /// The bucket in `moto` the repo's datastore lives in (under `PREFIX`).
    pub bucket: &'static str,
}

impl World {
    /// `moto` with `bucket` created, and a fresh repo still on its local
    /// datastore.
    pub fn create(moto: Moto, bucket: &'static str) -> Self {
        moto.create_bucket(bucket);
        World {
            moto,
            repo: init_repo(),
            bucket,
        }
    }

    /// A swamp command on the "machine" whose swamp home is `home`.
    pub fn on(&self, home: &Path) -> Command {
        let mut cmd = swamp(self.repo.path());
        s3_env(&mut cmd, &self.moto, home);
        cmd
    }

    pub fn run_on(&self, home: &Path, args: &[&str]) -> Output {
        run(self.on(home).args(args))
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, home: &Path, args: &[&str]) -> Vec<u8> {
        let out = self.run_on(home, args);
        assert!(
            out.status.success(),
            "swamp {args:?} failed ({:?}): {}",
            out.status,
            stderr(&out)
        );
        out.stdout
    }

    /// `ok` with `--json`; stdout parsed.
    pub fn json(&self, home: &Path, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        let stdout = self.ok(home, &full);
        serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "swamp {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&stdout)
            )
        })
    }

    /// `exec -- sh -c SCRIPT`.
    pub fn run_sh(&self, home: &Path, script: &str) -> Output {
        self.run_on(home, &["exec", "--", "sh", "-c", script])
    }

    /// `exec -- sh -c SCRIPT`, insisting on success; returns its stdout.
    pub fn sh(&self, home: &Path, script: &str) -> Vec<u8> {
        self.ok(home, &["exec", "--", "sh", "-c", script])
    }

    /// The arguments of `datastore setup s3` for the bucket, `PREFIX` and moto.
    pub fn setup_args(&self) -> Vec<String> {
        [
            "datastore",
            "setup",
            "s3",
            "--bucket",
            self.bucket,
            "--prefix",
            PREFIX,
            "--endpoint-url",
            &self.moto.endpoint(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `datastore setup s3` with the test bucket/prefix; its JSON report.
    pub fn setup(&self, home: &Path) -> Value {
        let args = self.setup_args();
        let mut full: Vec<&str> = vec!["--json"];
        full.extend(args.iter().map(String::as_str));
        let stdout = self.ok(home, &full);
        serde_json::from_slice(&stdout).expect("setup json")
    }

    /// `data put NAME` with `content` on stdin.
    pub fn put(&self, home: &Path, name: &str, content: &[u8]) -> Output {
        let mut cmd = self.on(home);
        cmd.args(["data", "put", name, "--file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn put");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(content)
            .expect("stdin");
        child.wait_with_output().expect("wait put")
    }

    /// `put`, insisting on success.
    pub fn put_ok(&self, home: &Path, name: &str, content: &[u8]) {
        let out = self.put(home, name, content);
        assert!(out.status.success(), "put {name}: {}", stderr(&out));
    }

    /// The S3 cache of the "machine" `home` (from `datastore status`).
    pub fn cache(&self, home: &Path) -> PathBuf {
        let v = self.json(home, &["datastore", "status"]);
        PathBuf::from(v["cachePath"].as_str().expect("cachePath"))
    }

    /// `.swamp.yaml` of the repo.
    pub fn config(&self) -> String {
        read_config(self.repo.path())
    }

    /// Every key in the bucket.
    pub fn keys(&self) -> Vec<String> {
        self.moto.keys(self.bucket)
    }

    /// Keys under the prefix, without the prefix.
    pub fn rel_keys(&self) -> Vec<String> {
        self.keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&format!("{PREFIX}/")).map(str::to_string))
            .collect()
    }

    /// Writes (or overwrites) the object `key` of the bucket behind swamp's back.
    pub fn plant(&self, key: &str, body: &[u8]) {
        self.moto.put_object(self.bucket, key, body);
    }

    /// Reads the object `key` of the bucket behind swamp's back.
    pub fn fetch(&self, key: &str) -> Option<Vec<u8>> {
        self.moto.get_object(self.bucket, key)
    }

    /// The remote index as JSON.
    pub fn index(&self) -> Value {
        let bytes = self.fetch(&index_key()).expect("index");
        serde_json::from_slice(&bytes).expect("index json")
    }
}
