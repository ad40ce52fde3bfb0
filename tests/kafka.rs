//! The Kafka source end to end, against the broker `scripts/services up`
//! starts on 127.0.0.1:9092 (`SECLAKE_KAFKA_BROKERS` to point elsewhere):
//! `seclake replay` fills a topic, `seclake run` processes read it into a
//! local lake, and DataFusion counts what arrived. One pipeline runs at a
//! time (the machine has two cores); each test has its own topic and group.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::kafka::{Cleanup, committed_and_high};
use common::{BIN, Seclake, dead_letter_lines, free_port, sample, wait_for};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use seclake_enrich::parse::event_id;
use seclake_fixtures::services::unique_name;
use seclake_ingest::Format;

static SERIAL: Mutex<()> = Mutex::new(());

const PARTITIONS: i32 = 6;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn brokers() -> Option<String> {
    seclake_fixtures::services::service("kafka", "SECLAKE_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// A valid app access-log line, distinct for every `(tag, i)`.
fn app_line(tag: &str, i: u64) -> String {
    format!(
        r#"{{"ts":"2026-11-29T{:02}:{:02}:{:02}.{:06}Z","level":"info","service":"commerce-api","method":"GET","route":"/orders/{{id}}","path":"/orders/{tag}-{i}","status":200,"latency_ms":12.5,"client_ip":"198.51.100.{}","user_agent":"seclake-test"}}"#,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60,
        i % 1_000_000,
        i % 250
    )
}

/// Writes lines `range` of `tag` to `path`; returns their event ids.
fn write_app_lines(path: &Path, tag: &str, range: std::ops::Range<u64>) -> HashSet<String> {
    let mut text = String::with_capacity((range.end - range.start) as usize * 220);
    let mut ids = HashSet::new();
    for i in range {
        let line = app_line(tag, i);
        ids.insert(event_id(Format::App, line.as_bytes()));
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(path, text).expect("lines written");
    ids
}

/// `seclake replay` as a child process (`rate` like `50k/s`).
fn replay_start(brokers: &str, topic: &str, files: &[&Path], rate: Option<&str>) -> Child {
    let mut command = Command::new(BIN);
    command
        .args(["replay", "--brokers", brokers, "--topic", topic])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(files)
        .stdout(Stdio::null());
    if let Some(rate) = rate {
        command.args(["--rate", rate]);
    }
    command.spawn().expect("seclake replay starts")
}

/// Runs `seclake replay` to the end; the number of records the broker took.
fn replay(brokers: &str, topic: &str, files: &[&Path]) -> u64 {
    let report = files[0].with_extension("report.json");
    let out = Command::new(BIN)
        .args(["replay", "--brokers", brokers, "--topic", topic])
        .args(["--partitions", &PARTITIONS.to_string(), "--report-json"])
        .arg(&report)
        .args(files)
        .output()
        .expect("seclake replay runs");
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("json");
    assert_eq!(report["failed"], 0);
    report["records"].as_u64().expect("records")
}

/// A pipeline config reading `topics` (format, topic) with `group`, into a
/// lake and dead letters under `dir` whose files roll every second (so
/// offsets commit every second), with metrics on `port`.
fn config(
    dir: &Path,
    brokers: &str,
    topics: &[(&str, &str)],
    group: &str,
    options: &str,
    port: u16,
) -> PathBuf {
    let d = dir.display();
    let mut text = String::new();
    for (format, topic) in topics {
        text.push_str(&format!(
            "[[source]]\ntype = \"kafka\"\nformat = \"{format}\"\nbrokers = \"{brokers}\"\n\
             topic = \"{topic}\"\ngroup = \"{group}\"\nlinger_ms = 50\n\
             [source.kafka_options]\n\"session.timeout.ms\" = 6000\n{options}\n"
        ));
    }
    text.push_str(&format!(
        "[lake]\nurl = \"file://{d}/lake\"\nmax_file_age_secs = 1\n\n\
         [dlq]\nurl = \"file://{d}/dlq\"\nmax_file_age_secs = 1\n\n{}",
        Seclake::metrics_section(port)
    ));
    let path = dir.join(format!("{group}.toml"));
    std::fs::write(&path, text).expect("config written");
    path
}

/// Rows in the lake and their distinct event ids.
fn lake_ids(dir: &Path) -> (u64, HashSet<String>) {
    common::lake_ids(dir).expect("the lake reads")
}

/// True once `group` has committed every partition of `topic` to its end.
fn committed_to_end(brokers: &str, group: &str, topic: &str) -> bool {
    committed_and_high(brokers, group, topic, PARTITIONS).is_some_and(|parts| {
        parts.iter().all(|&(committed, high)| match committed {
            Offset::Offset(offset) => offset == high,
            _ => high == 0,
        })
    })
}

fn wait_committed(brokers: &str, group: &str, topic: &str) {
    assert!(
        wait_for(Duration::from_secs(300), || committed_to_end(
            brokers, group, topic
        )),
        "group {group} never committed {topic} to its end"
    );
}

#[test]
fn a_million_records_across_six_partitions_reach_the_lake_once_each() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("million"), cleanup.group("million-group"));
    let input = dir.path().join("app.ndjson");
    let expected = write_app_lines(&input, &topic, 0..1_000_000);
    assert_eq!(replay(&brokers, &topic, &[&input]), 1_000_000);

    let port = free_port();
    let config = config(dir.path(), &brokers, &[("app", &topic)], &group, "", port);
    let summary = Seclake::start(&config, port, &["--until-caught-up"])
        .wait_success(Duration::from_secs(600));
    assert_eq!(summary["formats"]["app"]["records"], 1_000_000);
    assert_eq!(summary["lake_rows"], 1_000_000);
    let (rows, ids) = lake_ids(dir.path());
    assert_eq!(rows, 1_000_000, "lake rows equal records sent");
    assert_eq!(ids, expected, "every record once, ids distinct");
    assert!(committed_to_end(&brokers, &group, &topic));
}

/// kill -9 at ten moments while a million records are replayed: every
/// record is in the lake at least once; duplicates are counted, not lost.
#[test]
fn kill_9_ten_times_while_replaying_loses_nothing() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("chaos"), cleanup.group("chaos-group"));
    let input = dir.path().join("app.ndjson");
    let expected = write_app_lines(&input, &topic, 0..1_000_000);
    let mut replaying = replay_start(&brokers, &topic, &[&input], Some("50k/s"));
    let port = free_port();
    // Static membership by default: each restart takes the same instance id
    // (its slot), so it gets its partitions back at once.
    let config = config(dir.path(), &brokers, &[("app", &topic)], &group, "", port);
    assert!(
        wait_for(Duration::from_secs(60), || topic_exists(&brokers, &topic)),
        "replay never created {topic}"
    );

    // The moments: after a random number of records, 0 to 150,000, each run
    // (a fixed seed, so a failure can be replayed).
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut kills = Vec::new();
    for _ in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = seed % 150_000;
        let run = Seclake::start(&config, port, &[]);
        let reached = run.metric_reaches(
            "seclake_records_total{format=\"app\"}",
            after as f64,
            Duration::from_secs(120),
        );
        assert!(reached, "a run never processed {after} records");
        run.kill_hard();
        kills.push(after);
    }
    let status = replaying.wait().expect("replay exits");
    assert!(status.success(), "replay failed");

    let summary = Seclake::start(&config, port, &["--until-caught-up"])
        .wait_success(Duration::from_secs(600));
    let (rows, ids) = lake_ids(dir.path());
    assert_eq!(
        ids.len(),
        expected.len(),
        "every record's event id is in the lake"
    );
    assert_eq!(ids, expected);
    assert!(rows >= 1_000_000);
    eprintln!(
        "chaos: killed after {kills:?} records; lake rows {rows}, distinct {}, duplicates {} \
         ({:.2}%); the last run read {}",
        ids.len(),
        rows - ids.len() as u64,
        (rows - ids.len() as u64) as f64 / 1e4,
        summary["formats"]["app"]["records"]
    );
}

fn topic_exists(brokers: &str, topic: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("consumer");
    consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .is_ok_and(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
}

fn assigned(run: &Seclake, topic: &str) -> f64 {
    run.metrics()
        .and_then(|m| {
            sample(
                &m,
                &format!("seclake_kafka_assigned_partitions{{topic=\"{topic}\"}}"),
            )
        })
        .unwrap_or(0.0)
}

/// Creates `topic` and starts two pipelines with the same config (but for
/// their metrics ports) reading it in `group`.
fn two_pipelines(dir: &Path, brokers: &str, topic: &str, group: &str) -> (Seclake, Seclake) {
    let empty = dir.join("empty.ndjson");
    std::fs::write(&empty, "").expect("written");
    assert_eq!(replay(brokers, topic, &[&empty]), 0, "topic created");
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = config(dir, brokers, &[("app", topic)], group, "", port_a);
    let config_b = config_a.with_file_name("b.toml");
    let text = std::fs::read_to_string(&config_a).expect("config");
    std::fs::write(
        &config_b,
        text.replace(&format!(":{port_a}\""), &format!(":{port_b}\"")),
    )
    .expect("written");
    (
        Seclake::start(&config_a, port_a, &[]),
        Seclake::start(&config_b, port_b, &[]),
    )
}

#[test]
fn two_pipelines_split_the_partitions_and_a_stopped_ones_move_without_loss() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("pair"), cleanup.group("pair-group"));
    let (a, b) = two_pipelines(dir.path(), &brokers, &topic, &group);
    let split = wait_for(Duration::from_secs(60), || {
        let (na, nb) = (assigned(&a, &topic), assigned(&b, &topic));
        na > 0.0 && nb > 0.0 && na + nb == f64::from(PARTITIONS)
    });
    assert!(split, "the two pipelines never split the partitions");

    let input = dir.path().join("app.ndjson");
    let expected = write_app_lines(&input, &topic, 0..300_000);
    let mut replaying = replay_start(&brokers, &topic, &[&input], Some("60k/s"));
    assert!(
        b.metric_reaches(
            "seclake_records_total{format=\"app\"}",
            1.0,
            Duration::from_secs(60)
        ),
        "the second pipeline never processed a record"
    );
    let b_summary = b.terminate();
    assert!(b_summary["formats"]["app"]["records"].as_u64() > Some(0));
    assert!(
        wait_for(Duration::from_secs(60), || assigned(&a, &topic)
            == f64::from(PARTITIONS)),
        "the partitions never moved to the first pipeline"
    );
    assert!(replaying.wait().expect("replay exits").success());
    wait_committed(&brokers, &group, &topic);
    for series in [
        format!("seclake_kafka_consumer_lag{{topic=\"{topic}\",partition=\"0\"}}"),
        format!("seclake_kafka_records_total{{topic=\"{topic}\"}}"),
        format!("seclake_kafka_batch_records{{topic=\"{topic}\",quantile="),
        format!("seclake_kafka_commit_latency_seconds{{topic=\"{topic}\",quantile="),
        format!("seclake_kafka_rebalances_total{{topic=\"{topic}\",kind=\"assign\"}}"),
        format!("seclake_kafka_paused_partitions{{topic=\"{topic}\"}}"),
    ] {
        // Lag comes with librdkafka's statistics, every 5 seconds.
        let shown = wait_for(Duration::from_secs(30), || {
            a.metrics().is_some_and(|m| m.contains(&series))
        });
        assert!(shown, "/metrics lacks {series}");
    }
    let a_summary = a.terminate();
    assert!(a_summary["formats"]["app"]["records"].as_u64() > Some(0));

    let (rows, ids) = lake_ids(dir.path());
    assert_eq!(
        ids, expected,
        "every record, from one pipeline or the other"
    );
    let read = a_summary["formats"]["app"]["records"].as_u64().unwrap_or(0)
        + b_summary["formats"]["app"]["records"].as_u64().unwrap_or(0);
    assert_eq!(rows, read, "what each read reached the lake");
}

#[test]
fn poison_records_go_to_the_dead_letters_with_their_kafka_position() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = seclake_fixtures::generate(&seclake_fixtures::GenConfig {
        date: chrono::NaiveDate::from_ymd_opt(2026, 11, 29).expect("date"),
        scale: 0.05,
        seed: 11,
        out: dir.path().join("logs"),
        gzip: false,
    })
    .expect("generated");
    let mut topics = Vec::new();
    for file in &generated.files {
        let topic = cleanup.topic(&format!("poison-{}", file.format));
        let sent = replay(&brokers, &topic, &[&file.path]);
        assert_eq!(sent, file.lines);
        topics.push((file.format, topic));
    }
    // What only Kafka has: an empty record (a tombstone), and one over
    // `max_record_bytes`, keyed.
    let app_topic = topics
        .iter()
        .find(|(f, _)| *f == "app")
        .expect("app")
        .1
        .clone();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("producer");
    producer
        .send(
            BaseRecord::<str, [u8]>::to(&app_topic)
                .key("tombstone")
                .partition(0),
        )
        .map_err(|(e, _)| e)
        .expect("queued");
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(200_000));
    producer
        .send(
            BaseRecord::<str, str>::to(&app_topic)
                .key("huge")
                .payload(&huge)
                .partition(1),
        )
        .map_err(|(e, _)| e)
        .expect("queued");
    producer.flush(Duration::from_secs(30)).expect("delivered");

    let port = free_port();
    let group = cleanup.group("poison-group");
    let pairs: Vec<(&str, &str)> = topics.iter().map(|(f, t)| (*f, t.as_str())).collect();
    let config = config(dir.path(), &brokers, &pairs, &group, "", port);
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "linger_ms = 50\n",
            "linger_ms = 50\nmax_record_bytes = 65536\n",
        ),
    )
    .expect("written");
    let run = Seclake::start(&config, port, &[]);
    let malformed: u64 = generated.files.iter().map(|f| f.malformed).sum::<u64>() + 2;
    assert!(
        run.metric_reaches(
            "seclake_dead_letters_total",
            malformed as f64,
            Duration::from_secs(120)
        ),
        "/metrics never counted the {malformed} dead letters"
    );
    let good: u64 = generated.files.iter().map(|f| f.lines - f.malformed).sum();
    assert!(
        run.metric_reaches(
            "seclake_events_total",
            good as f64,
            Duration::from_secs(120)
        ),
        "the consumer did not go on past the poison records"
    );
    let summary = run.terminate();

    let letters = dead_letter_lines(dir.path());
    for file in &generated.files {
        let extra = if file.format == "app" { 2 } else { 0 };
        let dead = letters
            .iter()
            .filter(|l| l.source.as_str() == file.format)
            .count() as u64;
        assert_eq!(dead, file.malformed + extra, "{} dead letters", file.format);
        assert_eq!(
            summary["formats"][file.format]["events"].as_u64(),
            Some(file.lines - file.malformed),
            "{}: the consumer went on past every poison record",
            file.format
        );
    }
    assert!(
        generated.file("waf").expect("waf").malformed >= 5,
        "every malformed kind the generator makes"
    );

    // Each letter names topic, partition and offset, and that record holds
    // exactly the letter's raw bytes.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", cleanup.group("poison-check"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut keys = Vec::new();
    for letter in &letters {
        let position = &letter.position;
        assert_eq!(position["kind"], "kafka", "{position}");
        let topic = position["topic"].as_str().expect("topic");
        let partition = position["partition"].as_i64().expect("partition") as i32;
        let offset = position["offset"].as_i64().expect("offset");
        let mut at = TopicPartitionList::new();
        at.add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("offset");
        reader.assign(&at).expect("assigned");
        let message = (0..100)
            .find_map(|_| reader.poll(Duration::from_millis(100)))
            .expect("the record is there")
            .expect("no error");
        assert_eq!(message.offset(), offset);
        let raw = letter.raw_bytes().expect("raw bytes");
        let payload = message.payload().unwrap_or_default();
        if raw.len() == payload.len() {
            assert_eq!(raw, payload, "{position}");
        } else {
            assert_eq!(raw.len(), 65_536, "an over-long record keeps its head");
            assert_eq!(raw, &payload[..raw.len()]);
        }
        keys.extend(position["key"].as_str().map(str::to_owned));
    }
    keys.sort();
    assert_eq!(keys, ["huge", "tombstone"]);
}

/// A broker of the test's own (`scripts/services` with a private home and
/// ports), so restarting it disturbs no other test.
struct PrivateBroker {
    home: tempfile::TempDir,
    port: u16,
    controller: u16,
}

impl PrivateBroker {
    fn start() -> PrivateBroker {
        let broker = PrivateBroker {
            home: tempfile::tempdir().expect("tempdir"),
            port: free_port(),
            controller: free_port(),
        };
        broker.services("up");
        broker
    }

    fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn services(&self, action: &str) {
        if let Err(e) = self.try_services(action) {
            panic!("{e}");
        }
    }

    fn try_services(&self, action: &str) -> Result<(), String> {
        // Cargo sets the variable when it runs the test; the compile-time
        // value is stale when another checkout shares the target directory.
        let root = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let out = Command::new(root.join("scripts/services"))
            .args([action, "kafka"])
            .env("SECLAKE_SERVICES_HOME", self.home.path())
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller.to_string())
            .output()
            .map_err(|e| format!("scripts/services {action} kafka does not run: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "scripts/services {action} kafka failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // No second panic while a failed test unwinds.
        if let Err(e) = self.try_services("down") {
            eprintln!("{e}");
        }
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    // The shared broker must be up: this test's own is installed from the
    // same Maven cache by the same script.
    let Some(_) = brokers() else { return };
    let _serial = serial();
    let broker = PrivateBroker::start();
    let brokers = broker.brokers();
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (unique_name("restart"), unique_name("restart-group"));
    let first = dir.path().join("first.ndjson");
    let second = dir.path().join("second.ndjson");
    let mut expected = write_app_lines(&first, &topic, 0..50_000);
    expected.extend(write_app_lines(&second, &topic, 50_000..100_000));
    assert_eq!(replay(&brokers, &topic, &[&first]), 50_000);

    let port = free_port();
    let config = config(dir.path(), &brokers, &[("app", &topic)], &group, "", port);
    let run = Seclake::start(&config, port, &[]);
    assert!(run.metric_reaches(
        "seclake_records_total{format=\"app\"}",
        50_000.0,
        Duration::from_secs(120)
    ));
    broker.services("down");
    broker.services("up");
    assert_eq!(replay(&brokers, &topic, &[&second]), 50_000);
    assert!(
        run.metric_reaches(
            "seclake_records_total{format=\"app\"}",
            100_000.0,
            Duration::from_secs(180)
        ),
        "the pipeline never read what was sent after the restart"
    );
    wait_committed(&brokers, &group, &topic);
    let summary = run.terminate();
    assert_eq!(summary["undelivered_batches"], 0);
    let (_, ids) = lake_ids(dir.path());
    assert_eq!(ids, expected);
}

/// The `group.instance.id`s `run` joined with (its
/// `seclake_kafka_group_instance` series), sorted.
fn instance_ids(run: &Seclake) -> Vec<String> {
    let Some(metrics) = run.metrics() else {
        return Vec::new();
    };
    let mut ids: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("seclake_kafka_group_instance{"))
        .filter_map(|l| {
            let (_, rest) = l.split_once("instance_id=\"")?;
            Some(rest.split_once('"')?.0.to_owned())
        })
        .collect();
    ids.sort();
    ids
}

/// The sum over `topics` of the partitions `run` has assigned.
fn assigned_all(run: &Seclake, topics: &[String]) -> f64 {
    let Some(metrics) = run.metrics() else {
        return 0.0;
    };
    topics
        .iter()
        .filter_map(|topic| {
            sample(
                &metrics,
                &format!("seclake_kafka_assigned_partitions{{topic=\"{topic}\"}}"),
            )
        })
        .sum()
}

/// Issue 11's case: one pipeline reading three topics, one consumer per
/// topic in one group, killed with SIGKILL mid-stream and restarted at once
/// on the same host, with librdkafka's default session timeout (45 s).
/// Every record reaches the lake and the group commits every partition to
/// its high watermark. How long the restart took to get its partitions back
/// and to catch up is printed, not asserted.
#[test]
fn a_pipeline_killed_mid_stream_and_restarted_at_once_catches_up() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let group = cleanup.group("recover-group");
    let topics: Vec<String> = (0..3)
        .map(|i| cleanup.topic(&format!("recover-{i}")))
        .collect();
    let per_topic = 40_000;
    let mut expected = HashSet::new();
    for topic in &topics {
        let input = dir.path().join(format!("{topic}.ndjson"));
        expected.extend(write_app_lines(&input, topic, 0..per_topic));
        assert_eq!(replay(&brokers, topic, &[&input]), per_topic);
    }
    let total = per_topic * 3;

    let port = free_port();
    let pairs: Vec<(&str, &str)> = topics.iter().map(|t| ("app", t.as_str())).collect();
    let config = config(dir.path(), &brokers, &pairs, &group, "", port);
    // The default session timeout, as deployed: what a dead member costs.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("\"session.timeout.ms\" = 6000\n", "")).expect("written");

    let run = Seclake::start(&config, port, &[]);
    let records = "seclake_records_total{format=\"app\"}";
    assert!(
        run.metric_reaches(records, (total / 4) as f64, Duration::from_secs(120)),
        "the first run never read a quarter of the records"
    );
    let ids_before = instance_ids(&run);
    assert_eq!(
        ids_before.len(),
        topics.len(),
        "one static member per topic"
    );
    let read_at_kill = run
        .metrics()
        .and_then(|m| sample(&m, records))
        .unwrap_or_default();
    run.kill_hard();

    let restarted = Instant::now();
    let run = Seclake::start(&config, port, &[]);
    let every_partition = f64::from(PARTITIONS) * topics.len() as f64;
    assert!(
        wait_for(Duration::from_secs(180), || assigned_all(&run, &topics)
            == every_partition),
        "the restarted pipeline never got every partition back"
    );
    let assigned_after = restarted.elapsed();
    assert_eq!(
        instance_ids(&run),
        ids_before,
        "the restart joined with the killed process's instance ids"
    );
    assert!(
        wait_for(Duration::from_secs(300), || topics
            .iter()
            .all(|t| committed_to_end(&brokers, &group, t))),
        "the restarted pipeline never committed every partition to its end"
    );
    let caught_up_after = restarted.elapsed();
    let summary = run.terminate();
    assert_eq!(summary["undelivered_batches"], 0);
    let (rows, ids) = lake_ids(dir.path());
    assert_eq!(ids, expected, "every record is in the lake");
    eprintln!(
        "restart after kill -9 ({} topics, {read_at_kill} of {total} records read at the kill): \
         partitions assigned {:.1} s after the restart, caught up (committed to the high \
         watermarks) after {:.1} s; lake rows {rows}, {} read twice",
        topics.len(),
        assigned_after.as_secs_f64(),
        caught_up_after.as_secs_f64(),
        rows - ids.len() as u64,
    );
}

/// Two pipelines with the same config on one host, in one group: each
/// consumer is a member of its own, so both get partitions, neither is
/// fenced (a static member is fenced when another joins with its instance
/// id), and together they read everything.
#[test]
fn two_pipelines_on_one_host_in_one_group_both_read_and_neither_is_fenced() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("host"), cleanup.group("host-group"));
    let (mut a, mut b) = two_pipelines(dir.path(), &brokers, &topic, &group);
    let split = wait_for(Duration::from_secs(60), || {
        let (na, nb) = (assigned(&a, &topic), assigned(&b, &topic));
        na > 0.0 && nb > 0.0 && na + nb == f64::from(PARTITIONS)
    });
    assert!(split, "the two pipelines never split the partitions");
    let (ids_a, ids_b) = (instance_ids(&a), instance_ids(&b));
    assert_eq!(
        (ids_a.len(), ids_b.len()),
        (1, 1),
        "both are static members"
    );
    assert_ne!(ids_a, ids_b, "each pipeline has its own instance id");

    let input = dir.path().join("app.ndjson");
    let expected = write_app_lines(&input, &topic, 0..100_000);
    assert_eq!(replay(&brokers, &topic, &[&input]), 100_000);
    wait_committed(&brokers, &group, &topic);
    for (name, run) in [("first", &mut a), ("second", &mut b)] {
        assert!(
            matches!(run.child.try_wait(), Ok(None)),
            "the {name} pipeline exited (fenced?)"
        );
    }
    let (na, nb) = (assigned(&a, &topic), assigned(&b, &topic));
    assert!(
        na > 0.0 && nb > 0.0 && na + nb == f64::from(PARTITIONS),
        "the partitions moved: {na} and {nb}"
    );
    let (sa, sb) = (a.terminate(), b.terminate());
    for (name, summary) in [("first", &sa), ("second", &sb)] {
        assert!(
            summary["formats"]["app"]["records"].as_u64() > Some(0),
            "the {name} pipeline read nothing"
        );
    }
    let (_, ids) = lake_ids(dir.path());
    assert_eq!(
        ids, expected,
        "every record, from one pipeline or the other"
    );
}

/// A plain consumer that joins `group` on `topic` under the static member id
/// `instance_id`, committing nothing: it fences the member that had the id.
fn impostor(brokers: &str, group: &str, topic: &str, instance_id: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("group.instance.id", instance_id)
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribed");
    consumer
}

/// The members the coordinator has in `group` (none once every session expired).
fn group_members(brokers: &str, group: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .ok()?;
    let list = consumer
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .ok()?;
    Some(list.groups().iter().map(|g| g.members().len()).sum())
}

/// Another consumer joining under a pipeline's static member id fences it.
/// That is a deployment error (two pipelines given one `instance_id`), not
/// something to fight over: the pipeline stops and says which key to change.
#[test]
fn another_consumer_with_the_pipelines_instance_id_stops_it_naming_the_key() {
    let Some(brokers) = brokers() else { return };
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("fenced"), cleanup.group("fenced-group"));
    let input = dir.path().join("app.ndjson");
    write_app_lines(&input, &topic, 0..1_000);
    assert_eq!(replay(&brokers, &topic, &[&input]), 1_000);
    let port = free_port();
    let config = config(dir.path(), &brokers, &[("app", &topic)], &group, "", port);
    let mut run = Seclake::start_keeping_stderr(&config, port, &[]);
    assert!(run.metric_reaches(
        "seclake_records_total{format=\"app\"}",
        1_000.0,
        Duration::from_secs(60)
    ));
    let ids = instance_ids(&run);
    assert_eq!(ids.len(), 1, "one static member");

    let other = impostor(&brokers, &group, &topic, &ids[0]);
    let mut exited = false;
    wait_for(Duration::from_secs(60), || {
        let _ = other.poll(Duration::from_millis(100));
        exited = !matches!(run.child.try_wait(), Ok(None));
        exited
    });
    assert!(exited, "the fenced pipeline kept running");
    let stderr = run.wait_failure(Duration::from_secs(30));
    assert!(
        stderr.contains("joined with this one's group.instance.id")
            && stderr.contains("give each pipeline its own `instance_id`"),
        "{stderr}"
    );
}

/// librdkafka fences a static member by its own hand: after its session
/// timed out it rejoins under a new member id, and a commit it had queued
/// under the old one is answered "fenced", a fatal error (librdkafka issue
/// 3437; seen when a broker restarts). The pipeline replaces the consumer
/// and reads on. Here the fence comes from a consumer joining under the same
/// id right after the pipeline regained its partitions, which the pipeline
/// cannot tell from its own: it must take the id back and lose nothing.
#[test]
fn a_fence_right_after_a_lost_session_is_taken_as_our_own_and_the_consumer_rejoins() {
    let Some(brokers) = brokers() else { return };
    let _serial = serial();
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (
        cleanup.topic("self-fence"),
        cleanup.group("self-fence-group"),
    );
    let first = dir.path().join("first.ndjson");
    let second = dir.path().join("second.ndjson");
    let mut expected = write_app_lines(&first, &topic, 0..5_000);
    expected.extend(write_app_lines(&second, &topic, 5_000..10_000));
    assert_eq!(replay(&brokers, &topic, &[&first]), 5_000);
    let port = free_port();
    let config = config(dir.path(), &brokers, &[("app", &topic)], &group, "", port);
    let mut run = Seclake::start(&config, port, &[]);
    let records = "seclake_records_total{format=\"app\"}";
    assert!(run.metric_reaches(records, 5_000.0, Duration::from_secs(60)));
    wait_committed(&brokers, &group, &topic);
    let ids = instance_ids(&run);
    assert_eq!(ids.len(), 1, "one static member");

    // Frozen past its session timeout, the pipeline's member expires at the
    // coordinator; thawed, it finds its assignment lost and rejoins.
    run.signal("-STOP");
    let expired = wait_for(Duration::from_secs(60), || {
        group_members(&brokers, &group) == Some(0)
    });
    run.signal("-CONT");
    assert!(expired, "the frozen member never expired");
    assert!(run.metric_reaches(
        "seclake_kafka_assignments_lost_total",
        1.0,
        Duration::from_secs(60)
    ));
    assert!(
        wait_for(Duration::from_secs(60), || assigned_all(
            &run,
            std::slice::from_ref(&topic)
        ) == f64::from(PARTITIONS)),
        "the pipeline never got its partitions back"
    );

    let other = impostor(&brokers, &group, &topic, &ids[0]);
    let rejoined = wait_for(Duration::from_secs(60), || {
        let _ = other.poll(Duration::from_millis(100));
        run.metrics()
            .and_then(|m| sample(&m, "seclake_kafka_self_fence_rejoins_total"))
            .is_some_and(|n| n >= 1.0)
    });
    drop(other);
    assert!(rejoined, "the pipeline did not replace its fenced consumer");
    assert!(
        matches!(run.child.try_wait(), Ok(None)),
        "the pipeline exited"
    );
    assert_eq!(instance_ids(&run), ids, "it rejoined under the same id");

    assert_eq!(replay(&brokers, &topic, &[&second]), 5_000);
    wait_committed(&brokers, &group, &topic);
    let summary = run.terminate();
    assert_eq!(summary["undelivered_batches"], 0);
    let (_, lake) = lake_ids(dir.path());
    assert_eq!(lake, expected);
}
