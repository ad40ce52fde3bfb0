//! The Kinesis source end to end: WAF records put into a stream on
//! kinesis-local (127.0.0.1:4567), two `seclake run` processes sharing it
//! through a lease table in moto's DynamoDB (127.0.0.1:5000), one of them
//! killed with SIGKILL mid-stream, and DataFusion reading the lake.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::client::Waiters;
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use common::{Seclake, dead_letter_lines, free_port, sample, waf_lines, wait_for};
use seclake_enrich::parse::event_id;
use seclake_fixtures::services::{moto_with_credentials, service, unique_name};
use seclake_ingest::Format;
use seclake_ingest::kinesis::aggregate::aggregate;

const WAIT: Duration = Duration::from_secs(120);

fn kinesis(endpoint: &str) -> Client {
    Client::from_conf(
        aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    )
}

async fn put(client: &Client, stream: &str, records: &[(String, Vec<u8>)]) {
    for chunk in records.chunks(250) {
        let entries = chunk
            .iter()
            .map(|(key, data)| {
                PutRecordsRequestEntry::builder()
                    .partition_key(key)
                    .data(Blob::new(data.clone()))
                    .build()
                    .expect("an entry")
            })
            .collect::<Vec<_>>();
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.failed_record_count(), Some(0));
    }
}

fn config(
    dir: &Path,
    name: &str,
    kinesis: &str,
    moto: &str,
    stream: &str,
    table: &str,
) -> (PathBuf, u16) {
    let port = free_port();
    let d = dir.display();
    let text = format!(
        "[[source]]\ntype = \"kinesis\"\nformat = \"waf\"\nstream = \"{stream}\"\n\
         region = \"us-east-1\"\nendpoint = \"{kinesis}\"\nlease_table = \"{table}\"\n\
         lease_endpoint = \"{moto}\"\nlease_timeout_secs = 3\nworker_id = \"{name}\"\n\n\
         [lake]\nurl = \"file://{d}/lake\"\nmax_file_age_secs = 1\n\n\
         [dlq]\nurl = \"file://{d}/dlq\"\nmax_file_age_secs = 1\n\n{}",
        Seclake::metrics_section(port)
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("config written");
    (path, port)
}

/// The distinct event ids in the lake; none before its first file.
fn lake_ids(dir: &Path) -> HashSet<String> {
    common::lake_ids(dir)
        .map(|(_, ids)| ids)
        .unwrap_or_default()
}

#[test]
fn two_pipelines_share_a_stream_one_killed_with_sigkill_and_every_record_is_in_the_lake_or_the_dead_letters()
 {
    let Some(kinesis_url) = service(
        "kinesis",
        "SECLAKE_KINESIS_ENDPOINT",
        "http://127.0.0.1:4567",
    ) else {
        return;
    };
    let Some(moto_url) = moto_with_credentials() else {
        return;
    };
    let client = kinesis(&kinesis_url);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let stream = unique_name("seclake-e2e");
    let table = unique_name("seclake-leases");
    rt.block_on(async {
        client
            .create_stream()
            .stream_name(&stream)
            .shard_count(4)
            .send()
            .await
            .expect("CreateStream");
        client
            .wait_until_stream_exists()
            .stream_name(&stream)
            .wait(WAIT)
            .await
            .expect("ACTIVE");
    });
    let dir = tempfile::tempdir().expect("tempdir");

    // Phase 1: plain WAF lines, a KPL aggregate of 100 more, and an
    // aggregate whose MD5 is wrong.
    let plain = waf_lines(3, 1200);
    let packed_lines = waf_lines(4, 100);
    let refs: Vec<(&str, &[u8])> = packed_lines.iter().map(|l| ("kpl", l.as_slice())).collect();
    let mut bad = aggregate(&refs[..5]);
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let mut phase1: Vec<(String, Vec<u8>)> = plain
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("k{i}"), l.clone()))
        .collect();
    phase1.push(("kpl".into(), aggregate(&refs)));
    phase1.push(("bad".into(), bad.clone()));
    rt.block_on(put(&client, &stream, &phase1));

    let (config_a, port_a) = config(
        dir.path(),
        "pipeline-a",
        &kinesis_url,
        &moto_url,
        &stream,
        &table,
    );
    let (config_b, port_b) = config(
        dir.path(),
        "pipeline-b",
        &kinesis_url,
        &moto_url,
        &stream,
        &table,
    );
    let a = Seclake::start(&config_a, port_a, &[]);
    let b = Seclake::start(&config_b, port_b, &[]);
    let phase1_ids: HashSet<String> = plain
        .iter()
        .chain(&packed_lines)
        .map(|l| event_id(Format::Waf, l))
        .collect();
    assert!(
        wait_for(WAIT, || {
            let lake = lake_ids(dir.path());
            phase1_ids.iter().filter(|id| lake.contains(*id)).count() >= phase1_ids.len() / 2
        }),
        "the pipelines never wrote phase 1 to the lake"
    );
    a.kill_hard();

    let later = waf_lines(5, 600);
    let phase2: Vec<(String, Vec<u8>)> = later
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("k{i}"), l.clone()))
        .collect();
    rt.block_on(put(&client, &stream, &phase2));

    let all: Vec<&Vec<u8>> = plain.iter().chain(&packed_lines).chain(&later).collect();
    let settled = |lake: &HashSet<String>, dead: &HashSet<Vec<u8>>| {
        all.iter()
            .all(|l| lake.contains(&event_id(Format::Waf, l)) || dead.contains(*l))
    };
    let dead_raw = || -> HashSet<Vec<u8>> {
        dead_letter_lines(dir.path())
            .iter()
            .filter_map(seclake_sink::DeadLetterLine::raw_bytes)
            .collect()
    };
    assert!(
        wait_for(WAIT, || settled(&lake_ids(dir.path()), &dead_raw())),
        "after the kill, the survivor never delivered every record"
    );
    let metrics = b.metrics().expect("the survivor's /metrics");
    let took_over: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("seclake_kinesis_lease_changes_total{")
                && (l.contains("change=\"taken\"") || l.contains("change=\"taken_over\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(took_over >= 2.0, "the survivor took leases:\n{metrics}");
    assert!(
        metrics.contains("seclake_kinesis_millis_behind_latest{"),
        "/metrics has the lag per shard"
    );
    assert!(sample(&metrics, "seclake_kinesis_records_total").is_some_and(|n| n > 0.0));
    b.terminate();

    let lake = lake_ids(dir.path());
    let letters = dead_letter_lines(dir.path());
    let all_ids: HashSet<String> = all.iter().map(|l| event_id(Format::Waf, l)).collect();
    assert!(
        lake.is_subset(&all_ids),
        "nothing in the lake that was not put"
    );
    let md5: Vec<_> = letters
        .iter()
        .filter(|l| l.reason.contains("MD5"))
        .collect();
    assert!(!md5.is_empty(), "the bad aggregate is a dead letter");
    assert!(
        md5.iter()
            .all(|l| l.raw_bytes().as_deref() == Some(bad.as_slice()))
    );
    assert_eq!(md5[0].position["kind"], "kinesis");
    assert_eq!(md5[0].position["stream"], stream.as_str());
    assert!(
        letters
            .iter()
            .all(|l| l.reason.contains("MD5")
                || all.iter().any(|r| Some(r.to_vec()) == l.raw_bytes())),
        "every other dead letter is a malformed fixture line"
    );

    rt.block_on(async {
        let _ = client.delete_stream().stream_name(&stream).send().await;
    });
    let dynamo = aws_sdk_dynamodb_client(&moto_url);
    rt.block_on(async {
        let _ = dynamo.delete_table().table_name(&table).send().await;
    });
}

fn aws_sdk_dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    )
}
