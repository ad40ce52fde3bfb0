//! Alerts to an SNS topic on moto, read back through an HTTP subscription
//! (moto posts each notification to it while the Publish is answered):
//! people get the text, programs the JSON, and a batch too large for one
//! message is cut to SNS's 256 KiB with the rest counted.

use std::sync::{Arc, Mutex};

use seclake_enrich::threat::ThreatLevel;
use seclake_fixtures::services::{moto_with_credentials, unique_name};
use seclake_sink::alert::{Alert, AlertOutputs, Alerter, Output, SnsOutput};
use serde_json::Value;

const REGION: &str = "ap-northeast-2";

fn client(endpoint: &str) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::Config::builder()
            .behavior_version(aws_sdk_sns::config::BehaviorVersion::latest())
            .region(aws_sdk_sns::config::Region::new(REGION))
            .credentials_provider(aws_sdk_sns::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    )
}

/// A topic made for one test with an HTTP subscriber keeping every
/// notification; the topic is deleted by [`Topic::delete`].
struct Topic {
    client: aws_sdk_sns::Client,
    arn: String,
    received: Arc<Mutex<Vec<Value>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Topic {
    async fn create(endpoint: &str) -> Topic {
        let client = client(endpoint);
        let arn = client
            .create_topic()
            .name(unique_name("seclake-test-alerts"))
            .send()
            .await
            .expect("CreateTopic on moto")
            .topic_arn
            .expect("an ARN");
        let received = Arc::new(Mutex::new(Vec::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let kept = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/sns",
            axum::routing::post(move |body: String| {
                let kept = Arc::clone(&kept);
                async move {
                    let body: Value = serde_json::from_str(&body).expect("a JSON notification");
                    kept.lock().expect("received").push(body);
                    "ok"
                }
            }),
        );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        client
            .subscribe()
            .topic_arn(&arn)
            .protocol("http")
            .endpoint(format!("http://127.0.0.1:{port}/sns"))
            .send()
            .await
            .expect("Subscribe on moto");
        Topic {
            client,
            arn,
            received,
            server,
        }
    }

    fn outputs(&self, endpoint: &str) -> AlertOutputs {
        AlertOutputs {
            slack: None,
            sns: Some(SnsOutput {
                topic_arn: self.arn.clone(),
                region: None,
                endpoint: Some(endpoint.to_owned()),
            }),
        }
    }

    /// Every notification so far: `Subject` and `Message` (the HTTP form,
    /// i.e. the JSON one).
    fn notifications(&self) -> Vec<(String, Value)> {
        self.received
            .lock()
            .expect("received")
            .iter()
            .map(|n| {
                let message = n["Message"].as_str().expect("a Message");
                (
                    n["Subject"].as_str().unwrap_or_default().to_owned(),
                    serde_json::from_str(message).expect("the JSON form"),
                )
            })
            .collect()
    }

    async fn delete(self) {
        self.server.abort();
        self.client
            .delete_topic()
            .topic_arn(&self.arn)
            .send()
            .await
            .expect("DeleteTopic");
    }
}

fn alert(i: usize, text: &str) -> Alert {
    Alert {
        alert_rule: "waf-critical".into(),
        title: "WAF BLOCK: AWS-AWSManagedRulesSQLiRuleSet".into(),
        source: "waf".into(),
        action: Some("BLOCK".into()),
        event_id: Some(format!("{i:032x}")),
        client_ip: Some(format!("198.51.100.{}", i % 250)),
        country_iso: Some("KR".into()),
        asn: Some(4766),
        as_org: Some("Korea Telecom".into()),
        score: 95,
        level: ThreatLevel::Critical,
        reasons: vec!["waf.group.sqli +25".into()],
        text: Some(text.to_owned()),
        event_ms: 1_795_910_400_000,
        ..Alert::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_published_with_their_facts_as_json() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let topic = Topic::create(&endpoint).await;
    let alerter = Alerter::start(&topic.outputs(&endpoint)).expect("alerter");
    for i in 0..3 {
        alerter.send(alert(i, "GET shop.example.com/login → 403"), &[Output::Sns]);
    }
    let stats = alerter.close().await;
    assert_eq!((stats.sent, stats.failed), (3, 0));

    let notifications = topic.notifications();
    assert_eq!(notifications.len() as u64, stats.messages);
    let mut ips = Vec::new();
    for (subject, data) in &notifications {
        assert!(subject.starts_with("seclake: "), "{subject}");
        assert!(subject.len() <= 100 && subject.is_ascii(), "{subject}");
        assert_eq!(data["more"], 0);
        for alert in data["alerts"].as_array().expect("alerts") {
            assert_eq!(alert["asn"], 4766);
            assert_eq!(alert["level"], "critical");
            assert_eq!(alert["reasons"][0], "waf.group.sqli +25");
            ips.push(alert["client_ip"].as_str().expect("an ip").to_owned());
        }
    }
    ips.sort();
    assert_eq!(ips, ["198.51.100.0", "198.51.100.1", "198.51.100.2"]);
    topic.delete().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_for_one_message_is_cut_and_counted() {
    let Some(endpoint) = moto_with_credentials() else {
        return;
    };
    let topic = Topic::create(&endpoint).await;
    let alerter = Alerter::start(&topic.outputs(&endpoint)).expect("alerter");
    let long = "x".repeat(1000);
    for i in 0..1000 {
        alerter.send(alert(i, &long), &[Output::Sns]);
    }
    let stats = alerter.close().await;
    assert_eq!((stats.sent, stats.failed), (1000, 0));

    let notifications = topic.notifications();
    let mut accounted = 0;
    for (_, data) in &notifications {
        let shown = data["alerts"].as_array().expect("alerts").len() as u64;
        let more = data["more"].as_u64().expect("more");
        assert!(shown > 0);
        accounted += shown + more;
    }
    assert_eq!(accounted, 1000);
    assert!(
        notifications
            .iter()
            .any(|(_, d)| d["more"].as_u64() > Some(0)),
        "1000 long alerts fit in one message"
    );
    topic.delete().await;
}
