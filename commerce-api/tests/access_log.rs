//! The access log: its lines on Kafka and stdout, what they hold and leave
//! out, and the dropped-lines counter when an output cannot keep up.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use support::{Api, seed_order};

const CARD: &str = "4111111111111111";

fn brokers() -> Option<String> {
    seclake_fixtures::services::service("kafka", "SECLAKE_KAFKA_BROKERS", "127.0.0.1:9092")
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap()
}

/// Every message on `topic`, read from the start until `want` arrived.
fn read_topic(brokers: &str, topic: &str, want: usize) -> Vec<Value> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut lines = Vec::new();
    while lines.len() < want && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message.unwrap();
            lines.push(serde_json::from_slice(message.payload().unwrap()).unwrap());
        }
    }
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_reach_kafka_in_the_app_schema_without_secrets() {
    let Some(brokers) = brokers() else { return };
    let topic = seclake_fixtures::services::unique_name("commerce-access-log");
    let admin = admin(&brokers);
    admin
        .create_topics(
            &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let api = Api::start(|c| {
        c.kafka.brokers = Some(brokers.clone());
        c.kafka.topic = topic.clone();
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let created: Value = api
        .client
        .post(api.url("/api/v1/orders"))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "req-created")
        .header("user-agent", "checkout/2.1")
        .json(&seed_order("u-log", 2, "log-key-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut with_card = seed_order("u-log", 1, "log-key-2");
    with_card["card_number"] = json!(CARD);
    let (status, _) = api.order(&with_card).await;
    assert_eq!(status, 400);
    let order_id = created["id"].as_str().unwrap();
    let (status, _) = api.get(&format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(status, 200);
    let stopped = api.stop().await;
    assert_eq!(stopped.undelivered_lines, 0);

    let lines = read_topic(&brokers, &topic, 3);
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    let _ = admin
        .delete_groups(&[&format!("{topic}-reader")], &AdminOptions::new())
        .await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let text = serde_json::to_string(&lines).unwrap();
    assert!(
        !text.contains(CARD),
        "a card number reached the log: {text}"
    );
    assert!(
        !text.contains("product_id"),
        "request bodies stay out of the log: {text}"
    );

    let placed = &lines[0];
    assert_eq!(placed["status"], 201);
    assert_eq!(placed["method"], "POST");
    assert_eq!(placed["route"], "/api/v1/orders");
    assert_eq!(placed["service"], "commerce-api");
    assert_eq!(placed["level"], "info");
    assert_eq!(placed["client_ip"], "203.0.113.7");
    assert_eq!(placed["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(placed["request_id"], "req-created");
    assert_eq!(placed["user_agent"], "checkout/2.1");
    assert_eq!(placed["user_id"], "u-log");
    assert_eq!(placed["idempotency_key"], "log-key-1");
    assert_eq!(placed["order_id"], order_id);
    assert_eq!(placed["amount_krw"], 2 * 2_690_000);
    assert!(placed["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
    assert!(placed["bytes"].as_u64().is_some_and(|b| b > 0));
    let ts = placed["ts"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");

    let refused = &lines[1];
    assert_eq!(refused["status"], 400);
    assert_eq!(refused["level"], "warn");
    assert_eq!(
        refused["client_ip"], "127.0.0.1",
        "no X-Forwarded-For: the peer"
    );
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("card_number:")
    );
    assert_eq!(refused["trace_id"].as_str().unwrap().len(), 32);

    let read = &lines[2];
    assert_eq!(read["route"], "/api/v1/orders/{id}");
    assert_eq!(read["order_id"], order_id);
    assert!(
        read.get("amount_krw").is_none(),
        "only creations carry revenue"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_kafka_queue_drops_and_counts_lines_without_blocking_requests() {
    let metric = "commerce_access_log_dropped_total{output=\"kafka\",reason=\"full\"}";
    // Nothing listens on port 1: librdkafka keeps lines queued, and its
    // queue holds one.
    let api = Api::start(|c| {
        c.kafka.brokers = Some("127.0.0.1:1".into());
        c.kafka.queue = 1;
        c.shutdown_timeout = Duration::from_millis(200);
    })
    .await;
    for i in 0..20 {
        let (status, _) = api
            .order(&seed_order("u-drop", 1, &format!("drop-{i}")))
            .await;
        assert_eq!(status, 201);
    }
    let metrics = api.metrics().await;
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(metric))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {metric} in:\n{metrics}"));
    assert!(dropped >= 19.0, "{dropped} dropped");
    let stopped = api.stop().await;
    assert!(stopped.undelivered_lines >= 1);
}

#[test]
fn stdout_gets_one_line_per_request_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, drain) =
        support::spawn_binary(&dir.path().join("orders.db"), Stdio::piped(), &[]);
    let client = reqwest::blocking::Client::new();
    for i in 0..3 {
        let status = client
            .post(format!("http://{addr}/api/v1/orders"))
            .json(&seed_order("u-out", 1, &format!("out-{i}")))
            .send()
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 201);
    }
    let status = client
        .get(format!("http://{addr}/nope"))
        .send()
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 404);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let out = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map(|l| serde_json::from_str::<Value>(&l.unwrap()).unwrap())
        .collect::<Vec<_>>();
    assert!(child.wait().unwrap().success(), "a clean exit on SIGTERM");
    let stderr = drain.join().unwrap().join("\n");
    assert_eq!(out.len(), 4, "{out:?}\n{stderr}");
    assert!(
        out[..3]
            .iter()
            .all(|l| l["status"] == 201 && l["amount_krw"] == 2_690_000)
    );
    assert_eq!(out[3]["status"], 404);
    assert!(
        out[3].get("route").is_none(),
        "an unmatched path has no route"
    );
    assert!(stderr.contains("shutting down"), "{stderr}");
}
