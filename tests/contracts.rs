//! The source and sink contracts end to end: a sink that cannot make a batch
//! durable keeps a real Kafka source from committing it, and the `generate`
//! source runs through the whole pipeline like any other.

mod common;

use std::path::Path;
use std::process::Command;

use async_trait::async_trait;
use common::BIN;
use common::kafka::{Cleanup, committed_and_high};
use rdkafka::Offset;
use seclake::config::Config;
use seclake::pipeline::{RunOptions, run, run_with_sinks};
use seclake_sink::{Sink, SinkBatch, SinkError, SinkSpec, SinkStats, Takes};

/// An acknowledging sink whose every write fails, as a broken store would.
struct Broken;

#[async_trait]
impl Sink for Broken {
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError> {
        batch.ack.fail();
        Err(SinkError::Schema("the broken sink refuses every batch"))
    }

    async fn roll_due(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        SinkStats::default()
    }
}

#[async_trait]
impl SinkSpec for Broken {
    fn name(&self) -> &'static str {
        "broken"
    }

    fn takes(&self) -> Takes {
        Takes::Events
    }

    fn check(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn open(&self) -> Result<Box<dyn Sink>, SinkError> {
        Ok(Box::new(Broken))
    }
}

fn app_lines(n: u64) -> String {
    (0..n)
        .map(|i| {
            format!(
                r#"{{"ts":"2026-11-29T10:{:02}:{:02}.{i:06}Z","level":"info","service":"commerce-api","method":"GET","route":"/orders/{{id}}","path":"/orders/{i}","status":200,"latency_ms":3.5,"client_ip":"198.51.100.{}","user_agent":"contract-test"}}
"#,
                (i / 60) % 60,
                i % 60,
                i % 200
            )
        })
        .collect()
}

/// The offset `group` committed on the topic's one partition.
fn committed(brokers: &str, group: &str, topic: &str) -> Offset {
    let parts = committed_and_high(brokers, group, topic, 1).expect("the broker answers");
    parts[0].0
}

fn kafka_config(dir: &Path, brokers: &str, topic: &str, group: &str) -> Config {
    let d = dir.display();
    let text = format!(
        "[[source]]\ntype = \"kafka\"\nformat = \"app\"\nbrokers = \"{brokers}\"\n\
         topic = \"{topic}\"\ngroup = \"{group}\"\nlinger_ms = 50\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n"
    );
    Config::parse(&text, "contracts.toml").expect("config")
}

#[test]
fn a_sink_that_fails_keeps_the_kafka_source_from_committing() {
    let Some(brokers) =
        seclake_fixtures::services::service("kafka", "SECLAKE_KAFKA_BROKERS", "127.0.0.1:9092")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cleanup = Cleanup::new(&brokers);
    let (topic, group) = (
        cleanup.topic("contract-fail"),
        cleanup.group("contract-fail-group"),
    );
    let input = dir.path().join("app.ndjson");
    std::fs::write(&input, app_lines(2000)).expect("input written");
    let replayed = Command::new(BIN)
        .args([
            "replay",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--partitions",
            "1",
        ])
        .arg(&input)
        .output()
        .expect("seclake replay runs");
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );

    let cfg = kafka_config(dir.path(), &brokers, &topic, &group);
    let opts = RunOptions {
        until_caught_up: true,
        ..RunOptions::default()
    };
    let err = run_with_sinks(&cfg, &opts, &[&Broken]).expect_err("the broken sink fails the run");
    assert!(format!("{err:#}").contains("broken"), "{err:#}");
    assert_eq!(
        committed(&brokers, &group, &topic),
        Offset::Invalid,
        "nothing is committed while a sink failed the batches"
    );

    // Without the broken sink the same group reads everything again.
    let summary = run(&cfg, &opts).expect("the run succeeds");
    assert_eq!(summary.lake_rows, 2000);
    assert_eq!(committed(&brokers, &group, &topic), Offset::Offset(2000));
}

#[test]
fn the_generate_source_feeds_the_pipeline_with_the_fixture_days_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let text = format!(
        "[[source]]\ntype = \"generate\"\nformat = \"waf\"\ncount = 3000\nseed = 9\ndate = 2026-11-25\n\
         [[source]]\ntype = \"generate\"\nformat = \"app\"\ncount = 1000\n\
         [lake]\nurl = \"file://{d}/lake\"\n[dlq]\nurl = \"file://{d}/dlq\"\n"
    );
    let cfg = Config::parse(&text, "generate.toml").expect("config");
    let summary = run(&cfg, &RunOptions::default()).expect("runs");
    let waf = summary.formats["waf"];
    let app = summary.formats["app"];
    assert_eq!((waf.records, app.records), (3000, 1000));
    assert_eq!(waf.events + waf.dead_letters, 3000);
    assert_eq!(app.events + app.dead_letters, 1000);
    assert_eq!(summary.lake_rows, waf.events + app.events);
    assert_eq!(summary.sinks["lake"].rows, summary.lake_rows);
    assert_eq!(
        summary.sinks["dlq"].rows,
        waf.dead_letters + app.dead_letters
    );
    assert!(
        waf.dead_letters > 0,
        "the generator's malformed lines are dead letters"
    );
}

#[test]
fn a_bad_generate_rate_is_a_config_error_naming_the_key() {
    let text = "[[source]]\ntype = \"generate\"\nformat = \"waf\"\nrate = \"quick\"\n\
                [lake]\nurl = \"file:///l\"\n[dlq]\nurl = \"file:///d\"\n";
    let err = Config::parse(text, "c.toml")
        .expect_err("bad rate")
        .to_string();
    assert!(
        err.contains("source[0].rate") && err.contains("quick"),
        "{err}"
    );
}
