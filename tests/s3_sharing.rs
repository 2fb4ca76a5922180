//! Two or more "machines" (separate SWAMP_HOME caches) sharing one S3
//! datastore through a real local S3 server (moto): writes, deletions and
//! same-size rewrites propagate; concurrent writers serialize through the S3
//! lock; a paused holder that lost its lock pushes nothing.

mod support;

use nix::sys::signal::Signal;
use serde_json::Value;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::s3::*;
use support::*;

const BUCKET: &str = "shared-bucket";
const PREFIX: &str = "proj";

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

/// moto with serialized request handling (see `SERIAL_MOTO`).
struct SerialMoto {
    child: std::process::Child,
    port: u16,
}

impl SerialMoto {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args(["-c", SERIAL_MOTO, &port.to_string()])
            .env("MOTO_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start moto");
        let moto = SerialMoto { child, port };
        wait_until("serial moto answers", || {
            raw(moto.port, "GET", "/", b"").is_some()
        });
        moto
    }
}

impl Drop for SerialMoto {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One raw HTTP request; returns (status, body).
fn raw(port: u16, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: AWS x:y\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).ok()?;
    stream.write_all(body).ok()?;
    let mut resp = Vec::new();
    stream.read_to_end(&mut resp).ok()?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = String::from_utf8_lossy(&resp[..split])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((status, resp[split + 4..].to_vec()))
}

/// The S3 server of a test.
enum Server {
    /// The harness's moto.
    Plain(Moto),
    /// moto with serialized requests.
    Serial(SerialMoto),
}

impl Server {
    fn port(&self) -> u16 {
        match self {
            Server::Plain(m) => m.port,
            Server::Serial(m) => m.port,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    fn keys(&self) -> Vec<String> {
        match self {
            Server::Plain(m) => m.keys(BUCKET),
            Server::Serial(m) => {
                let (_, body) = raw(
                    m.port,
                    "GET",
                    &format!("/{BUCKET}?list-type=2&max-keys=1000"),
                    b"",
                )
                .expect("moto reachable");
                String::from_utf8_lossy(&body)
                    .split("<Key>")
                    .skip(1)
                    .filter_map(|s| s.split("</Key>").next())
                    .map(str::to_string)
                    .collect()
            }
        }
    }
}

/// A test world: one S3 server with a bucket, one repo already set up on S3.
struct World {
    server: Server,
    repo: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
        Self::with(Server::Plain(Moto::start()))
    }

    fn serial() -> Self {
        Self::with(Server::Serial(SerialMoto::start()))
    }

    fn with(server: Server) -> Self {
        let (status, _) =
            raw(server.port(), "PUT", &format!("/{BUCKET}"), b"").expect("moto reachable");
        assert_eq!(status, 200, "create bucket");
        let w = World {
            server,
            repo: init_repo(),
        };
        let setup_home = tempfile::tempdir().unwrap();
        let endpoint = w.server.endpoint();
        w.ok(
            setup_home.path(),
            &[
                "datastore",
                "setup",
                "s3",
                "--bucket",
                BUCKET,
                "--prefix",
                PREFIX,
                "--endpoint-url",
                &endpoint,
            ],
        );
        w
    }

    fn on(&self, home: &Path) -> Command {
        let mut cmd = swamp(self.repo.path());
        match &self.server {
            Server::Plain(moto) => s3_env(&mut cmd, moto, home),
            Server::Serial(_) => {
                // What `s3_env` sets, for a server that is not a harness `Moto`.
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
            }
        }
        cmd
    }

    fn run_on(&self, home: &Path, args: &[&str]) -> Output {
        run(self.on(home).args(args))
    }

    fn ok(&self, home: &Path, args: &[&str]) -> Vec<u8> {
        let out = self.run_on(home, args);
        assert!(
            out.status.success(),
            "swamp {args:?} failed ({:?}): {}",
            out.status,
            stderr(&out)
        );
        out.stdout
    }

    fn json(&self, home: &Path, args: &[&str]) -> Value {
        let mut full = vec!["--json"];
        full.extend_from_slice(args);
        serde_json::from_slice(&self.ok(home, &full)).expect("json")
    }

    /// `exec -- sh -c SCRIPT`; returns its stdout.
    fn sh(&self, home: &Path, script: &str) -> Vec<u8> {
        self.ok(home, &["exec", "--", "sh", "-c", script])
    }

    fn put(&self, home: &Path, name: &str, content: &[u8]) {
        let mut cmd = self.on(home);
        cmd.args(["data", "put", name, "--file", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn put");
        child.stdin.take().unwrap().write_all(content).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "put {name}: {}", stderr(&out));
    }

    fn cache(&self, home: &Path) -> PathBuf {
        let v = self.json(home, &["datastore", "status"]);
        PathBuf::from(v["cachePath"].as_str().expect("cachePath"))
    }

    fn rel_keys(&self) -> Vec<String> {
        self.server
            .keys()
            .into_iter()
            .filter_map(|k| k.strip_prefix(&format!("{PREFIX}/")).map(str::to_string))
            .collect()
    }

    fn lock_status(&self, home: &Path) -> Value {
        self.json(home, &["datastore", "lock", "status"])
    }
}

/// Reads `outputs/NAME` through `exec` on `home` ("" if absent).
fn read_output(w: &World, home: &Path, name: &str) -> String {
    let script = format!(r#"cat "$SWAMP_DATASTORE_DIR/outputs/{name}" 2>/dev/null || true"#);
    String::from_utf8(w.sh(home, &script)).unwrap()
}

fn write_output(w: &World, home: &Path, name: &str, content: &str) {
    let script = format!(
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs" && printf '{content}' > "$SWAMP_DATASTORE_DIR/outputs/{name}""#
    );
    w.sh(home, &script);
}

#[test]
fn writes_on_one_machine_are_seen_on_another() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();

    w.put(a.path(), "app/config", b"replicas: 3\n");
    assert_eq!(
        w.ok(b.path(), &["data", "get", "app/config"]),
        b"replicas: 3\n"
    );
    // A second version from B is seen on A.
    w.put(b.path(), "app/config", b"replicas: 4\n");
    assert_eq!(
        w.ok(a.path(), &["data", "get", "app/config"]),
        b"replicas: 4\n"
    );
    let v = w.json(a.path(), &["data", "versions", "app/config"]);
    assert_eq!(v["versions"].as_array().unwrap().len(), 2, "{v}");

    // Files written by any command through exec.
    write_output(&w, a.path(), "f", "AAAA");
    assert!(w.rel_keys().contains(&"outputs/f".to_string()));
    assert_eq!(read_output(&w, b.path(), "f"), "AAAA");
    assert_eq!(
        std::fs::read(w.cache(b.path()).join("outputs/f")).unwrap(),
        b"AAAA"
    );

    // A same-size rewrite propagates (content, not size, decides).
    write_output(&w, a.path(), "f", "BBBB");
    assert_eq!(read_output(&w, b.path(), "f"), "BBBB");
    assert_eq!(
        std::fs::read(w.cache(b.path()).join("outputs/f")).unwrap(),
        b"BBBB"
    );
    // ... and back the other way.
    write_output(&w, b.path(), "f", "CCCC");
    assert_eq!(read_output(&w, a.path(), "f"), "CCCC");

    // Nested directories travel too.
    w.sh(
        a.path(),
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps" && echo done > "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps/s1""#,
    );
    let got = w.sh(
        b.path(),
        r#"cat "$SWAMP_DATASTORE_DIR/workflow-runs/r1/steps/s1""#,
    );
    assert_eq!(got, b"done\n");
}

#[test]
fn deletions_propagate_both_ways() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    w.put(a.path(), "app/config", b"x\n");
    w.put(a.path(), "keep/me", b"y\n");
    assert_eq!(w.ok(b.path(), &["data", "get", "app/config"]), b"x\n");
    let cache_a = w.cache(a.path());
    assert!(cache_a.join("data/app/config/@versions/1.bin").exists());

    // rm on B → gone on A (and from A's cache after A's next command).
    w.ok(b.path(), &["data", "rm", "app/config"]);
    let out = w.run_on(a.path(), &["data", "get", "app/config"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    assert!(!cache_a.join("data/app/config/@versions/1.bin").exists());
    assert!(!cache_a.join("data/app/config/@versions/1.json").exists());
    assert_eq!(w.ok(a.path(), &["data", "get", "keep/me"]), b"y\n");
    let keys = w.rel_keys();
    assert!(
        !keys.iter().any(|k| k.starts_with("data/app/config/")),
        "{keys:?}"
    );

    // A file removed via exec on A → gone from B's cache after B's next command.
    write_output(&w, a.path(), "doomed", "bye");
    assert_eq!(read_output(&w, b.path(), "doomed"), "bye");
    let cache_b = w.cache(b.path());
    assert!(cache_b.join("outputs/doomed").exists());
    w.sh(a.path(), r#"rm "$SWAMP_DATASTORE_DIR/outputs/doomed""#);
    assert!(!w.rel_keys().contains(&"outputs/doomed".to_string()));
    assert!(cache_b.join("outputs/doomed").exists(), "not yet pulled");
    w.ok(b.path(), &["data", "list"]);
    assert!(!cache_b.join("outputs/doomed").exists());
    assert_eq!(read_output(&w, b.path(), "doomed"), "");
}

/// Increments `outputs/counter` with a pause between read and write, so two
/// writers not serialized by the lock would certainly lose an update.
const INCREMENT: &str = r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; c="$SWAMP_DATASTORE_DIR/outputs/counter"; n=$(cat "$c" 2>/dev/null || echo 0); sleep 0.01; echo $((n+1)) > "$c""#;

#[test]
fn eight_processes_on_two_machines_times_20_increments_lose_nothing() {
    let w = std::sync::Arc::new(World::serial());
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let homes = [a.path().to_path_buf(), b.path().to_path_buf()];
    let workers: Vec<_> = (0..8)
        .map(|i| {
            let w = w.clone();
            let home = homes[i % 2].clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let out = w.run_on(
                        &home,
                        &["--lock-timeout", "600", "exec", "--", "sh", "-c", INCREMENT],
                    );
                    assert!(
                        out.status.success(),
                        "worker {i} round {round} failed ({:?}): {}",
                        out.status,
                        stderr(&out)
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    let c = tempfile::tempdir().unwrap();
    assert_eq!(read_output(&w, c.path(), "counter").trim(), "160");
    assert_eq!(w.lock_status(c.path())["held"], false);
}

/// Kills a stopped process group if the test fails half-way.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0 as i32);
        let _ = nix::sys::signal::killpg(pid, Signal::SIGCONT);
        let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
    }
}

#[test]
fn a_paused_holder_loses_its_lock_and_pushes_nothing() {
    let w = World::new();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let mark = tempfile::tempdir().unwrap();
    let m = mark.path().display().to_string();
    let holder_err = mark.path().join("holder.stderr");
    let script = format!(
        r#"mkdir -p "$SWAMP_DATASTORE_DIR/outputs"; printf mine > "$SWAMP_DATASTORE_DIR/outputs/holder"; touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done"#
    );
    let mut holder = w
        .on(a.path())
        .env("SWAMP_LOCK_TTL_MS", "3000")
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&holder_err).unwrap())
        .process_group(0)
        .spawn()
        .expect("spawn holder");
    let guard = GroupGuard(holder.id());
    wait_until("holder started", || mark.path().join("started").exists());
    assert!(w.lock_status(b.path())["held"] == true);

    signal_group(holder.id(), Signal::SIGSTOP);
    let start = Instant::now();
    loop {
        let v = w.lock_status(b.path());
        if v["lock"]["stale"] == true {
            break;
        }
        assert_eq!(
            v["held"], true,
            "lock vanished while the holder is stopped: {v}"
        );
        assert!(
            start.elapsed() < S3_DEADLINE,
            "lock never became stale: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The taker on machine B takes the stale lock over and writes.
    write_output(&w, b.path(), "taker", "taker");
    assert!(w.rel_keys().contains(&"outputs/taker".to_string()));

    // The holder wakes up, finds its lease expired and stops without pushing.
    signal_group(holder.id(), Signal::SIGCONT);
    let status = wait_child(&mut holder);
    drop(guard);
    let err = std::fs::read_to_string(&holder_err).unwrap();
    assert_eq!(status.code(), Some(75), "holder: {status:?} {err}");
    assert!(err.contains("lock lost"), "{err}");

    let c = tempfile::tempdir().unwrap();
    w.ok(c.path(), &["datastore", "sync", "--pull"]);
    let keys = w.rel_keys();
    assert!(keys.contains(&"outputs/taker".to_string()), "{keys:?}");
    assert!(
        !keys.contains(&"outputs/holder".to_string()),
        "the holder pushed after losing its lock: {keys:?}"
    );
    let cache_c = w.cache(c.path());
    assert_eq!(
        std::fs::read(cache_c.join("outputs/taker")).unwrap(),
        b"taker"
    );
    assert!(!cache_c.join("outputs/holder").exists());
    // The holder did not delete the taker's lock record either; it is free now.
    assert_eq!(w.lock_status(c.path())["held"], false);
}
