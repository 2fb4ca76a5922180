//! The fault-injecting proxy (`support::proxy`) in front of a real moto: it
//! passes S3 traffic through intact (single and chunked bodies, lists,
//! deletes, kept-alive connections), and each fault does what it says to the
//! AWS SDK and to raw HTTP clients: a lost reply after the write landed, S3
//! error statuses, a reset mid-body, a stall, and conditional headers stripped.
//! `wait_for`/`wait_for_arrivals` hold a client at a chosen request,
//! dropping the proxy ends every connection and thread it has, and the swamp
//! binary runs through it.

mod support;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};
use support::proxy::*;
use support::s3::*;
use support::DEADLINE;

/// An S3 client for `endpoint` making at most `attempts` attempts (10 ms
/// initial backoff), each cut off after `attempt_timeout` if given.
fn client(endpoint: &str, attempts: u32, attempt_timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder().connect_timeout(Duration::from_secs(10));
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("x", "y", None, None, "test"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(timeouts.build())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    Client::from_conf(conf)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

/// A deterministic body of `n` bytes.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i / 7 % 251) as u8).collect()
}

/// The HTTP status of an SDK error, if a response came back.
fn status_of<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// A response read from a raw connection: status, lowercased headers, body,
/// and whether the stream ended in an error rather than a clean EOF.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    errored: bool,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw connection to 127.0.0.1:`port` with a generous read timeout.
fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream
}

/// Reads one response from `stream`: its head, then `Content-Length` bytes
/// of body if `framed`, else everything up to the end of the stream (or an error).
fn read_raw(stream: &mut TcpStream, framed: bool) -> Raw {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "head cut short: {raw:?}"
        );
        raw.push(byte[0]);
    }
    let head = String::from_utf8(raw).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut out = Raw {
        status,
        headers,
        body: Vec::new(),
        errored: false,
    };
    if framed {
        let n: usize = out.header("content-length").unwrap().parse().unwrap();
        out.body = vec![0u8; n];
        stream.read_exact(&mut out.body).unwrap();
    } else {
        out.errored = stream.read_to_end(&mut out.body).is_err();
    }
    out
}

/// A raw request head with the headers moto needs (see `Moto::request`).
fn head(method: &str, path: &str, port: u16, extra: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: AWS x:y\r\n{extra}\r\n")
}

#[test]
fn requests_pass_through_intact_over_kept_alive_connections() {
    let moto = Moto::start();
    moto.create_bucket("pass");
    let proxy = FaultProxy::start(moto.port);
    let s3 = client(&proxy.endpoint(), 1, None);
    let rt = runtime();
    let big = pattern(5 * 1024 * 1024 + 3);
    rt.block_on(async {
        s3.put_object()
            .bucket("pass")
            .key("big")
            .body(ByteStream::from(big.clone()))
            .send()
            .await
            .unwrap();
        s3.put_object()
            .bucket("pass")
            .key("small/a")
            .body(ByteStream::from_static(b"a"))
            .send()
            .await
            .unwrap();
        let got = s3
            .get_object()
            .bucket("pass")
            .key("big")
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes() == big);
        let listed = s3.list_objects_v2().bucket("pass").send().await.unwrap();
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys, ["big", "small/a"]);
        let head = s3
            .head_object()
            .bucket("pass")
            .key("small/a")
            .send()
            .await
            .unwrap();
        assert_eq!(head.content_length(), Some(1));
        s3.delete_object()
            .bucket("pass")
            .key("small/a")
            .send()
            .await
            .unwrap();
        let gone = s3.head_object().bucket("pass").key("small/a").send().await;
        assert_eq!(status_of(&gone.unwrap_err()), Some(404));
    });
    assert!(moto.get_object("pass", "big").unwrap() == big);
    let seen = proxy.seen();
    let what: Vec<(&str, &str, Option<u16>)> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str(), s.status))
        .collect();
    assert_eq!(
        what,
        [
            ("PUT", "/pass/big", Some(200)),
            ("PUT", "/pass/small/a", Some(200)),
            ("GET", "/pass/big", Some(200)),
            ("GET", "/pass/", Some(200)),
            ("HEAD", "/pass/small/a", Some(200)),
            ("DELETE", "/pass/small/a", Some(204)),
            ("HEAD", "/pass/small/a", Some(404)),
        ]
    );
    assert!(seen.iter().all(|s| s.done && s.fault.is_none()));
    assert_eq!(seen[0].body_len, big.len());
    assert!(seen[3].query.contains("list-type=2"), "{:?}", seen[3]);
    assert_eq!(proxy.count(&Match::any().query_contains("list-type")), 1);
    assert_eq!(proxy.count(&Match::put().has_header("AUTHORIZATION")), 2);
    assert_eq!(proxy.count(&Match::get().key_suffix("/big")), 1);
    // moto closes every connection; the proxy keeps the SDK's open like S3.
    assert!(
        proxy.connections() < seen.len(),
        "{} connections for {} requests",
        proxy.connections(),
        seen.len()
    );
}

#[test]
fn a_chunked_request_body_reaches_moto_whole_on_a_kept_alive_connection() {
    let moto = Moto::start();
    moto.create_bucket("chunks");
    let proxy = FaultProxy::start(moto.port);
    let body = pattern(3 * 1024 * 1024 + 11);
    let mut stream = connect(proxy.port);
    let mut request = head(
        "PUT",
        "/chunks/c",
        proxy.port,
        "Transfer-Encoding: chunked\r\n",
    )
    .into_bytes();
    for piece in [&body[..1], &body[1..1024 * 1024], &body[1024 * 1024..]] {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).unwrap();
    let put = read_raw(&mut stream, true);
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(put.header("connection"), None, "kept alive");
    // The same connection carries the next request.
    let get = head("GET", "/chunks/c", proxy.port, "Connection: close\r\n");
    stream.write_all(get.as_bytes()).unwrap();
    let got = read_raw(&mut stream, false);
    assert_eq!(got.status, 200);
    assert!(!got.errored);
    assert!(got.body == body);
    assert!(moto.get_object("chunks", "c").unwrap() == body);
    let seen = proxy.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].connection, seen[1].connection);
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn a_chunked_response_is_relayed_as_it_came() {
    // moto always sends Content-Length, so a one-shot upstream answers chunked.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Amz-Meta-A: b\r\n\r\n\
        5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let server = std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            conn.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        conn.write_all(answer).unwrap();
        String::from_utf8(buf).unwrap()
    });
    let proxy = FaultProxy::start(port);
    let mut stream = connect(proxy.port);
    stream
        .write_all(
            head(
                "GET",
                "/b/k",
                proxy.port,
                "X-Custom: kept\r\nConnection: close\r\n",
            )
            .as_bytes(),
        )
        .unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    let expected =
        String::from_utf8_lossy(answer).replace("\r\n\r\n5", "\r\nConnection: close\r\n\r\n5");
    assert_eq!(String::from_utf8_lossy(&got), expected);
    let forwarded = server.join().unwrap();
    assert!(
        forwarded.starts_with("GET /b/k HTTP/1.1\r\n"),
        "{forwarded}"
    );
    assert!(forwarded.contains("\r\nX-Custom: kept\r\n"), "{forwarded}");
}

#[test]
fn a_lost_reply_lands_the_put_yet_the_client_sees_a_dropped_connection() {
    let moto = Moto::start();
    moto.create_bucket("lost");
    let proxy = FaultProxy::start(moto.port);
    let rule = proxy.add(Rule::new(Match::put().key_suffix("/once"), Fault::LoseReply).times(1));
    let rt = runtime();
    let no_retry = client(&proxy.endpoint(), 1, None);
    let err = rt
        .block_on(
            no_retry
                .put_object()
                .bucket("lost")
                .key("once")
                .body(ByteStream::from_static(b"landed"))
                .send(),
        )
        .unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    assert_eq!(moto.get_object("lost", "once").unwrap(), b"landed");
    assert_eq!(proxy.applied(rule), 1);
    let seen = proxy.wait_for(&Match::put(), 1, DEADLINE);
    assert_eq!(seen[0].fault, Some(Fault::LoseReply));
    assert_eq!((seen[0].upstream_status, seen[0].status), (Some(200), None));

    // With retries the SDK sends the PUT again and succeeds.
    proxy.add(Rule::new(Match::put().key_suffix("/twice"), Fault::LoseReply).times(1));
    let retrying = client(&proxy.endpoint(), 3, None);
    rt.block_on(
        retrying
            .put_object()
            .bucket("lost")
            .key("twice")
            .body(ByteStream::from_static(b"again"))
            .send(),
    )
    .unwrap();
    let twice = proxy.wait_for(&Match::put().key_suffix("/twice"), 2, DEADLINE);
    assert_eq!(twice.len(), 2);
    assert_eq!(twice[0].fault, Some(Fault::LoseReply));
    assert_eq!((twice[1].fault.clone(), twice[1].status), (None, Some(200)));
    assert_eq!(moto.get_object("lost", "twice").unwrap(), b"again");
}

#[test]
fn status_faults_answer_s3_errors_without_forwarding_then_let_requests_through() {
    let moto = Moto::start();
    moto.create_bucket("status");
    let proxy = FaultProxy::start(moto.port);
    let rt = runtime();
    // 503 SlowDown twice: the SDK retries through it.
    let slow = proxy.add(Rule::new(Match::put(), Fault::Status(503, "SlowDown")).times(2));
    let retrying = client(&proxy.endpoint(), 4, None);
    rt.block_on(
        retrying
            .put_object()
            .bucket("status")
            .key("slow")
            .body(ByteStream::from_static(b"slow"))
            .send(),
    )
    .unwrap();
    let puts = proxy.wait_for(&Match::put(), 3, DEADLINE);
    let statuses: Vec<_> = puts.iter().map(|s| (s.status, s.upstream_status)).collect();
    assert_eq!(
        statuses,
        [(Some(503), None), (Some(503), None), (Some(200), Some(200))]
    );
    assert_eq!(proxy.applied(slow), 2);
    assert_eq!(moto.get_object("status", "slow").unwrap(), b"slow");

    // 409 ConditionalRequestConflict: the SDK sees S3's code and status, and
    // nothing reached moto.
    let once = client(&proxy.endpoint(), 1, None);
    proxy.add(
        Rule::new(
            Match::put().has_header("if-none-match"),
            Fault::Status(409, "ConditionalRequestConflict"),
        )
        .times(1),
    );
    let err = rt
        .block_on(
            once.put_object()
                .bucket("status")
                .key("conflict")
                .if_none_match("*")
                .body(ByteStream::from_static(b"c"))
                .send(),
        )
        .unwrap_err();
    assert_eq!(status_of(&err), Some(409));
    assert_eq!(err.code(), Some("ConditionalRequestConflict"));
    assert_eq!(moto.get_object("status", "conflict"), None);

    // 500 InternalError on the second GET only (skip 1, times 1).
    proxy.add(
        Rule::new(
            Match::get().key_suffix("/slow"),
            Fault::Status(500, "InternalError"),
        )
        .skip(1)
        .times(1),
    );
    // Ok(body), or Err((status, S3 error code)).
    let get = || {
        rt.block_on(async {
            match once.get_object().bucket("status").key("slow").send().await {
                Ok(out) => Ok(out.body.collect().await.unwrap().into_bytes()),
                Err(e) => Err((status_of(&e), e.code().map(str::to_string))),
            }
        })
    };
    assert_eq!(&get().unwrap()[..], b"slow");
    assert_eq!(
        get().unwrap_err(),
        (Some(500), Some("InternalError".into()))
    );
    assert_eq!(&get().unwrap()[..], b"slow");

    // The raw error is a well-formed S3 error document with its length.
    proxy.add(Rule::new(Match::delete(), Fault::Status(503, "SlowDown")).times(1));
    let mut stream = connect(proxy.port);
    stream
        .write_all(head("DELETE", "/status/slow", proxy.port, "").as_bytes())
        .unwrap();
    let raw = read_raw(&mut stream, true);
    assert_eq!(raw.status, 503);
    assert_eq!(raw.header("content-type"), Some("application/xml"));
    let xml = String::from_utf8(raw.body).unwrap();
    assert!(
        xml.contains("<Error><Code>SlowDown</Code><Message>"),
        "{xml}"
    );
    assert!(xml.ends_with("</Error>"), "{xml}");
}

#[test]
fn a_stalled_request_times_the_client_out_and_a_retry_gets_through() {
    let moto = Moto::start();
    moto.create_bucket("stall");
    moto.put_object("stall", "k", b"value");
    let proxy = FaultProxy::start(moto.port);
    let rt = runtime();
    // Stalled far beyond the client's 2 s attempt timeout.
    proxy.add(Rule::new(Match::get(), Fault::Stall(Duration::from_secs(600))).times(1));
    let once = client(&proxy.endpoint(), 1, Some(Duration::from_secs(2)));
    let started = Instant::now();
    let err = rt
        .block_on(once.get_object().bucket("stall").key("k").send())
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_secs(2));

    proxy.add(Rule::new(Match::get(), Fault::Stall(Duration::from_secs(600))).times(1));
    let retrying = client(&proxy.endpoint(), 2, Some(Duration::from_secs(2)));
    let got = rt.block_on(async {
        let out = retrying
            .get_object()
            .bucket("stall")
            .key("k")
            .send()
            .await
            .unwrap();
        out.body.collect().await.unwrap().into_bytes()
    });
    assert_eq!(&got[..], b"value");
    let seen = proxy.seen();
    let what: Vec<_> = seen
        .iter()
        .map(|s| (s.fault.is_some(), s.done, s.status))
        .collect();
    // Both stalls still hold their (abandoned) requests.
    assert_eq!(
        what,
        [
            (true, false, None),
            (true, false, None),
            (false, true, Some(200))
        ]
    );

    // A short stall ends by closing the connection without a reply.
    proxy.add(Rule::new(Match::head(), Fault::Stall(Duration::from_millis(300))).times(1));
    let mut stream = connect(proxy.port);
    let started = Instant::now();
    stream
        .write_all(head("HEAD", "/stall/k", proxy.port, "").as_bytes())
        .unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let heads = proxy.wait_for(&Match::head(), 1, DEADLINE);
    assert_eq!((heads[0].status, heads[0].upstream_status), (None, None));

    // Dropping the proxy wakes the 600 s stalls at once.
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn stripped_conditional_headers_let_a_second_create_only_put_succeed() {
    let moto = Moto::start();
    moto.create_bucket("cond");
    let proxy = FaultProxy::start(moto.port);
    let rt = runtime();
    // Ok, or Err(the status the SDK got).
    let create = |s3: &Client, body: &'static [u8]| {
        rt.block_on(
            s3.put_object()
                .bucket("cond")
                .key("lock")
                .if_none_match("*")
                .body(ByteStream::from_static(body))
                .send(),
        )
        .map(|_| ())
        .map_err(|e| status_of(&e))
    };
    let direct = client(&moto.endpoint(), 1, None);
    let proxied = client(&proxy.endpoint(), 1, None);
    create(&direct, b"first").unwrap();
    // moto refuses a second create-only PUT, directly and through a plain proxy.
    assert_eq!(create(&direct, b"second"), Err(Some(412)));
    assert_eq!(create(&proxied, b"second"), Err(Some(412)));
    assert_eq!(moto.get_object("cond", "lock").unwrap(), b"first");
    // Without If-None-Match it overwrites.
    proxy.add(Rule::new(
        Match::put().has_header("If-None-Match"),
        Fault::StripConditionalHeaders,
    ));
    create(&proxied, b"third").unwrap();
    assert_eq!(moto.get_object("cond", "lock").unwrap(), b"third");
    let puts = proxy.wait_for(&Match::put(), 2, DEADLINE);
    assert_eq!(
        puts[1].header("if-none-match"),
        Some("*"),
        "recorded as sent"
    );
    assert_eq!(puts[1].fault, Some(Fault::StripConditionalHeaders));
    assert_eq!(
        (puts[1].upstream_status, puts[1].status),
        (Some(200), Some(200))
    );
}

#[test]
fn a_reset_mid_body_cuts_a_get_short() {
    let moto = Moto::start();
    moto.create_bucket("reset");
    let body = pattern(20_000);
    moto.put_object("reset", "cut", &body);
    let proxy = FaultProxy::start(moto.port);
    proxy.add(Rule::new(Match::get().key_suffix("/cut"), Fault::ResetMidBody).times(1));
    let mut stream = connect(proxy.port);
    stream
        .write_all(head("GET", "/reset/cut", proxy.port, "").as_bytes())
        .unwrap();
    let raw = read_raw(&mut stream, false);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-length"), Some("20000"));
    assert!(
        raw.body.len() < body.len(),
        "got all {} bytes",
        raw.body.len()
    );
    assert!(raw.body[..] == body[..raw.body.len()]);
    assert!(raw.errored, "a reset, not a clean end");

    // The SDK gets the head, then its body stream fails; the next GET is whole.
    proxy.add(Rule::new(Match::get().key_suffix("/cut"), Fault::ResetMidBody).times(1));
    let s3 = client(&proxy.endpoint(), 1, None);
    let rt = runtime();
    let get = || {
        rt.block_on(async {
            let out = s3
                .get_object()
                .bucket("reset")
                .key("cut")
                .send()
                .await
                .unwrap();
            out.body.collect().await.map(|b| b.into_bytes())
        })
    };
    assert!(get().is_err());
    assert!(get().unwrap() == body);
    let gets: Vec<_> = proxy
        .seen()
        .iter()
        .map(|s| (s.fault.clone(), s.status))
        .collect();
    assert_eq!(
        gets,
        [
            (Some(Fault::ResetMidBody), Some(200)),
            (Some(Fault::ResetMidBody), Some(200)),
            (None, Some(200)),
        ]
    );
}

#[test]
fn wait_for_holds_a_client_at_a_chosen_request() {
    let moto = Moto::start();
    moto.create_bucket("freeze");
    let proxy = FaultProxy::start(moto.port);
    let uploads = Match::put().key_contains("/obj-");
    // The 5th upload stalls until the proxy goes away.
    proxy.add(
        Rule::new(uploads.clone(), Fault::Stall(Duration::from_secs(600)))
            .skip(4)
            .times(1),
    );
    let rt = runtime();
    let s3 = client(&proxy.endpoint(), 1, None);
    let task = rt.spawn(async move {
        for i in 0..10 {
            let sent = s3
                .put_object()
                .bucket("freeze")
                .key(format!("obj-{i}"))
                .body(ByteStream::from(vec![b'x'; 100]))
                .send()
                .await;
            if sent.is_err() {
                return i;
            }
        }
        10
    });
    let arrived = proxy.wait_for_arrivals(&uploads, 5, DEADLINE);
    assert_eq!(arrived.len(), 5);
    assert!(!arrived[4].done);
    // At this moment exactly the first four uploads are done and landed.
    let done = proxy.wait_for(&uploads, 4, DEADLINE);
    assert_eq!(done.len(), 4);
    assert_eq!(proxy.count(&uploads), 4);
    assert_eq!(moto.keys("freeze"), ["obj-0", "obj-1", "obj-2", "obj-3"]);
    // A wait that cannot be met panics at its deadline, naming what was seen.
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        proxy.wait_for(&Match::delete(), 1, Duration::from_millis(200))
    }));
    let message = waited.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(message.contains("/freeze/obj-4"), "{message}");
    // Dropping the proxy releases the client: its 5th upload fails.
    drop(proxy);
    assert_eq!(rt.block_on(task).unwrap(), 4);
}

#[test]
fn dropping_the_proxy_closes_idle_and_busy_connections() {
    let moto = Moto::start();
    moto.create_bucket("drop");
    let proxy = FaultProxy::start(moto.port);
    let port = proxy.port;
    proxy.add(Rule::new(
        Match::get(),
        Fault::Stall(Duration::from_secs(600)),
    ));
    let mut idle = connect(port);
    let mut busy = connect(port);
    busy.write_all(head("GET", "/drop/k", port, "").as_bytes())
        .unwrap();
    proxy.wait_for_arrivals(&Match::get(), 1, DEADLINE);
    // Connected first, the idle connection was accepted first.
    assert_eq!(proxy.connections(), 2);
    let started = Instant::now();
    drop(proxy);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    for stream in [&mut idle, &mut busy] {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
}

#[test]
fn a_multipart_part_is_matched_by_its_upload_id_query() {
    let moto = Moto::start();
    moto.create_bucket("parts");
    let proxy = FaultProxy::start(moto.port);
    let part = Match::put().key_suffix("/multi").query_contains("uploadId");
    let rule = proxy.add(
        Rule::new(part.clone(), Fault::Status(503, "SlowDown"))
            .skip(1)
            .times(1),
    );
    let s3 = client(&proxy.endpoint(), 3, None);
    let body = pattern(5 * 1024 * 1024 + 100);
    let rt = runtime();
    rt.block_on(async {
        let upload = s3
            .create_multipart_upload()
            .bucket("parts")
            .key("multi")
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap();
        let mut done = aws_sdk_s3::types::CompletedMultipartUpload::builder();
        for (n, piece) in [&body[..5 * 1024 * 1024], &body[5 * 1024 * 1024..]]
            .into_iter()
            .enumerate()
        {
            let number = n as i32 + 1;
            let sent = s3
                .upload_part()
                .bucket("parts")
                .key("multi")
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(piece.to_vec()))
                .send()
                .await
                .unwrap();
            done = done.parts(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .e_tag(sent.e_tag().unwrap())
                    .build(),
            );
        }
        s3.complete_multipart_upload()
            .bucket("parts")
            .key("multi")
            .upload_id(id)
            .multipart_upload(done.build())
            .send()
            .await
            .unwrap();
    });
    assert!(moto.get_object("parts", "multi").unwrap() == body);
    assert_eq!(proxy.applied(rule), 1);
    let statuses: Vec<_> = proxy
        .wait_for(&part, 3, DEADLINE)
        .iter()
        .map(|s| (s.query.contains("partNumber=2"), s.status))
        .collect();
    assert_eq!(
        statuses,
        [(false, Some(200)), (true, Some(503)), (true, Some(200))]
    );
    assert_eq!(proxy.count(&Match::post().query_contains("uploads")), 1);
    assert_eq!(proxy.count(&Match::post().query_contains("uploadId")), 1);
}

#[test]
fn swamp_works_through_the_proxy_and_its_requests_are_visible() {
    let w = World::create(Moto::start(), "via-proxy");
    let proxy = FaultProxy::start(w.moto.port);
    let home = tempfile::tempdir().unwrap();
    let mut setup: Vec<String> = w.setup_args();
    let at = setup.iter().position(|a| a == "--endpoint-url").unwrap();
    setup[at + 1] = proxy.endpoint();
    let args: Vec<&str> = setup.iter().map(String::as_str).collect();
    w.ok(home.path(), &args);
    // One SlowDown on the index write is retried by swamp's SDK client.
    let index = Match::put().key_suffix("/.datastore-index.json");
    let slow = proxy.add(Rule::new(index.clone(), Fault::Status(503, "SlowDown")).times(1));
    w.put_ok(home.path(), "app/config", b"replicas: 3\n");
    assert_eq!(proxy.applied(slow), 1);
    assert!(proxy.count(&index.clone().lacks_header("x-no-such-header")) >= 1);
    let lock = Match::put().key_suffix("/.datastore.lock");
    assert!(
        proxy.count(&lock.has_header("if-none-match")) >= 1,
        "the lock is taken with a create-only PUT"
    );
    let seen = proxy.seen();
    assert!(seen.iter().all(|s| s.done), "every exchange is over");
    assert!(
        proxy.connections() < seen.len(),
        "swamp's connections are reused"
    );
    assert!(w.rel_keys().contains(&".datastore-index.json".to_string()));
    let got = w.ok(home.path(), &["data", "get", "app/config"]);
    assert_eq!(got, b"replicas: 3\n");
}
