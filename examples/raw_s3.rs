//! The S3 ceiling swamp is measured against (bench/run, case 6): the same SDK
//! (aws-sdk-s3 + tokio), with none of swamp's logic (no lock, index, hashing,
//! cache or state file).
//!
//! Small objects: `raw_s3 ENDPOINT BUCKET COUNT SIZE CONCURRENCY [PREFIX]`
//! puts COUNT objects of SIZE bytes under PREFIX (default `raw`) with
//! CONCURRENCY requests in flight (`buffer_unordered`), then gets them all
//! back, and prints `{"put_seconds":..,"get_seconds":..,"count":..,"size":..}`.
//!
//! One large object: `raw_s3 ENDPOINT BUCKET --big FILE [KEY] [PART_MIB] [PARTS_IN_FLIGHT]`
//! uploads FILE as one object (multipart, 16 MiB parts, 4 in flight, as swamp
//! does; a single streamed PUT when it fits in one part), then streams it back
//! into /dev/null (the server's rate) and once more into a file that it fsyncs
//! (the server's and the disk's), and prints
//! `{"put_seconds":..,"get_seconds":..,"get_file_seconds":..,"bytes":..}`.
//!
//! One listing: `raw_s3 ENDPOINT BUCKET --list PREFIX START_AFTER [TIMES]`
//! lists PREFIX from START_AFTER on (one ListObjectsV2 page, as swamp's lock
//! acquisition does) once to warm up, then TIMES more (default 5), and prints
//! `{"list_seconds":..,"keys":..}` with the median: the server's share of a
//! command that lists the same prefix.
//!
//! Credentials and region come from the environment (AWS_ACCESS_KEY_ID,
//! AWS_SECRET_ACCESS_KEY); addressing is path-style, region us-east-1.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: raw_s3 ENDPOINT BUCKET COUNT SIZE CONCURRENCY [PREFIX]\n       raw_s3 ENDPOINT BUCKET --big FILE [KEY] [PART_MIB] [PARTS_IN_FLIGHT]\n       raw_s3 ENDPOINT BUCKET --list PREFIX START_AFTER [TIMES]";

async fn client(endpoint: &str) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    Client::from_conf(conf)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, what: &str) -> Result<T, BoxError> {
    args.get(i)
        .ok_or_else(|| format!("missing {what}\n{USAGE}"))?
        .parse::<T>()
        .map_err(|_| format!("bad {what}: {}\n{USAGE}", args[i]).into())
}

async fn small(client: &Client, bucket: &str, args: &[String]) -> Result<String, BoxError> {
    let count: usize = arg(args, 3, "COUNT")?;
    let size: usize = arg(args, 4, "SIZE")?;
    let concurrency: usize = arg::<usize>(args, 5, "CONCURRENCY")?.max(1);
    let prefix = args.get(6).cloned().unwrap_or_else(|| "raw".to_string());
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let key = |i: usize| format!("{prefix}/d{:02}/f{i:06}", i % 40);

    let started = Instant::now();
    stream::iter(0..count)
        .map(|i| {
            let req = client
                .put_object()
                .bucket(bucket)
                .key(key(i))
                .body(ByteStream::from(body.clone()));
            async move { req.send().await.map(|_| ()) }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let put_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let sizes: Vec<usize> = stream::iter(0..count)
        .map(|i| {
            let req = client.get_object().bucket(bucket).key(key(i));
            async move {
                let out = req.send().await?;
                let bytes = out.body.collect().await?;
                Ok::<usize, BoxError>(bytes.into_bytes().len())
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let get_seconds = started.elapsed().as_secs_f64();
    if let Some(bad) = sizes.iter().find(|&&n| n != size) {
        return Err(format!("a GET returned {bad} bytes, expected {size}").into());
    }
    Ok(format!(
        "{{\"put_seconds\":{put_seconds:.6},\"get_seconds\":{get_seconds:.6},\"count\":{count},\"size\":{size},\"concurrency\":{concurrency}}}"
    ))
}

async fn put_big(
    client: &Client,
    bucket: &str,
    key: &str,
    path: &Path,
    part: u64,
    in_flight: usize,
) -> Result<(), BoxError> {
    let size = std::fs::metadata(path)?.len();
    if size <= part {
        let body = ByteStream::from_path(path).await?;
        client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await?;
        return Ok(());
    }
    let created = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .send()
        .await?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let count = size.div_ceil(part);
    let upload_id_ref = &upload_id;
    let mut parts: Vec<CompletedPart> = stream::iter(0..count)
        .map(|i| async move {
            let offset = i * part;
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(aws_sdk_s3::primitives::Length::Exact(
                    part.min(size - offset),
                ))
                .build()
                .await?;
            let number = i as i32 + 1;
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id_ref)
                .part_number(number)
                .body(body)
                .send()
                .await?;
            Ok::<_, BoxError>(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            )
        })
        .buffer_unordered(in_flight.max(1))
        .try_collect()
        .await?;
    parts.sort_by_key(|p| p.part_number());
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    Ok(())
}

async fn big(client: &Client, bucket: &str, args: &[String]) -> Result<String, BoxError> {
    let path = args
        .get(4)
        .ok_or_else(|| format!("missing FILE\n{USAGE}"))?
        .clone();
    let key = args
        .get(5)
        .cloned()
        .unwrap_or_else(|| "raw/big".to_string());
    let part_mib: u64 = if args.len() > 6 {
        arg(args, 6, "PART_MIB")?
    } else {
        16
    };
    let in_flight: usize = if args.len() > 7 {
        arg(args, 7, "PARTS_IN_FLIGHT")?
    } else {
        4
    };
    let path = Path::new(&path);

    let started = Instant::now();
    put_big(
        client,
        bucket,
        &key,
        path,
        part_mib.max(5) * 1024 * 1024,
        in_flight,
    )
    .await?;
    let put_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let out = client.get_object().bucket(bucket).key(&key).send().await?;
    let mut body = out.body;
    let mut sink = tokio::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .await?;
    let mut bytes = 0u64;
    while let Some(chunk) = body.try_next().await? {
        bytes += chunk.len() as u64;
        tokio::io::AsyncWriteExt::write_all(&mut sink, &chunk).await?;
    }
    let get_seconds = started.elapsed().as_secs_f64();

    // The same GET landed durably in a file beside FILE: what any pull must
    // at least do (the disk's share, without swamp's checks or bookkeeping).
    let dest = path.with_extension("raw-get");
    let started = Instant::now();
    let written = get_to_durable_file(client, bucket, &key, &dest).await;
    let get_file_seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&dest);
    if written? != bytes {
        return Err("the GET into a file returned a different size".into());
    }
    Ok(format!(
        "{{\"put_seconds\":{put_seconds:.6},\"get_seconds\":{get_seconds:.6},\"get_file_seconds\":{get_file_seconds:.6},\"bytes\":{bytes}}}"
    ))
}

/// Streams `key` into a new file at `dest` (written on a blocking thread while
/// the body arrives) and fsyncs it; returns the byte count.
async fn get_to_durable_file(
    client: &Client,
    bucket: &str,
    key: &str,
    dest: &Path,
) -> Result<u64, BoxError> {
    use std::io::Write;
    let out = client.get_object().bucket(bucket).key(key).send().await?;
    let mut body = out.body;
    let mut file = std::fs::File::create(dest)?;
    let (chunks, mut arriving) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let writer = tokio::task::spawn_blocking(move || {
        let mut size = 0u64;
        while let Some(chunk) = arriving.blocking_recv() {
            file.write_all(&chunk)?;
            size += chunk.len() as u64;
        }
        file.sync_all()?;
        Ok::<u64, std::io::Error>(size)
    });
    while let Some(chunk) = body.try_next().await? {
        if chunks.send(chunk).await.is_err() {
            break;
        }
    }
    drop(chunks);
    Ok(writer.await??)
}

async fn list(client: &Client, bucket: &str, args: &[String]) -> Result<String, BoxError> {
    let prefix: String = arg(args, 4, "PREFIX")?;
    let start_after: String = arg(args, 5, "START_AFTER")?;
    let times: usize = match args.get(6) {
        Some(_) => arg::<usize>(args, 6, "TIMES")?.max(1),
        None => 5,
    };
    let mut seconds = Vec::with_capacity(times);
    let mut keys = 0;
    for round in 0..=times {
        let started = Instant::now();
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .start_after(&start_after)
            .send()
            .await?;
        // Round 0 warms the connection up, as a command's earlier requests would.
        if round > 0 {
            seconds.push(started.elapsed().as_secs_f64());
        }
        keys = page.contents().len();
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    Ok(format!("{{\"list_seconds\":{median},\"keys\":{keys}}}"))
}

async fn run(args: Vec<String>) -> Result<String, BoxError> {
    if args.len() < 4 {
        return Err(USAGE.into());
    }
    let client = client(&args[1]).await;
    let bucket = &args[2];
    if args[3] == "--big" {
        big(&client, bucket, &args).await
    } else if args[3] == "--list" {
        list(&client, bucket, &args).await
    } else {
        small(&client, bucket, &args).await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(std::env::args().collect()).await {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "raw_s3: {}",
                aws_sdk_s3::error::DisplayErrorContext(e.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
