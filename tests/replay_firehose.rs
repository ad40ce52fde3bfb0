//! `seclake replay --to firehose` against moto (127.0.0.1:5000,
//! `SECLAKE_S3_ENDPOINT`, started by `scripts/services up moto`): a fresh
//! DirectPut delivery stream per test with an S3 destination, to which moto
//! writes one object per PutRecordBatch call, no buffering; the objects read
//! back are the file's lines. And the usage errors.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_firehose::Client;
use aws_sdk_firehose::types::{
    DeliveryStreamStatus, DeliveryStreamType, ExtendedS3DestinationConfiguration,
};
use common::BIN;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt as _};
use seclake_fixtures::services::{create_bucket, moto_with_credentials, unique_name};
use seclake_ingest::Format;
use serde_json::Value;

/// The most data a Firehose record holds; each line goes with a newline.
const MAX_RECORD: usize = 1_024_000;

/// moto's Firehose and S3, and a runtime to drive their clients.
struct Moto {
    firehose: Client,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// A fresh delivery stream into a fresh bucket; the stream and the
/// bucket's objects are deleted when dropped.
struct Delivery<'m> {
    moto: &'m Moto,
    name: String,
    bucket: Arc<dyn ObjectStore>,
}

impl Moto {
    /// `None` when moto is down outside CI. moto's credentials go in this
    /// process's environment, for its clients and the `seclake` it runs.
    fn up() -> Option<Moto> {
        let url = moto_with_credentials()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&url);
        let firehose = Client::new(&rt.block_on(loader.load()));
        Some(Moto { firehose, url, rt })
    }

    fn delivery(&self) -> Delivery<'_> {
        let bucket_name = unique_name("seclake-replay-fh");
        create_bucket(&self.url, &bucket_name);
        let bucket = AmazonS3Builder::new()
            .with_endpoint(&self.url)
            .with_allow_http(true)
            .with_bucket_name(&bucket_name)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .expect("the bucket's store");
        let name = unique_name("seclake-replay");
        let destination = ExtendedS3DestinationConfiguration::builder()
            .role_arn("arn:aws:iam::123456789012:role/firehose")
            .bucket_arn(format!("arn:aws:s3:::{bucket_name}"))
            .build()
            .expect("an S3 destination");
        let status = self.rt.block_on(async {
            self.firehose
                .create_delivery_stream()
                .delivery_stream_name(&name)
                .delivery_stream_type(DeliveryStreamType::DirectPut)
                .extended_s3_destination_configuration(destination)
                .send()
                .await
                .expect("CreateDeliveryStream");
            self.firehose
                .describe_delivery_stream()
                .delivery_stream_name(&name)
                .send()
                .await
                .expect("DescribeDeliveryStream")
                .delivery_stream_description
                .expect("a description")
                .delivery_stream_status
        });
        assert_eq!(
            status,
            DeliveryStreamStatus::Active,
            "moto's streams start ACTIVE"
        );
        Delivery {
            moto: self,
            name,
            bucket: Arc::new(bucket),
        }
    }
}

impl Drop for Delivery<'_> {
    fn drop(&mut self) {
        let moto = self.moto;
        moto.rt.block_on(async {
            let _ = moto
                .firehose
                .delete_delivery_stream()
                .delivery_stream_name(&self.name)
                .send()
                .await;
            let listed: Vec<_> = self
                .bucket
                .list(None)
                .try_collect()
                .await
                .unwrap_or_default();
            for object in listed {
                let _ = self.bucket.delete(&object.location).await;
            }
        });
        // The emptied bucket stays: once a bucket that held objects is
        // deleted, moto's `/moto-api/data.json` fails for good (its deleted
        // keys still list and look the bucket up), and the report's SES
        // test reads what was sent from there.
    }
}

impl Delivery<'_> {
    /// The body of every object in the bucket.
    fn objects(&self) -> Vec<Vec<u8>> {
        self.moto.rt.block_on(async {
            let listed: Vec<_> = self.bucket.list(None).try_collect().await.expect("listed");
            let mut bodies = Vec::new();
            for object in listed {
                let body = self.bucket.get(&object.location).await.expect("get");
                bodies.push(body.bytes().await.expect("the body").to_vec());
            }
            bodies
        })
    }
}

/// The lines of one object: every record a line and its newline.
fn object_lines(body: &[u8]) -> Vec<Vec<u8>> {
    let Some(lines) = body.strip_suffix(b"\n") else {
        panic!("an object that does not end in a newline");
    };
    lines.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect()
}

/// Runs `seclake replay --to firehose` on moto with `args`, with moto's
/// credentials ([`Moto::up`]) and no other.
fn replay(moto: &Moto, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["replay", "--to", "firehose", "--region", "us-east-1"])
        .args(["--endpoint", &moto.url])
        .args(args)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn")
        .output()
        .expect("seclake replay runs")
}

/// Runs `test` with moto, a fresh delivery stream and a temporary
/// directory; passes without running it when moto is down outside CI.
fn with_delivery(test: impl FnOnce(&Moto, &Delivery<'_>, &Path)) {
    let Some(moto) = Moto::up() else {
        return;
    };
    let delivery = moto.delivery();
    let dir = tempfile::tempdir().expect("tempdir");
    test(&moto, &delivery, dir.path());
}

/// Fails the test with what `seclake` said unless it succeeded.
fn assert_succeeded(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "replay failed: {stderr}");
}

/// Replays `file` into `delivery` with `--report-json` (and `extra`); the
/// process's output and the report it wrote.
fn replay_reporting(
    moto: &Moto,
    delivery: &Delivery,
    file: &Path,
    extra: &[&str],
) -> (Output, Value) {
    let report = file.with_extension("report.json");
    let mut args = vec!["--delivery-stream", &delivery.name, "--report-json"];
    args.push(report.to_str().expect("a UTF-8 path"));
    args.extend(extra);
    args.push(file.to_str().expect("a UTF-8 path"));
    let out = replay(moto, &args);
    let json = std::fs::read(&report).unwrap_or_else(|_| {
        panic!(
            "no report; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, serde_json::from_slice(&json).expect("json"))
}

/// `n` fixture WAF lines, written to `dir/waf.ndjson`.
fn waf_lines(dir: &Path, n: u64) -> (std::path::PathBuf, Vec<Vec<u8>>) {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
    let mut text = Vec::new();
    seclake_fixtures::write_lines(Format::Waf, 11, day, n, &mut text).expect("generated");
    let path = dir.join("waf.ndjson");
    std::fs::write(&path, &text).expect("written");
    let lines: Vec<Vec<u8>> = String::from_utf8(text)
        .expect("UTF-8")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    assert_eq!(lines.len() as u64, n);
    (path, lines)
}

/// Checks that the bucket holds one object per call the report counts, each
/// a run of consecutive lines of `lines` in order, and together every line
/// exactly once; the lines of each object.
fn assert_delivered(delivery: &Delivery, report: &Value, lines: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    let objects = delivery.objects();
    let calls = report["calls"].as_u64().expect("calls");
    assert_eq!(objects.len() as u64, calls, "one object per call");
    let objects: Vec<Vec<Vec<u8>>> = objects.iter().map(|o| object_lines(o)).collect();
    let mut runs = objects.clone();
    let mut at = 0;
    while at < lines.len() {
        let next = runs
            .iter()
            .position(|run| !run.is_empty() && lines[at..].starts_with(run))
            .unwrap_or_else(|| panic!("no object holds line {} onwards", at + 1));
        at += runs.swap_remove(next).len();
    }
    assert!(runs.is_empty(), "objects beyond the file's lines");
    objects
}

#[test]
fn every_line_arrives_once_in_calls_of_at_most_500() {
    with_delivery(|moto, delivery, dir| {
        let (file, lines) = waf_lines(dir, 1_200);
        let (out, report) = replay_reporting(moto, delivery, &file, &[]);
        assert_succeeded(&out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("sent 1200 records ("), "{stdout}");
        let to = format!(
            "to Firehose delivery stream {} in 3 PutRecordBatch calls",
            delivery.name
        );
        assert!(stdout.contains(&to), "{stdout}");
        let bytes: usize = lines.iter().map(Vec::len).sum();
        assert_eq!(report["to"], "firehose", "{report}");
        assert_eq!(
            report["delivery_stream"],
            delivery.name.as_str(),
            "{report}"
        );
        assert_eq!(report["records"], 1_200, "{report}");
        assert_eq!(report["bytes"], bytes as u64, "{report}");
        assert_eq!(report["failed"], 0, "{report}");
        assert_eq!(report["calls"], 3, "500 + 500 + 200: {report}");
        assert_eq!(report["retried"], 0, "{report}");

        let objects = assert_delivered(delivery, &report, &lines);
        let mut sizes: Vec<usize> = objects.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [200, 500, 500]);
    });
}

#[test]
fn a_line_over_1000_kib_is_counted_failed_and_the_others_arrive_within_4_mib_a_call() {
    // `{"n":N,"pad":"xx…x"}`, `len` bytes long.
    let padded = |n: usize, len: usize| {
        let mut line = format!("{{\"n\":{n},\"pad\":\"").into_bytes();
        line.resize(len - 2, b'x');
        line.extend_from_slice(b"\"}");
        line
    };
    // Line 3 is one byte more than a record holds with its newline; lines 4
    // to 8 are the longest it holds: four of them make a call of 4,096,000
    // bytes, and the fifth goes in the next.
    let mut lines = vec![padded(1, 20), padded(2, 20), padded(3, MAX_RECORD)];
    lines.extend((4..=8).map(|n| padded(n, MAX_RECORD - 1)));
    lines.push(padded(9, 20));
    with_delivery(|moto, delivery, dir| {
        let file = dir.join("big.ndjson");
        std::fs::write(&file, lines.join(&b"\n"[..])).expect("written");
        let (out, report) = replay_reporting(moto, delivery, &file, &[]);
        assert!(!out.status.success(), "a failed line fails the replay");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = file.to_str().expect("path");
        assert!(
            stderr.contains(&format!("{path}:3: the line is longer than 1023999 bytes")),
            "{stderr}"
        );
        assert!(stderr.contains("1 records were not accepted"), "{stderr}");
        assert_eq!(report["records"], 8, "{report}");
        assert_eq!(report["failed"], 1, "{report}");
        assert_eq!(report["calls"], 2, "{report}");
        let sent: Vec<Vec<u8>> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, line)| line.clone())
            .collect();
        assert_delivered(delivery, &report, &sent);
    });
}

#[test]
fn a_paced_replay_sends_what_lingered_without_waiting_for_500() {
    with_delivery(|moto, delivery, dir| {
        let (file, lines) = waf_lines(dir, 60);
        // 60 lines at 100/s take 0.6 s: a partial batch goes after 0.2 s.
        let (out, report) = replay_reporting(moto, delivery, &file, &["--rate", "100/s"]);
        assert_succeeded(&out);
        assert!(
            report["seconds"].as_f64().expect("seconds") >= 0.5,
            "{report}"
        );
        assert!(report["calls"].as_u64().expect("calls") >= 2, "{report}");
        assert_delivered(delivery, &report, &lines);
    });
}

#[test]
fn a_missing_delivery_stream_fails_naming_it() {
    let Some(moto) = Moto::up() else {
        return;
    };
    let missing = unique_name("seclake-no-such-delivery-stream");
    // Nothing to send: the check comes first all the same.
    let out = replay(&moto, &["--delivery-stream", &missing, "/dev/null"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Firehose delivery stream \"{missing}\" not found in us-east-1 at {}",
            moto.url
        )),
        "{stderr}"
    );
}

#[test]
fn firehose_flags_are_checked_before_anything_is_sent() {
    let cases: [(&[&str], &str); 4] = [
        (&["--to", "firehose"], "--delivery-stream <DELIVERY_STREAM>"),
        (
            &[
                "--to",
                "firehose",
                "--delivery-stream",
                "d",
                "--stream",
                "s",
            ],
            "--stream does not apply to --to firehose",
        ),
        (
            &["--to", "firehose", "--delivery-stream", "d", "--aggregate"],
            "--aggregate does not apply to --to firehose",
        ),
        (
            &["--to", "kinesis", "--stream", "s", "--delivery-stream", "d"],
            "--delivery-stream does not apply to --to kinesis",
        ),
    ];
    for (args, message) in cases {
        let out = Command::new(BIN)
            .arg("replay")
            .args(args)
            .arg("/dev/null")
            .output()
            .expect("seclake runs");
        assert_eq!(out.status.code(), Some(2), "a usage error: {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}
