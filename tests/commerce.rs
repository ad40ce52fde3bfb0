//! The commerce API end to end: requests to the order API (run in-process)
//! → its access log on a Kafka topic → `seclake run --until-caught-up` →
//! the lake → `report run` for the day of the requests, whose app section
//! must show every request once, the client and server errors, and the
//! orders created with their revenue (idempotent replays not counted again).
//!
//! Needs the broker `scripts/services up kafka` starts on 127.0.0.1:9092
//! (`SECLAKE_KAFKA_BROKERS` to point elsewhere).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use common::kafka::Cleanup;
use common::{Seclake, dead_letter_lines, free_port};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use serde_json::{Value, json};

const REPORT: &str = env!("CARGO_BIN_EXE_report");

/// The access-log topic's partitions: more than one, so the pipeline reads
/// several (some may stay empty) to their ends.
const PARTITIONS: i32 = 3;

/// The seed catalog's prices (commerce-api's first migration).
const PROD001: i64 = 2_690_000;
const PROD002: i64 = 1_976_800;

fn brokers() -> Option<String> {
    seclake_fixtures::services::service("kafka", "SECLAKE_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// Creates `topic` (the broker does not create topics on first use).
fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &options,
        ))
        .expect("create_topics answered");
    for result in results {
        if let Err((name, code)) = result {
            panic!("topic {name} not created: {code}");
        }
    }
}

/// What the test sent and what the report must therefore show.
#[derive(Debug, Default)]
struct Sent {
    requests: u64,
    client_errors: u64,
    server_errors: u64,
    orders: u64,
    revenue_krw: i64,
    /// Requests and server errors per route template.
    routes: BTreeMap<&'static str, (u64, u64)>,
}

/// A client of the API: each request must get the status it expects, and
/// is counted in `sent`.
struct Api {
    client: reqwest::Client,
    base: String,
    sent: Sent,
}

impl Api {
    async fn call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        route: &'static str,
        body: Option<Vec<u8>>,
        expected: u16,
    ) -> Value {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        assert_eq!(
            status, expected,
            "{method} {path} answered {status}: {text}"
        );
        self.sent.requests += 1;
        match status {
            400..500 => self.sent.client_errors += 1,
            500.. => self.sent.server_errors += 1,
            _ => {}
        }
        let per_route = self.sent.routes.entry(route).or_default();
        per_route.0 += 1;
        per_route.1 += u64::from(status >= 500);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn order(&mut self, body: &Value, expected: u16) -> Value {
        let body = serde_json::to_vec(body).expect("json");
        self.order_raw(body, expected).await
    }

    async fn order_raw(&mut self, body: Vec<u8>, expected: u16) -> Value {
        let method = reqwest::Method::POST;
        let route = "/api/v1/orders";
        self.call(method, route, route, Some(body), expected).await
    }

    async fn get(&mut self, path: &str, route: &'static str, expected: u16) -> Value {
        self.call(reqwest::Method::GET, path, route, None, expected)
            .await
    }
}

/// The requests: 25 orders created (201), 3 replays of them (200), 2
/// idempotency conflicts (409), 4 invalid bodies (400), an unknown product
/// and a wrong price (422), an order whose commit fails (500) and 4 reads
/// (200): 41 requests, 8 client errors, 1 server error.
async fn requests(addr: SocketAddr, db: &Path) -> Sent {
    let mut api = Api {
        client: reqwest::Client::new(),
        base: format!("http://{addr}"),
        sent: Sent::default(),
    };
    let mut created = Vec::new();
    for i in 0..25_i64 {
        let mut items =
            vec![json!({"product_id": "PROD001", "quantity": 1 + i % 3, "price": PROD001})];
        let mut total = (1 + i % 3) * PROD001;
        if i % 2 == 0 {
            items.push(json!({"product_id": "PROD002", "quantity": 1 + i % 4, "price": PROD002}));
            total += (1 + i % 4) * PROD002;
        }
        let body = json!({"user_id": format!("u{}", i % 5), "items": items, "idempotency_key": format!("k{i}")});
        let order = api.order(&body, 201).await;
        assert_eq!(order["total_krw"], total, "order {i}: {order}");
        api.sent.orders += 1;
        api.sent.revenue_krw += total;
        created.push((body, order));
    }
    // The same request again answers the first order: no new revenue.
    for (body, order) in &created[..3] {
        let replay = api.order(body, 200).await;
        assert_eq!(
            replay["id"], order["id"],
            "a replay answers the first order"
        );
    }
    // The same key with another body.
    for (body, _) in &created[3..5] {
        let mut other = body.clone();
        other["items"][0]["quantity"] = json!(9);
        api.order(&other, 409).await;
    }
    let invalid = [
        br#"{"user_id":"u1","items":[{"product_id":"PROD001","quantity":1,"price":2690000}"#
            .to_vec(),
        br#"{"user_id":"u1","items":[]}"#.to_vec(),
        br#"{"user_id":"u1","items":[{"product_id":"PROD001","quantity":0,"price":2690000}]}"#
            .to_vec(),
        br#"{"items":[{"product_id":"PROD001","quantity":1,"price":2690000}]}"#.to_vec(),
    ];
    for body in invalid {
        api.order_raw(body, 400).await;
    }
    let unknown =
        json!({"user_id": "u1", "items": [{"product_id": "NOPE", "quantity": 1, "price": 1000}]});
    api.order(&unknown, 422).await;
    let wrong_price = json!({"user_id": "u1", "items": [{"product_id": "PROD002", "quantity": 1, "price": PROD002 - 1}]});
    api.order(&wrong_price, 422).await;

    // Another process holds the database's write lock past the API's busy
    // timeout: the commit fails and the order is answered 500.
    let blocker = rusqlite::Connection::open(db).expect("open the API's database");
    blocker
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("take the write lock");
    let failed = json!({"user_id": "u1", "items": [{"product_id": "PROD001", "quantity": 1, "price": PROD001}], "idempotency_key": "k-failed"});
    api.order(&failed, 500).await;
    blocker.execute_batch("ROLLBACK").expect("release the lock");
    drop(blocker);

    for (_, order) in &created[..2] {
        let id = order["id"].as_str().expect("order id");
        let read = api
            .get(&format!("/api/v1/orders/{id}"), "/api/v1/orders/{id}", 200)
            .await;
        assert_eq!(read["total_krw"], order["total_krw"]);
    }
    api.get("/api/v1/products", "/api/v1/products", 200).await;
    api.get("/api/v1/users/u0/orders", "/api/v1/users/{id}/orders", 200)
        .await;
    api.sent
}

/// Runs the API on a free port with its access log going to `topic`, makes
/// the requests, and stops it; every line must have reached Kafka.
async fn run_api(brokers: &str, topic: &str, dir: &Path) -> Sent {
    let db = dir.join("orders.db");
    let mut config = commerce_api::Config {
        db: db.clone(),
        shutdown_timeout: Duration::from_secs(10),
        ..commerce_api::Config::default()
    };
    config.kafka.brokers = Some(brokers.to_owned());
    config.kafka.topic = topic.to_owned();
    config.access_log.stdout = false;
    config.storage.busy_timeout = Duration::from_millis(50);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(commerce_api::serve(config, listener, async {
        let _ = stop_rx.await;
    }));
    let sent = requests(addr, &db).await;
    let _ = stop_tx.send(());
    let stopped = server
        .await
        .expect("the server task ends")
        .expect("the server stops cleanly");
    assert!(!stopped.cut_off, "no request was in flight: {stopped:?}");
    assert_eq!(
        stopped.undelivered_lines, 0,
        "every access-log line reached Kafka: {stopped:?}"
    );
    sent
}

/// The pipeline's config: the topic in the app format, into `dir/lake`.
fn config(dir: &Path, brokers: &str, topic: &str, group: &str, port: u16) -> std::path::PathBuf {
    let d = dir.display();
    let text = format!(
        "[[source]]\ntype = \"kafka\"\nformat = \"app\"\nbrokers = \"{brokers}\"\n\
         topic = \"{topic}\"\ngroup = \"{group}\"\nlinger_ms = 50\n\
         [source.kafka_options]\n\"session.timeout.ms\" = 6000\n\n\
         [lake]\nurl = \"file://{d}/lake\"\n\n\
         [dlq]\nurl = \"file://{d}/dlq\"\n\n{}",
        Seclake::metrics_section(port)
    );
    let path = dir.join("seclake.toml");
    std::fs::write(&path, text).expect("config written");
    path
}

/// `report run --date DATE` over `dir/lake`: its JSON.
fn report(dir: &Path, date: NaiveDate) -> Value {
    let out = dir.join(format!("report-{date}"));
    let run = Command::new(REPORT)
        .args([
            "run",
            "--date",
            &date.to_string(),
            "--quiet",
            "--format",
            "json",
        ])
        .arg("--lake")
        .arg(dir.join("lake"))
        .arg("--out")
        .arg(&out)
        .env_remove("SECLAKE_S3_ENDPOINT")
        .output()
        .expect("report runs");
    assert!(
        run.status.success(),
        "report run --date {date} failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let path = out.join(format!("security-report-{date}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("report json written")).expect("json")
}

#[test]
fn api_requests_reach_the_daily_report_through_kafka() {
    let Some(brokers) = brokers() else { return };
    let mut cleanup = Cleanup::new(&brokers);
    let dir = tempfile::tempdir().expect("tempdir");
    let (topic, group) = (cleanup.topic("commerce"), cleanup.group("commerce-group"));
    create_topic(&brokers, &topic);

    // The access log's `ts` is the time each request finished, in UTC: the
    // report day is the date before the first and after the last request
    // (two days only if they straddle midnight; their reports add up).
    let first_day = Utc::now().date_naive();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sent = rt.block_on(run_api(&brokers, &topic, dir.path()));
    drop(rt);
    let last_day = Utc::now().date_naive();
    assert_eq!(sent.requests, 41);
    assert_eq!(sent.client_errors, 8);
    assert_eq!(sent.server_errors, 1);

    let port = free_port();
    let config = config(dir.path(), &brokers, &topic, &group, port);
    let summary = Seclake::start(&config, port, &["--until-caught-up"])
        .wait_success(Duration::from_secs(300));
    let dead = dead_letter_lines(dir.path());
    assert!(dead.is_empty(), "access-log lines dead-lettered: {dead:?}");
    // At least once: a redelivered line is read again (and stored under the
    // same event id), so only a lower bound holds.
    let records = summary["formats"]["app"]["records"].as_u64().unwrap_or(0);
    assert!(
        records >= sent.requests,
        "the pipeline read {records} app records of {} requests: {summary}",
        sent.requests
    );

    let mut days = vec![first_day];
    if last_day != first_day {
        days.push(last_day);
    }
    let mut app = Sent::default();
    let mut routes: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for day in days {
        let report = report(dir.path(), day);
        assert_eq!(report["date"], day.to_string());
        let section = &report["app"];
        let count = |key: &str| {
            section[key]
                .as_u64()
                .unwrap_or_else(|| panic!("app.{key} in the report: {section}"))
        };
        let (requests, server_errors) = (count("requests"), count("server_errors"));
        // The report's error rate: the server errors' share of requests.
        let error_rate = section["error_rate_pct"]
            .as_f64()
            .expect("app.error_rate_pct");
        let expected_rate = if requests == 0 {
            0.0
        } else {
            server_errors as f64 * 100.0 / requests as f64
        };
        assert!(
            (error_rate - expected_rate).abs() < 1e-9,
            "error rate {error_rate}% of {day}: {server_errors} server errors in {requests} requests"
        );
        app.requests += requests;
        app.client_errors += count("client_errors");
        app.server_errors += server_errors;
        app.orders += count("orders");
        app.revenue_krw += section["revenue_krw"]
            .as_i64()
            .unwrap_or_else(|| panic!("app.revenue_krw in the report: {section}"));
        for route in section["routes"].as_array().expect("app.routes") {
            let entry = routes
                .entry(route["route"].as_str().expect("route").to_owned())
                .or_default();
            entry.0 += route["requests"].as_u64().expect("route requests");
            entry.1 += route["server_errors"].as_u64().expect("route errors");
        }
    }
    assert_eq!(app.requests, sent.requests, "requests, each once");
    assert_eq!(app.client_errors, sent.client_errors, "client errors (4xx)");
    assert_eq!(app.server_errors, sent.server_errors, "server errors (5xx)");
    assert_eq!(
        app.orders, sent.orders,
        "orders created, replays not counted"
    );
    assert_eq!(
        app.revenue_krw, sent.revenue_krw,
        "revenue of the orders created"
    );
    let expected: BTreeMap<String, (u64, u64)> = sent
        .routes
        .iter()
        .map(|(route, counts)| ((*route).to_owned(), *counts))
        .collect();
    assert_eq!(routes, expected, "requests and server errors per route");
}
