//! A scripted, fault-injecting HTTP/1.1 proxy between a client (swamp, the
//! AWS SDK, raw HTTP) and one upstream server on 127.0.0.1 (moto), so tests
//! can make S3 lose replies, answer 503/409/500, reset mid-body, stall, or
//! ignore conditional headers at a chosen request.
//!
//! The model:
//! - Each client connection gets one thread that reads one request at a time
//!   in full (request line, headers, a body framed by `Content-Length` or
//!   `Transfer-Encoding: chunked`), for as many requests as the connection
//!   carries (keep-alive). Bytes are forwarded as they came: header lines
//!   verbatim, a chunked body still chunked.
//! - A complete request is recorded as a [`Seen`] and checked against the
//!   [`Rule`]s in the order they were added. A rule lets the first `skip`
//!   requests matching it through, then applies its [`Fault`] to the next
//!   `times`; the first rule that applies decides, and later rules do not
//!   see (or count) that request. Rules can be added and removed while
//!   requests are in flight.
//! - A forwarded request goes to upstream on a fresh connection; the whole
//!   response (framed by `Content-Length`, chunked, nothing for HEAD/1xx/204/304,
//!   or the end of the stream) is read before anything is written back, so a
//!   write the client never hears about has really landed.
//! - `Connection` is hop-by-hop: moto closes every connection, but the
//!   client's stays open across requests as it would with S3, unless the
//!   client asks to close or a response is framed by the end of the stream.
//! - An exchange has *arrived* once its request is read and its fault
//!   decided, and is *done* once the proxy has its answer (upstream replied,
//!   the stall ended, ...) and is about to write it or close the connection:
//!   a forwarded write has landed upstream by then, and a client never sees
//!   an outcome its record does not show yet. `count`/`wait_for` count done
//!   exchanges and `wait_for_arrivals` arrived ones; both wait on a condition
//!   variable.
//! - Dropping the proxy stops the accept loop (a stop flag and a self-connect),
//!   shuts down every client and upstream socket, wakes stalled requests, and
//!   joins every thread it started, so nothing outlives the test, even one that
//!   panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The conditional request headers `Fault::StripConditionalHeaders` removes.
pub const CONDITIONAL_HEADERS: [&str; 4] = [
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Longest request/status/header line or header block accepted, in bytes.
const MAX_HEAD: u64 = 64 * 1024;

/// What a rule does to a request it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward, read upstream's whole response, then close the client
    /// connection without sending a byte of it.
    LoseReply,
    /// Answer `status` with an S3 XML error of code `s3_code` without forwarding.
    Status(u16, &'static str),
    /// Answer as S3 does for a bucket in another region: `301
    /// PermanentRedirect` with `x-amz-bucket-region` naming it.
    WrongRegion(&'static str),
    /// Forward, send the response head and half the body, then reset the
    /// connection (SO_LINGER 0; bytes the kernel had not yet sent are lost too).
    ResetMidBody,
    /// Hold the request unanswered for the duration (or until the proxy is
    /// dropped), then close the connection; nothing is forwarded.
    Stall(Duration),
    /// Hold the request unforwarded until `FaultProxy::release_held` (or the
    /// proxy is dropped), then forward it and answer as usual: a request
    /// that reaches the store late, e.g. after its sender lost its lock.
    HoldUntilReleased,
    /// Forward without `If-Match`, `If-None-Match`, `If-Modified-Since` and
    /// `If-Unmodified-Since` (as a store that ignores them would behave).
    StripConditionalHeaders,
}

/// Which requests a rule (or a count) is about; every condition set must hold.
#[derive(Clone, Debug, Default)]
pub struct Match {
    method: Option<String>,
    key_suffix: Option<String>,
    key_contains: Vec<String>,
    query_contains: Vec<String>,
    has_header: Vec<String>,
    lacks_header: Vec<String>,
}

impl Match {
    /// Every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Requests with this method (case-insensitive).
    pub fn method(method: &str) -> Self {
        Match {
            method: Some(method.to_ascii_uppercase()),
            ..Self::default()
        }
    }

    /// GET requests.
    pub fn get() -> Self {
        Self::method("GET")
    }

    /// PUT requests.
    pub fn put() -> Self {
        Self::method("PUT")
    }

    /// DELETE requests.
    pub fn delete() -> Self {
        Self::method("DELETE")
    }

    /// HEAD requests.
    pub fn head() -> Self {
        Self::method("HEAD")
    }

    /// POST requests.
    pub fn post() -> Self {
        Self::method("POST")
    }

    /// Whose path (without query, as sent: path-style `/bucket/key`,
    /// percent-encoded) ends with `suffix`.
    pub fn key_suffix(mut self, suffix: &str) -> Self {
        self.key_suffix = Some(suffix.to_string());
        self
    }

    /// Whose path (without query, as sent) contains `part`.
    pub fn key_contains(mut self, part: &str) -> Self {
        self.key_contains.push(part.to_string());
        self
    }

    /// Whose query string (as sent) contains `part`, e.g. `uploadId` or `list-type`.
    pub fn query_contains(mut self, part: &str) -> Self {
        self.query_contains.push(part.to_string());
        self
    }

    /// That carry the header `name` (case-insensitive).
    pub fn has_header(mut self, name: &str) -> Self {
        self.has_header.push(name.to_ascii_lowercase());
        self
    }

    /// That do not carry the header `name` (case-insensitive).
    pub fn lacks_header(mut self, name: &str) -> Self {
        self.lacks_header.push(name.to_ascii_lowercase());
        self
    }

    /// Whether the request `seen` fits.
    pub fn matches(&self, seen: &Seen) -> bool {
        self.method.as_ref().is_none_or(|m| *m == seen.method)
            && self
                .key_suffix
                .as_ref()
                .is_none_or(|s| seen.path.ends_with(s.as_str()))
            && self
                .key_contains
                .iter()
                .all(|s| seen.path.contains(s.as_str()))
            && self
                .query_contains
                .iter()
                .all(|s| seen.query.contains(s.as_str()))
            && self.has_header.iter().all(|h| seen.header(h).is_some())
            && self.lacks_header.iter().all(|h| seen.header(h).is_none())
    }
}

/// A fault applied to some of the requests a `Match` selects.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The requests the rule is about.
    pub matcher: Match,
    /// What it does to them.
    pub fault: Fault,
    /// How many matching requests it lets through untouched first.
    pub skip: usize,
    /// How many matching requests it then applies to (`usize::MAX`: all).
    pub times: usize,
}

impl Rule {
    /// `fault` on every request `matcher` selects.
    pub fn new(matcher: Match, fault: Fault) -> Self {
        Rule {
            matcher,
            fault,
            skip: 0,
            times: usize::MAX,
        }
    }

    /// Lets the first `n` matching requests through untouched.
    pub fn skip(mut self, n: usize) -> Self {
        self.skip = n;
        self
    }

    /// Applies to `n` matching requests (after the skipped ones), then no more.
    pub fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
}

/// Names a rule added to a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleId(usize);

/// One request the proxy read, and what became of it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Order of arrival, from 0.
    pub seq: usize,
    /// Which client connection carried it (in order of acceptance, from 0).
    pub connection: usize,
    /// Upper-case method.
    pub method: String,
    /// Request path without the query, as sent (percent-encoded).
    pub path: String,
    /// Query string without `?`, as sent; empty if none.
    pub query: String,
    /// Header names and values as the client sent them (before any stripping).
    pub headers: Vec<(String, String)>,
    /// Length of the body as sent (chunk framing included, if chunked).
    pub body_len: usize,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
    /// Status upstream answered, if the request was forwarded and answered.
    pub upstream_status: Option<u16>,
    /// Status the proxy answered the client with (None: no response head).
    pub status: Option<u16>,
    /// Whether the exchange is done (its answer decided; see the module docs).
    pub done: bool,
}

impl Seen {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A rule with its counters.
struct Scripted {
    id: RuleId,
    rule: Rule,
    /// Matching requests seen so far (skipped ones included).
    matched: usize,
    /// Requests it applied to.
    applied: usize,
}

/// Everything the proxy's threads share, behind one mutex.
#[derive(Default)]
struct State {
    stopped: bool,
    /// Set by `release_held`: held requests go on.
    released: bool,
    rules: Vec<Scripted>,
    next_rule: usize,
    seen: Vec<Seen>,
    /// Clones of every open client and upstream socket, to shut down on drop.
    sockets: HashMap<usize, TcpStream>,
    next_socket: usize,
    connections: usize,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every arrival, completion and on stop.
    changed: Condvar,
    upstream_port: u16,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a clone of `stream` to shut down on drop; None once stopped.
    fn register(&self, stream: &TcpStream) -> Option<usize> {
        let clone = stream.try_clone().ok()?;
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        let id = state.next_socket;
        state.next_socket += 1;
        state.sockets.insert(id, clone);
        Some(id)
    }

    /// Drops the clone kept by `register`, so closing `stream` really closes it.
    fn forget(&self, id: usize) {
        self.lock().sockets.remove(&id);
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Records a complete request and decides its fault.
    fn arrive(&self, mut seen: Seen) -> (usize, Option<Fault>) {
        let mut state = self.lock();
        seen.seq = state.seen.len();
        let mut fault = None;
        for scripted in state.rules.iter_mut() {
            if !scripted.rule.matcher.matches(&seen) {
                continue;
            }
            scripted.matched += 1;
            let past_skip = scripted.matched > scripted.rule.skip;
            if past_skip && scripted.applied < scripted.rule.times {
                scripted.applied += 1;
                fault = Some(scripted.rule.fault.clone());
                break;
            }
        }
        seen.fault = fault.clone();
        let seq = seen.seq;
        state.seen.push(seen);
        self.changed.notify_all();
        (seq, fault)
    }

    /// Marks exchange `seq` done with what upstream and the client got.
    fn finish(&self, seq: usize, upstream_status: Option<u16>, status: Option<u16>) {
        let mut state = self.lock();
        if let Some(seen) = state.seen.get_mut(seq) {
            seen.upstream_status = upstream_status;
            seen.status = status;
            seen.done = true;
        }
        self.changed.notify_all();
    }

    /// Waits until `release_held` was called or the proxy stopped.
    fn hold(&self) {
        let mut state = self.lock();
        while !state.stopped && !state.released {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits until `duration` passed or the proxy stopped.
    fn stall(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            if state.stopped || now >= until {
                return;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The proxy; see the module docs. Stops and joins its threads on drop.
pub struct FaultProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards to `upstream_port` there.
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            upstream_port,
        });
        let for_accept = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{port}-accept"))
            .spawn(move || accept_loop(listener, for_accept))
            .expect("spawn the proxy's accept thread");
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    /// Lets every request held by `Fault::HoldUntilReleased` go on (and any
    /// later one through at once).
    pub fn release_held(&self) {
        self.shared.lock().released = true;
        self.shared.changed.notify_all();
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds `rule` after the existing ones; it applies from the next request on.
    pub fn add(&self, rule: Rule) -> RuleId {
        let mut state = self.shared.lock();
        let id = RuleId(state.next_rule);
        state.next_rule += 1;
        state.rules.push(Scripted {
            id,
            rule,
            matched: 0,
            applied: 0,
        });
        id
    }

    /// Removes the rule `id` (requests already faulted stay faulted).
    pub fn remove(&self, id: RuleId) {
        self.shared.lock().rules.retain(|s| s.id != id);
    }

    /// Removes every rule: from now on everything passes through.
    pub fn clear(&self) {
        self.shared.lock().rules.clear();
    }

    /// How many requests rule `id` applied its fault to (0 once removed).
    pub fn applied(&self, id: RuleId) -> usize {
        let state = self.shared.lock();
        state
            .rules
            .iter()
            .find(|s| s.id == id)
            .map_or(0, |s| s.applied)
    }

    /// Every request read so far, in order of arrival.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.lock().seen.clone()
    }

    /// The requests read since the `from`-th, as "METHOD path" (take `from`
    /// from `seen().len()` before the command).
    pub fn requests_since(&self, from: usize) -> Vec<String> {
        self.shared.lock().seen[from..]
            .iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// Asserts that `requests` (from `requests_since`) are all GETs or
    /// HEADs, and that there are some.
    pub fn assert_reads_only(requests: &[String]) {
        assert!(
            !requests.is_empty()
                && requests
                    .iter()
                    .all(|r| r.starts_with("GET ") || r.starts_with("HEAD ")),
            "{requests:#?}"
        );
    }

    /// The done exchanges `m` selects.
    pub fn count(&self, m: &Match) -> usize {
        let state = self.shared.lock();
        state.seen.iter().filter(|s| s.done && m.matches(s)).count()
    }

    /// How many client connections were accepted.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Waits until `n` exchanges `m` selects are done (see the module docs);
    /// returns them. Panics after `deadline`, listing what was seen.
    pub fn wait_for(&self, m: &Match, n: usize, deadline: Duration) -> Vec<Seen> {
        self.wait(m, n, deadline, true)
    }

    /// Waits until `n` requests `m` selects have arrived (read in full, fault
    /// decided, maybe not yet answered); returns them. Panics after `deadline`.
    pub fn wait_for_arrivals(&self, m: &Match, n: usize, deadline: Duration) -> Vec<Seen> {
        self.wait(m, n, deadline, false)
    }

    fn wait(&self, m: &Match, n: usize, deadline: Duration, done: bool) -> Vec<Seen> {
        let until = Instant::now() + deadline;
        let mut state = self.shared.lock();
        loop {
            let hits: Vec<Seen> = state
                .seen
                .iter()
                .filter(|s| (s.done || !done) && m.matches(s))
                .cloned()
                .collect();
            if hits.len() >= n {
                return hits;
            }
            let now = Instant::now();
            if now >= until {
                let all: Vec<String> = state.seen.iter().map(summary).collect();
                drop(state);
                panic!(
                    "timed out after {deadline:?} waiting for {n} {} requests matching {m:?} \
                     (got {}); seen:\n{}",
                    if done { "done" } else { "arrived" },
                    hits.len(),
                    all.join("\n")
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One line about a seen request, for failure messages.
fn summary(s: &Seen) -> String {
    format!(
        "#{} conn {} {} {}{}{} fault={:?} upstream={:?} status={:?} done={}",
        s.seq,
        s.connection,
        s.method,
        s.path,
        if s.query.is_empty() { "" } else { "?" },
        s.query,
        s.fault,
        s.upstream_status,
        s.status,
        s.done
    )
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stopped = true;
            for socket in state.sockets.values() {
                let _ = socket.shutdown(Shutdown::Both);
            }
            state.sockets.clear();
            self.shared.changed.notify_all();
        }
        // Unblock accept(); it sees the stop flag and ends.
        let unblocked = TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        if let Some(accept) = self.accept.take() {
            if unblocked {
                let _ = accept.join();
            }
        }
        let threads = std::mem::take(&mut self.shared.lock().threads);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped() {
            return;
        }
        let Ok(client) = client else { continue };
        let Some(socket) = shared.register(&client) else {
            return;
        };
        let for_thread = shared.clone();
        let mut state = shared.lock();
        let connection = state.connections;
        state.connections += 1;
        state.threads.retain(|t| !t.is_finished());
        let spawned = std::thread::Builder::new()
            .name(format!("proxy-conn-{connection}"))
            .spawn(move || serve(client, socket, connection, &for_thread));
        match spawned {
            Ok(handle) => state.threads.push(handle),
            Err(_) => {
                state.sockets.remove(&socket);
            }
        }
    }
}

/// A request as read from the client.
struct Request {
    method: String,
    target: String,
    version: String,
    /// Header lines without CRLF, as sent.
    lines: Vec<String>,
    headers: Vec<(String, String)>,
    /// Raw body (still chunk-framed if it was chunked).
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    /// Whether the client asked to close after this exchange.
    fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        connection.contains("close")
            || (self.version == "HTTP/1.0" && !connection.contains("keep-alive"))
    }

    /// Request line, header lines (minus `strip`) and body, ready to send.
    fn bytes(&self, strip: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 1024);
        out.extend_from_slice(
            format!("{} {} {}\r\n", self.method, self.target, self.version).as_bytes(),
        );
        for (line, (name, _)) in self.lines.iter().zip(&self.headers) {
            if strip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                continue;
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response as read from upstream.
struct Response {
    status: u16,
    status_line: String,
    /// Header lines without CRLF, as sent.
    lines: Vec<String>,
    headers: Vec<(String, String)>,
    /// Raw body (still chunk-framed if it was chunked).
    body: Vec<u8>,
    /// Whether the body was framed by the end of the stream.
    eof_framed: bool,
}

impl Response {
    /// Status line and headers with the blank line; `Connection` is
    /// hop-by-hop, so upstream's is replaced by `close` or left out.
    fn head(&self, close: bool) -> Vec<u8> {
        let mut head = Vec::with_capacity(1024);
        head.extend_from_slice(self.status_line.as_bytes());
        head.extend_from_slice(b"\r\n");
        for (line, (name, _)) in self.lines.iter().zip(&self.headers) {
            if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
                continue;
            }
            head.extend_from_slice(line.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if close {
            head.extend_from_slice(b"Connection: close\r\n");
        }
        head.extend_from_slice(b"\r\n");
        head
    }
}

fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One CRLF- (or LF-) terminated line without its terminator; None at EOF.
fn read_line(reader: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    reader.take(MAX_HEAD).read_until(b'\n', &mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(bad("line too long or cut short"));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| bad("non-UTF-8 head"))
}

/// Header lines as sent (without CRLF), and the same parsed into name/value pairs.
type Headers = (Vec<String>, Vec<(String, String)>);

/// Header lines up to the blank line.
fn read_headers(reader: &mut impl BufRead) -> io::Result<Headers> {
    let mut lines = Vec::new();
    let mut headers = Vec::new();
    let mut total = 0u64;
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("headers cut short"))?;
        if line.is_empty() {
            return Ok((lines, headers));
        }
        total += line.len() as u64;
        if total > MAX_HEAD {
            return Err(bad("headers too long"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("header without ':'"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
        lines.push(line);
    }
}

fn is_chunked(headers: &[(String, String)]) -> bool {
    header_of(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn content_length(headers: &[(String, String)]) -> io::Result<Option<usize>> {
    header_of(headers, "content-length")
        .map(|v| v.parse().map_err(|_| bad("bad Content-Length")))
        .transpose()
}

/// A chunked body, framing and trailers included, as it came.
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("chunked body cut short"))?;
        body.extend_from_slice(line.as_bytes());
        body.extend_from_slice(b"\r\n");
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            loop {
                let trailer = read_line(reader)?.ok_or_else(|| bad("trailers cut short"))?;
                body.extend_from_slice(trailer.as_bytes());
                body.extend_from_slice(b"\r\n");
                if trailer.is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size + 2, 0);
        reader.read_exact(&mut body[start..])?;
        if &body[start + size..] != b"\r\n" {
            return Err(bad("chunk without CRLF"));
        }
    }
}

fn read_exactly(reader: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut body = vec![0u8; n];
    reader.read_exact(&mut body)?;
    Ok(body)
}

/// The next request on a client connection; None if it closed between requests.
/// Answers `Expect: 100-continue` itself (the header is still forwarded).
fn read_request(reader: &mut impl BufRead, client: &TcpStream) -> io::Result<Option<Request>> {
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            // Tolerate stray CRLFs between requests.
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("bad request line"));
    };
    let (method, target, version) = (
        method.to_ascii_uppercase(),
        target.to_string(),
        version.to_string(),
    );
    let (lines, headers) = read_headers(reader)?;
    if header_of(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let mut client = client;
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = if is_chunked(&headers) {
        read_chunked(reader)?
    } else {
        read_exactly(reader, content_length(&headers)?.unwrap_or(0))?
    };
    Ok(Some(Request {
        method,
        target,
        version,
        lines,
        headers,
        body,
    }))
}

/// A whole response to a request with `method`, skipping interim 1xx ones.
fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Response> {
    loop {
        let line = read_line(reader)?.ok_or_else(|| bad("upstream closed without a response"))?;
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let (lines, headers) = read_headers(reader)?;
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut eof_framed = false;
        let body = if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            Vec::new()
        } else if is_chunked(&headers) {
            read_chunked(reader)?
        } else if let Some(n) = content_length(&headers)? {
            read_exactly(reader, n)?
        } else {
            eof_framed = true;
            let mut body = Vec::new();
            reader.read_to_end(&mut body)?;
            body
        };
        return Ok(Response {
            status,
            status_line: line,
            lines,
            headers,
            body,
            eof_framed,
        });
    }
}

/// Sends `request` (minus the `strip` headers) to upstream and reads its response.
fn forward(shared: &Shared, request: &Request, strip: &[&str]) -> io::Result<Response> {
    let upstream = TcpStream::connect(("127.0.0.1", shared.upstream_port))?;
    let socket = shared
        .register(&upstream)
        .ok_or_else(|| io::Error::new(io::ErrorKind::Interrupted, "proxy stopped"))?;
    let result = (|| {
        (&upstream).write_all(&request.bytes(strip))?;
        read_response(&mut BufReader::new(&upstream), &request.method)
    })();
    shared.forget(socket);
    let _ = upstream.shutdown(Shutdown::Both);
    result
}

/// The reason phrase for the statuses tests use.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        301 => "Moved Permanently",
        409 => "Conflict",
        412 => "Precondition Failed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// An S3-style XML error response (no body for HEAD, as S3 does).
fn error_response(status: u16, code: &str, method: &str, path: &str, headers: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message><Resource>{path}</Resource>\
         <RequestId>fault-proxy</RequestId></Error>"
    );
    let body = if method == "HEAD" {
        String::new()
    } else {
        body
    };
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-amz-request-id: fault-proxy\r\n{headers}\r\n{body}",
        reason(status),
        body.len()
    )
    .into_bytes()
}

/// Closes the client connection with a reset (SO_LINGER 0) where possible.
fn reset(client: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        use std::os::raw::{c_int, c_void};
        #[repr(C)]
        struct Linger {
            l_onoff: c_int,
            l_linger: c_int,
        }
        extern "C" {
            fn setsockopt(
                fd: c_int,
                level: c_int,
                name: c_int,
                value: *const c_void,
                len: u32,
            ) -> c_int;
        }
        const SOL_SOCKET: c_int = 1;
        const SO_LINGER: c_int = 13;
        let linger = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid open socket fd and a pointer/length to a live
        // `struct linger` for the duration of the call.
        unsafe {
            setsockopt(
                client.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                (&linger as *const Linger).cast(),
                std::mem::size_of::<Linger>() as u32,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = client.shutdown(Shutdown::Both);
    }
}

/// Ends a client connection: with a reset, or by shutting both directions
/// down (a FIN), and in any case by closing the last descriptor.
fn close_client(shared: &Shared, socket: usize, client: TcpStream, with_reset: bool) {
    shared.forget(socket);
    if with_reset {
        reset(&client);
    } else {
        let _ = client.shutdown(Shutdown::Both);
    }
    drop(client);
}

/// What to do with the client connection once an answer is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Read the next request.
    Keep,
    /// Close it (a FIN).
    Close,
    /// Reset it (an RST where possible).
    Reset,
}

/// The proxy's answer to one request: what upstream and the client get.
struct Answer {
    upstream_status: Option<u16>,
    status: Option<u16>,
    bytes: Vec<u8>,
    after: After,
}

impl Answer {
    /// Nothing to send; the connection closes.
    fn silence(upstream_status: Option<u16>) -> Answer {
        Answer {
            upstream_status,
            status: None,
            bytes: Vec::new(),
            after: After::Close,
        }
    }
}

/// Applies `fault` to `request`: forwards it (or not) and says what the client gets.
fn answer(shared: &Shared, request: &Request, path: &str, fault: Option<Fault>) -> Answer {
    let error = |status: u16, code: &str, after: After| Answer {
        upstream_status: None,
        status: Some(status),
        bytes: error_response(status, code, &request.method, path, ""),
        after,
    };
    let after_request = if request.wants_close() {
        After::Close
    } else {
        After::Keep
    };
    match fault {
        Some(Fault::Status(status, code)) => error(status, code, after_request),
        Some(Fault::WrongRegion(region)) => Answer {
            upstream_status: None,
            status: Some(301),
            bytes: error_response(
                301,
                "PermanentRedirect",
                &request.method,
                path,
                &format!("x-amz-bucket-region: {region}\r\n"),
            ),
            after: after_request,
        },
        Some(Fault::Stall(duration)) => {
            shared.stall(duration);
            Answer::silence(None)
        }
        Some(Fault::LoseReply) => match forward(shared, request, &[]) {
            Ok(response) => Answer::silence(Some(response.status)),
            Err(_) => Answer::silence(None),
        },
        Some(Fault::ResetMidBody) => match forward(shared, request, &[]) {
            Ok(response) => {
                let mut bytes = response.head(false);
                bytes.extend_from_slice(&response.body[..response.body.len() / 2]);
                Answer {
                    upstream_status: Some(response.status),
                    status: Some(response.status),
                    bytes,
                    after: After::Reset,
                }
            }
            Err(_) => Answer::silence(None),
        },
        None | Some(Fault::StripConditionalHeaders) | Some(Fault::HoldUntilReleased) => {
            if fault == Some(Fault::HoldUntilReleased) {
                shared.hold();
            }
            let strip: &[&str] = if fault == Some(Fault::StripConditionalHeaders) {
                &CONDITIONAL_HEADERS
            } else {
                &[]
            };
            match forward(shared, request, strip) {
                Ok(response) => {
                    let close = response.eof_framed || request.wants_close();
                    let mut bytes = response.head(close);
                    bytes.extend_from_slice(&response.body);
                    Answer {
                        upstream_status: Some(response.status),
                        status: Some(response.status),
                        bytes,
                        after: if close { After::Close } else { After::Keep },
                    }
                }
                Err(_) if shared.stopped() => Answer::silence(None),
                Err(_) => error(502, "BadGateway", After::Close),
            }
        }
    }
}

/// Serves one client connection until it closes, a fault closes it, or the
/// proxy stops. Each exchange is marked done just before its answer is
/// written (or the connection closed), so a client never sees an outcome
/// the record does not show yet.
fn serve(client: TcpStream, socket: usize, connection: usize, shared: &Shared) {
    let mut reader = BufReader::new(&client);
    let mut after = After::Close;
    while let Ok(Some(request)) = read_request(&mut reader, &client) {
        let (path, query) = match request.target.split_once('?') {
            Some((p, q)) => (p.to_string(), q.to_string()),
            None => (request.target.clone(), String::new()),
        };
        let (seq, fault) = shared.arrive(Seen {
            seq: 0,
            connection,
            method: request.method.clone(),
            path: path.clone(),
            query,
            headers: request.headers.clone(),
            body_len: request.body.len(),
            fault: None,
            upstream_status: None,
            status: None,
            done: false,
        });
        let answer = answer(shared, &request, &path, fault);
        shared.finish(seq, answer.upstream_status, answer.status);
        after = answer.after;
        if (&client).write_all(&answer.bytes).is_err() {
            after = After::Close;
        }
        if after != After::Keep {
            break;
        }
    }
    drop(reader);
    close_client(shared, socket, client, after == After::Reset);
}
