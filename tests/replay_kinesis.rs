//! `seclake replay --to kinesis` against kinesis-local (127.0.0.1:4567,
//! `SECLAKE_KINESIS_ENDPOINT`, started by `scripts/services up kinesis`):
//! fixture WAF lines into a fresh stream per test, read back from every shard
//! with GetRecords, plain and as KPL aggregates; and the usage errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::types::ShardIteratorType;
use common::BIN;
use seclake_fixtures::services::{service, unique_name};
use seclake_ingest::Format;
use seclake_ingest::kinesis::aggregate::{KPL_MAGIC, Unpacked, unpack};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);
const LINES: u64 = 1_500;

/// kinesis-local's client and a runtime to drive it, or `None` when it is
/// down outside CI.
struct Kinesis {
    client: Client,
    url: String,
    rt: tokio::runtime::Runtime,
}

/// A fresh stream, deleted when dropped.
struct Stream<'k> {
    kinesis: &'k Kinesis,
    name: String,
}

/// One Kinesis record read back.
struct Read {
    shard: String,
    partition_key: String,
    data: Vec<u8>,
}

impl Kinesis {
    fn up() -> Option<Kinesis> {
        let url = service(
            "kinesis",
            "SECLAKE_KINESIS_ENDPOINT",
            "http://127.0.0.1:4567",
        )?;
        let client = Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .endpoint_url(&url)
                .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
                .build(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Some(Kinesis { client, url, rt })
    }

    fn stream(&self, shards: i32) -> Stream<'_> {
        let name = unique_name("seclake-replay");
        self.rt.block_on(async {
            self.client
                .create_stream()
                .stream_name(&name)
                .shard_count(shards)
                .send()
                .await
                .expect("CreateStream");
            self.client
                .wait_until_stream_exists()
                .stream_name(&name)
                .wait(WAIT)
                .await
                .expect("the stream becomes ACTIVE");
        });
        Stream {
            kinesis: self,
            name,
        }
    }
}

impl Drop for Stream<'_> {
    fn drop(&mut self) {
        let k = self.kinesis;
        let _ =
            k.rt.block_on(k.client.delete_stream().stream_name(&self.name).send());
    }
}

impl Stream<'_> {
    /// Every record of every shard, each shard read from TRIM_HORIZON until
    /// an empty page at the tip (`MillisBehindLatest` 0).
    fn read_all(&self) -> Vec<Read> {
        let k = self.kinesis;
        let deadline = Instant::now() + WAIT;
        k.rt.block_on(async {
            let shards = k
                .client
                .list_shards()
                .stream_name(&self.name)
                .send()
                .await
                .expect("ListShards");
            let mut out = Vec::new();
            for shard in shards.shards() {
                let shard_id = shard.shard_id();
                let mut iterator = k
                    .client
                    .get_shard_iterator()
                    .stream_name(&self.name)
                    .shard_id(shard_id)
                    .shard_iterator_type(ShardIteratorType::TrimHorizon)
                    .send()
                    .await
                    .expect("GetShardIterator")
                    .shard_iterator
                    .expect("an iterator");
                loop {
                    assert!(
                        Instant::now() < deadline,
                        "shard {shard_id} not read to its tip in {WAIT:?}"
                    );
                    let page = k
                        .client
                        .get_records()
                        .shard_iterator(&iterator)
                        .limit(10_000)
                        .send()
                        .await
                        .expect("GetRecords");
                    for record in page.records() {
                        out.push(Read {
                            shard: shard_id.to_owned(),
                            partition_key: record.partition_key().to_owned(),
                            data: record.data().as_ref().to_vec(),
                        });
                    }
                    if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                        break;
                    }
                    match page.next_shard_iterator() {
                        Some(next) => iterator = next.to_owned(),
                        None => break,
                    }
                }
            }
            out
        })
    }
}

/// `n` fixture WAF lines in `dir/waf.ndjson`: the path and the lines.
fn waf_file(dir: &Path, seed: u64, n: u64) -> (PathBuf, Vec<Vec<u8>>) {
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date");
    let mut text = Vec::new();
    seclake_fixtures::write_lines(Format::Waf, seed, day, n, &mut text).expect("generated");
    let path = dir.join("waf.ndjson");
    std::fs::write(&path, &text).expect("lines written");
    let lines: Vec<Vec<u8>> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(lines.len() as u64, n);
    (path, lines)
}

/// Runs `seclake replay --to kinesis` on kinesis-local with `args`.
fn replay(kinesis: &Kinesis, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["replay", "--to", "kinesis", "--endpoint", &kinesis.url])
        .args(["--region", "us-east-1"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("seclake replay runs")
}

/// Replays `file` into `stream` (and `extra` flags), expecting success; the
/// JSON report.
fn replay_ok(kinesis: &Kinesis, stream: &str, file: &Path, extra: &[&str]) -> Value {
    let report = file.with_extension("report.json");
    let mut args = vec!["--stream", stream, "--report-json"];
    args.push(report.to_str().expect("a UTF-8 path"));
    args.extend(extra);
    args.push(file.to_str().expect("a UTF-8 path"));
    let out = replay(kinesis, &args);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("sent {LINES} records")),
        "report: {stdout}"
    );
    serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json")
}

fn check_report(report: &Value, stream: &str, lines: &[Vec<u8>], aggregated: bool) {
    let bytes: usize = lines.iter().map(Vec::len).sum();
    assert_eq!(report["to"], "kinesis", "{report}");
    assert_eq!(report["stream"], stream, "{report}");
    assert_eq!(report["shards"], 2, "{report}");
    assert_eq!(report["records"], lines.len() as u64, "{report}");
    assert_eq!(report["bytes"], bytes as u64, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["aggregated"], aggregated, "{report}");
    assert!(report["retried"].is_u64(), "{report}");
    let seconds = report["seconds"].as_f64().expect("seconds");
    let rate = report["records_per_second"].as_f64().expect("a rate");
    assert!(seconds > 0.0, "{report}");
    assert!(
        (rate * seconds - lines.len() as f64).abs() < 1.0,
        "{report}"
    );
}

#[test]
fn every_line_is_one_kinesis_record_spread_over_the_shards() {
    let Some(kinesis) = Kinesis::up() else {
        return;
    };
    let stream = kinesis.stream(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, lines) = waf_file(dir.path(), 7, LINES);

    let report = replay_ok(&kinesis, &stream.name, &file, &[]);
    check_report(&report, &stream.name, &lines, false);
    assert_eq!(report["kinesis_records"], LINES, "{report}");

    let read = stream.read_all();
    let mut shards: Vec<&str> = read.iter().map(|r| r.shard.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    assert_eq!(shards.len(), 2, "both shards got records");
    for record in &read {
        assert_eq!(record.partition_key.len(), 32);
        assert!(record.partition_key.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    let mut got: Vec<Vec<u8>> = read.into_iter().map(|r| r.data).collect();
    let mut want = lines;
    got.sort_unstable();
    want.sort_unstable();
    assert!(
        got == want,
        "the stream holds other records than the file's lines"
    );
}

#[test]
fn with_aggregate_the_lines_go_as_kpl_aggregates_in_file_order() {
    let Some(kinesis) = Kinesis::up() else {
        return;
    };
    let stream = kinesis.stream(2);
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, lines) = waf_file(dir.path(), 8, LINES);

    let report = replay_ok(&kinesis, &stream.name, &file, &["--aggregate"]);
    check_report(&report, &stream.name, &lines, true);

    let read = stream.read_all();
    assert_eq!(report["kinesis_records"], read.len() as u64, "{report}");
    assert!(read.len() >= 3, "at most 500 lines an aggregate");
    let mut aggregates: Vec<Vec<Vec<u8>>> = Vec::new();
    for record in &read {
        assert!(record.data.starts_with(&KPL_MAGIC), "not a KPL aggregate");
        assert!(record.data.len() + record.partition_key.len() <= 1 << 20);
        match unpack(&record.data, usize::MAX) {
            Unpacked::Records(users) => {
                assert!(users.len() <= 500);
                aggregates.push(users.into_iter().map(|u| u.data.to_vec()).collect());
            }
            other => panic!("an aggregate unpacks to {other:?}"),
        }
    }
    // Each aggregate holds a run of consecutive lines; together, in the
    // order of those runs, they are the file.
    let mut at = 0;
    while at < lines.len() {
        let next = aggregates
            .iter()
            .position(|a| lines[at..].starts_with(a) && !a.is_empty())
            .unwrap_or_else(|| panic!("no aggregate holds line {} onwards", at + 1));
        at += aggregates.swap_remove(next).len();
    }
    assert!(aggregates.is_empty(), "aggregates beyond the file's lines");
}

#[test]
fn kinesis_without_stream_names_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{}\n").expect("written");
    let out = Command::new(BIN)
        .args(["replay", "--to", "kinesis"])
        .arg(&file)
        .output()
        .expect("seclake runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--stream"), "{stderr}");

    let out = Command::new(BIN)
        .args(["replay", "--stream", "s"])
        .arg(&file)
        .output()
        .expect("seclake runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--topic"), "{stderr}");
}

#[test]
fn a_missing_stream_fails_clearly() {
    let Some(kinesis) = Kinesis::up() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, "{}\n").expect("written");
    let missing = unique_name("seclake-no-such-stream");
    let out = replay(
        &kinesis,
        &["--stream", &missing, file.to_str().expect("path")],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Kinesis stream \"{missing}\" not found")),
        "{stderr}"
    );
}

#[test]
fn a_line_over_1_mib_is_refused_before_anything_is_sent() {
    let Some(kinesis) = Kinesis::up() else {
        return;
    };
    let stream = kinesis.stream(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.ndjson");
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(1 << 20));
    std::fs::write(
        &file,
        format!("{{\"n\":1}}\n{{\"n\":2}}\n{big}\n{{\"n\":4}}\n"),
    )
    .expect("written");
    for extra in [None, Some("--aggregate")] {
        let path = file.to_str().expect("path");
        let mut args = vec!["--stream", &stream.name, path];
        args.extend(extra);
        let out = replay(&kinesis, &args);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("{path}:3: ")), "{stderr}");
        assert!(stderr.contains("longer than"), "{stderr}");
    }
    assert_eq!(stream.read_all().len(), 0, "nothing was sent");
}
