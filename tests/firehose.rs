//! The Firehose source end to end: `seclake run` as a Firehose HTTP
//! endpoint, a client that delivers as Firehose does, the process killed
//! with SIGKILL right after a 200, and the lake holding every record once
//! the next run drained its buffer. And a smoke test through moto's
//! Firehose (127.0.0.1:5000): `seclake replay --to firehose` into a
//! delivery stream whose HTTP endpoint destination is seclake.

#[path = "../ingest/tests/support/firehose_client.rs"]
mod firehose_client;

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Seclake, dead_letter_lines, free_port, lake_ids, waf_lines, wait_for};
use firehose_client::FirehoseClient;
use seclake_enrich::parse::event_id;
use seclake_ingest::Format;

const KEY: &str = "test-access-key";

/// A config with the endpoint on `listen_port` and metrics on
/// `metrics_port`; `keyed`: the access key from the environment.
fn config(dir: &Path, listen_port: u16, metrics_port: u16, keyed: bool) -> PathBuf {
    let d = dir.display();
    let key = if keyed {
        "access_key = \"${SECLAKE_TEST_FIREHOSE_KEY}\"\n"
    } else {
        ""
    };
    let text = format!(
        "[[source]]\ntype = \"firehose\"\nformat = \"waf\"\n\
         listen = \"127.0.0.1:{listen_port}\"\n{key}buffer_dir = \"{d}/buffer\"\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n{}",
        Seclake::metrics_section(metrics_port)
    );
    let path = dir.join(format!("firehose-{listen_port}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

fn listening(port: u16) -> bool {
    wait_for(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

fn buffered(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("buffer")).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "fhd"))
            .count()
    })
}

#[test]
fn records_answered_200_reach_the_lake_even_when_the_process_is_killed_right_after() {
    // SAFETY: set before any thread of this test process reads the environment.
    unsafe { std::env::set_var("SECLAKE_TEST_FIREHOSE_KEY", KEY) };
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let metrics = free_port();
    let path = config(dir.path(), listen, metrics, true);
    let url = format!("http://127.0.0.1:{listen}/");
    let client = FirehoseClient::new(&url).key(KEY).gzipped();

    let lines = waf_lines(7, 1200);
    let mut bad = b"{\"not\": \"a waf log\"".to_vec();
    bad.push(b'\n');
    let first = Seclake::start(&path, metrics, &[]);
    assert!(listening(listen), "the endpoint listens");
    // Two deliveries of 500 records, the second with a bad record and one
    // record holding two lines, answered 200, then SIGKILL at once.
    let mut request_ids = Vec::new();
    for chunk in [&lines[..500], &lines[500..1000]] {
        let mut records: Vec<Vec<u8>> = chunk.to_vec();
        if request_ids.len() == 1 {
            records[10] = bad.clone();
            let mut two = lines[1000].clone();
            two.push(b'\n');
            two.extend_from_slice(&lines[1001]);
            records[11] = two;
        }
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let (id, answers) = client.clone().retrying(5).deliver(&refs);
        assert_eq!(answers.last().map(|a| a.status), Some(200), "{answers:?}");
        request_ids.push(id);
    }
    first.kill_hard();
    assert!(
        buffered(dir.path()) >= 1,
        "what was answered 200 is on disk"
    );

    // The next run drains the buffer and stops (`--until-caught-up`).
    let second = Seclake::start(&path, free_port(), &["--until-caught-up"]);
    let summary = second.wait_success(Duration::from_secs(120));
    assert_eq!(
        buffered(dir.path()),
        0,
        "the buffer is trimmed once the lake has it"
    );

    let (rows, ids) = lake_ids(dir.path()).expect("a lake was written");
    let mut expected: Vec<&Vec<u8>> = lines[..1000].iter().collect();
    expected.remove(510);
    expected.remove(510);
    expected.push(&lines[1000]);
    expected.push(&lines[1001]);
    // The fixtures hold a few malformed records on purpose: those are dead
    // letters, every other record answered 200 is in the lake.
    let dead = dead_letter_lines(dir.path());
    let dead_raw: Vec<Vec<u8>> = dead.iter().filter_map(|d| d.raw_bytes()).collect();
    let missing: Vec<usize> = (0..expected.len())
        .filter(|&i| {
            !ids.contains(&event_id(Format::Waf, expected[i])) && !dead_raw.contains(expected[i])
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} records answered 200 are neither in the lake ({rows} rows) nor dead letters ({}), first at {:?}: {summary}",
        missing.len(),
        dead.len(),
        missing.first()
    );
    assert_eq!(rows as usize + dead.len(), expected.len() + 1, "{summary}");
    let bad_one = dead
        .iter()
        .find(|d| {
            d.position["kind"] == "firehose"
                && d.position["request_id"] == request_ids[1].as_str()
                && d.position["record_index"] == 10
        })
        .expect("the bad record is a dead letter at its request and index");
    assert_eq!(bad_one.raw_bytes().as_deref(), Some(&bad[..bad.len() - 1]));
}

#[test]
fn replay_through_moto_firehose_to_the_endpoint_reaches_the_lake() {
    use aws_sdk_firehose::types::{
        DeliveryStreamType, HttpEndpointConfiguration, HttpEndpointDestinationConfiguration,
        S3DestinationConfiguration,
    };
    let Some(moto) = seclake_fixtures::services::moto_with_credentials() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_port();
    let metrics = free_port();
    // moto sends no access key (and seconds for the timestamp).
    let seclake = Seclake::start(&config(dir.path(), listen, metrics, false), metrics, &[]);
    assert!(listening(listen), "the endpoint listens");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let firehose = aws_sdk_firehose::Client::new(
        &rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&moto)
                .load(),
        ),
    );
    let name = seclake_fixtures::services::unique_name("seclake-fh-endpoint");
    let destination = HttpEndpointDestinationConfiguration::builder()
        .endpoint_configuration(
            HttpEndpointConfiguration::builder()
                .url(format!("http://127.0.0.1:{listen}/"))
                .name("seclake")
                .build()
                .expect("endpoint"),
        )
        .s3_configuration(
            S3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose")
                .bucket_arn("arn:aws:s3:::seclake-fh-backup")
                .build()
                .expect("backup"),
        )
        .build();
    rt.block_on(
        firehose
            .create_delivery_stream()
            .delivery_stream_name(&name)
            .delivery_stream_type(DeliveryStreamType::DirectPut)
            .http_endpoint_destination_configuration(destination)
            .send(),
    )
    .expect("CreateDeliveryStream");

    let lines = waf_lines(11, 700);
    let input = dir.path().join("waf.ndjson");
    std::fs::write(&input, lines.join(&b"\n"[..])).expect("input written");
    let replayed = std::process::Command::new(common::BIN)
        .args(["replay", "--to", "firehose", "--region", "us-east-1"])
        .args(["--endpoint", &moto, "--delivery-stream", &name])
        .arg(&input)
        .env("RUST_LOG", "warn")
        .output()
        .expect("seclake replay runs");
    let _ = rt.block_on(
        firehose
            .delete_delivery_stream()
            .delivery_stream_name(&name)
            .send(),
    );
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    // moto posts synchronously within each PutRecordBatch: all is stored.
    let summary = seclake.terminate();
    let (rows, ids) = lake_ids(dir.path()).expect("a lake was written");
    let dead = dead_letter_lines(dir.path());
    assert_eq!(rows as usize + dead.len(), lines.len(), "{summary}");
    let in_lake = lines
        .iter()
        .filter(|l| ids.contains(&event_id(Format::Waf, l)))
        .count();
    assert_eq!(in_lake, rows as usize, "the lake holds the replayed lines");
    assert_eq!(buffered(dir.path()), 0);
}
