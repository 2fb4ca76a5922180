//! The S3 object store (aws-sdk-s3) against a real local server (moto, or
//! SeaweedFS with `SWAMP_TEST_S3=seaweedfs`): the single and multipart uploads
//! round-trip with their recorded SHA-256, and the checksum a single PUT
//! carries is the one the push computed; a ranged download refuses parts of an
//! object replaced after its first part.

mod support;

use support::s3::*;
use support::*;
use swamp_datastore::domain::config::S3Config;
use swamp_datastore::infrastructure::hashing::{CheckKind, Checked, FileDigest};
use swamp_datastore::infrastructure::s3::client::{S3Settings, S3Store};
use swamp_datastore::infrastructure::s3::store::ObjectStore;

/// A store for `bucket` at `endpoint`, connected on `rt`.
fn store_at(rt: &tokio::runtime::Runtime, endpoint: String, bucket: &str) -> S3Store {
    store_with(rt, endpoint, bucket, &S3Settings::default())
}

/// `store_at` with client `settings`.
fn store_with(
    rt: &tokio::runtime::Runtime,
    endpoint: String,
    bucket: &str,
    settings: &S3Settings,
) -> S3Store {
    // The SDK reads credentials from the environment; every test sets the same.
    std::env::set_var("AWS_ACCESS_KEY_ID", "x");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "y");
    let config = S3Config {
        bucket: bucket.to_string(),
        prefix: String::new(),
        region: Some("us-east-1".to_string()),
        endpoint: Some(endpoint),
    };
    rt.block_on(S3Store::connect(&config, settings))
}

#[test]
fn a_single_put_round_trips_with_its_recorded_sha256() {
    let moto = Moto::start();
    moto.create_bucket("sums");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"the content that was hashed").unwrap();
    let sha = sha256_hex(b"the content that was hashed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_at(&rt, moto.endpoint(), "sums");
    let digest = FileDigest::of_bytes(b"the content that was hashed");
    rt.block_on(store.put_file("good", &file, &digest, 7, None))
        .unwrap();
    let head = rt.block_on(store.head("good")).unwrap();
    let head = head.expect("the object exists");
    assert_eq!(head.size, 27);
    assert_eq!(head.recorded.sha256.map(|s| s.to_hex()), Some(sha.clone()));
    assert_eq!(head.recorded.generation, Some(7));
    let dest = dir.path().join("back");
    let got = rt
        .block_on(store.get_to_file("good", &dest, CheckKind::Sha256))
        .unwrap();
    assert_eq!(got.size, 27);
    assert!(matches!(got.checked, Checked::Sha256(s) if s.to_hex() == sha));
    assert_eq!(got.recorded.generation, Some(7), "generation metadata");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"the content that was hashed"
    );
}

/// The lowercased header lines and the body of one request.
type RecordedRequest = (Vec<String>, Vec<u8>);

/// Accepts one HTTP request on 127.0.0.1, answers 200 with an ETag, and
/// returns the request's lowercased header lines and its body (moto neither
/// checks nor keeps `x-amz-checksum-*`, so the wire is the only place to see them).
fn record_one_request() -> (String, std::thread::JoinHandle<RecordedRequest>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        let length: usize = headers
            .iter()
            .find_map(|h| h.strip_prefix("content-length: "))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nETag: \"e1\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        (headers, body)
    });
    (endpoint, handle)
}

#[test]
fn a_get_answered_200_with_the_etag_we_have_counts_as_not_modified() {
    use swamp_datastore::infrastructure::s3::store::{ETag, Fetched};
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A server that ignores If-None-Match (s3s-fs does) answers 200 with the
    // same ETag: that is still "not modified", so a no-op stays a no-op and a
    // push does not think the cache is behind.
    let (endpoint, recorded) = record_one_request();
    let store = store_at(&rt, endpoint, "sums");
    let got = rt
        .block_on(store.get_bytes("k", Some(&ETag::new("\"e1\""))))
        .unwrap();
    assert!(matches!(got, Fetched::NotModified));
    let (headers, _) = recorded.join().unwrap();
    assert!(
        headers.contains(&"if-none-match: \"e1\"".to_string()),
        "{headers:?}"
    );
    // Another ETag is another object.
    let (endpoint, recorded) = record_one_request();
    let store = store_at(&rt, endpoint, "sums");
    let got = rt
        .block_on(store.get_bytes("k", Some(&ETag::new("\"e0\""))))
        .unwrap();
    assert!(matches!(got, Fetched::Object(_, meta) if meta.etag.as_str() == "\"e1\""));
    recorded.join().unwrap();
}

#[test]
fn a_single_put_sends_the_files_sha256_for_the_server_to_verify() {
    let (endpoint, recorded) = record_one_request();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    let sha = sha256_hex(b"");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_at(&rt, endpoint, "sums");
    rt.block_on(store.put_file("k", &file, &FileDigest::of_bytes(b""), 1, None))
        .unwrap();
    let (headers, _) = recorded.join().unwrap();
    // S3 refuses the body (BadDigest) unless it hashes to what swamp indexed,
    // so a file rewritten after hashing is never stored under the old hash.
    assert!(
        headers.contains(
            &"x-amz-checksum-sha256: 47deqpj8hbsa+/timw+5jceuqerkm5nmpjwzg3hsufu=".to_string()
        ),
        "{headers:?}"
    );
    assert!(
        headers.contains(&format!("x-amz-meta-sha256: {sha}")),
        "{headers:?}"
    );
    // ...and the SDK does not hash the payload a second time to sign it.
    assert!(
        headers.contains(&"x-amz-content-sha256: unsigned-payload".to_string()),
        "{headers:?}"
    );
}

#[test]
fn a_put_from_kept_content_sends_the_bytes_that_were_hashed() {
    let (endpoint, recorded) = record_one_request();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    // The file changed after the hashing read that kept its bytes.
    std::fs::write(&file, b"rewritten since").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_at(&rt, endpoint, "sums");
    let kept = bytes::Bytes::from_static(b"as hashed");
    rt.block_on(store.put_file(
        "k",
        &file,
        &FileDigest::of_bytes(&kept),
        1,
        Some(kept.clone()),
    ))
    .unwrap();
    let (headers, body) = recorded.join().unwrap();
    assert_eq!(body, b"as hashed");
    let checksum = format!(
        "x-amz-checksum-sha256: {}",
        aws_smithy_types::base64::encode(hex::decode(sha256_hex(b"as hashed")).unwrap())
    )
    .to_ascii_lowercase();
    assert!(headers.contains(&checksum), "{headers:?}");
    assert!(
        headers.contains(&"x-amz-content-sha256: unsigned-payload".to_string()),
        "{headers:?}"
    );
}

#[test]
fn a_multipart_upload_of_three_parts_downloads_whole() {
    let moto = Moto::start();
    moto.create_bucket("parts");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    // Two full 16 MiB parts and a short third, with a pattern that differs per part.
    let body: Vec<u8> = (0..(33 * 1024 * 1024 + 5))
        .map(|i: usize| (i / 4093 % 251) as u8)
        .collect();
    std::fs::write(&file, &body).unwrap();
    let sha = sha256_hex(&body);
    let digest = FileDigest::of_bytes(&body);
    let parts = digest
        .parts
        .clone()
        .expect("a three-part file has part checksums");
    assert_eq!(parts.crc32.len(), 3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_at(&rt, moto.endpoint(), "parts");
    rt.block_on(store.put_file("big", &file, &digest, 1, None))
        .unwrap();
    let dest = dir.path().join("back");
    let got = rt
        .block_on(store.get_to_file("big", &dest, CheckKind::Sha256))
        .unwrap();
    assert_eq!(got.size, body.len() as u64);
    assert!(matches!(&got.checked, Checked::Sha256(s) if s.to_hex() == sha));
    assert_eq!(got.recorded.sha256.map(|s| s.to_hex()), Some(sha.clone()));
    assert_eq!(
        got.recorded.generation,
        Some(1),
        "multipart generation metadata"
    );
    assert!(std::fs::read(&dest).unwrap() == body);
    // A download can check the part CRCs instead, at memory speed.
    let again = dir.path().join("again");
    let got = rt
        .block_on(store.get_to_file(
            "big",
            &again,
            CheckKind::PartCrc32 {
                part_size: parts.part_size,
            },
        ))
        .unwrap();
    assert_eq!(got.checked, Checked::PartCrc32(parts));
    assert!(std::fs::read(&again).unwrap() == body);
}

/// A TCP forwarder to `target` that shows every chunk clients send (request
/// lines, headers and bodies) to `on_send` before passing it on, so a test can
/// assert on the wire or act at a chosen moment of an exchange.
fn forwarder(target: String, on_send: impl Fn(&[u8]) + Send + Sync + 'static) -> String {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let on_send = std::sync::Arc::new(on_send);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(&target) else {
                return;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            let on_send = on_send.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    on_send(&buf[..n]);
                    if s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    endpoint
}

/// A forwarder to `target` that keeps a copy of every byte clients send.
fn recording_forwarder(target: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = sent.clone();
    let endpoint = forwarder(target, move |chunk| {
        record.lock().unwrap().extend_from_slice(chunk)
    });
    (endpoint, sent)
}

#[test]
fn multipart_parts_carry_the_crc32s_of_the_content_that_was_hashed() {
    let moto = Moto::start();
    moto.create_bucket("moved");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let body = vec![1u8; 17 * 1024 * 1024];
    let digest = FileDigest::of_bytes(&body);
    let hashed = digest.parts.clone().unwrap().crc32;
    // The file is rewritten between the hashing read and the upload.
    let mut changed = body.clone();
    changed[5] = 2;
    std::fs::write(&file, &changed).unwrap();
    let target = moto.endpoint().trim_start_matches("http://").to_string();
    let (endpoint, sent) = recording_forwarder(target);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store_at(&rt, endpoint, "moved");
    // moto neither checks nor keeps part checksums, so it accepts the upload;
    // S3 and SeaweedFS answer BadDigest to a part whose body does not match
    // its CRC32, and the object is never completed.
    let result = rt.block_on(store.put_file("big", &file, &digest, 1, None));
    if moto.kind == S3Kind::SeaweedFs {
        let err = result.expect_err("a part that does not match its CRC32 was accepted");
        assert!(err.to_string().contains("BadDigest"), "{err}");
        assert_eq!(moto.get_object("moved", "big"), None);
    }
    let wire = String::from_utf8_lossy(&sent.lock().unwrap()).to_ascii_lowercase();
    let header = |crc: u32| {
        format!(
            "x-amz-checksum-crc32: {}",
            aws_smithy_types::base64::encode(crc.to_be_bytes())
        )
        .to_ascii_lowercase()
    };
    assert!(
        wire.contains(&header(hashed[0])),
        "part 1 must carry the hashed CRC32"
    );
    assert!(
        wire.contains(&header(hashed[1])),
        "part 2 must carry the hashed CRC32"
    );
    let now = crc32fast::hash(&changed[..16 * 1024 * 1024]);
    assert_ne!(now, hashed[0]);
    assert!(
        !wire.contains(&header(now)),
        "the upload re-read the changed file for its CRC32"
    );
}

#[test]
fn an_object_replaced_between_two_ranged_gets_fails_the_download() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let moto = Arc::new(Moto::start());
    moto.create_bucket("swapped");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    let body: Vec<u8> = (0..(40 * 1024 * 1024))
        .map(|i: usize| (i % 251) as u8)
        .collect();
    std::fs::write(&file, &body).unwrap();
    let digest = FileDigest::of_bytes(&body);
    let part_size = digest.parts.as_ref().unwrap().part_size;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store_at(&rt, moto.endpoint(), "swapped").put_file("big", &file, &digest, 1, None))
        .unwrap();
    // Another writer replaces the object just before the second part's GET
    // reaches the server: the part must be refused, not stitched on.
    let second_part = format!("range: bytes={part_size}-");
    let replaced = Arc::new(AtomicBool::new(false));
    // (A weak reference: the forwarder outlives the test, the server must not.)
    let (server, did) = (Arc::downgrade(&moto), replaced.clone());
    let target = moto.endpoint().trim_start_matches("http://").to_string();
    let endpoint = forwarder(target, move |chunk| {
        let text = String::from_utf8_lossy(chunk).to_ascii_lowercase();
        if text.contains(&second_part) && !did.swap(true, Ordering::SeqCst) {
            if let Some(server) = server.upgrade() {
                server.put_object("swapped", "big", &vec![7u8; 20 * 1024 * 1024]);
            }
        }
    });
    let parts = S3Settings {
        part_downloads: 4,
        ..S3Settings::default()
    };
    let store = store_with(&rt, endpoint, "swapped", &parts);
    let dest = dir.path().join("back");
    let got = rt.block_on(store.get_to_file("big", &dest, CheckKind::PartCrc32 { part_size }));
    assert!(
        replaced.load(Ordering::SeqCst),
        "the second part was never asked for"
    );
    let err = got.expect_err("a download stitched from two objects must fail");
    assert!(
        err.to_string()
            .contains("the object changed during the download"),
        "{err}"
    );
}
