//! Alerts to a Slack webhook played by a local server: 429s and 5xx are
//! retried (a 429 after its Retry-After) and the alert arrives once; alerts
//! queued together share a message; a 400 is final; a full queue drops
//! and counts.

use std::time::Duration;

use seclake_enrich::threat::ThreatLevel;
use seclake_sink::alert::{Alert, AlertOutputs, Alerter, Output, SlackOutput};

#[path = "support/slack_hook.rs"]
mod slack_hook;
use slack_hook::{Answer, Hook, alerts, event_id, sections};

fn outputs(hook: &Hook) -> AlertOutputs {
    AlertOutputs {
        slack: Some(SlackOutput {
            webhook_url: hook.url.clone(),
        }),
        sns: None,
    }
}

fn alert(i: usize) -> Alert {
    Alert {
        alert_rule: "falco-critical".into(),
        title: "Drop and execute new binary in container".into(),
        source: "falco".into(),
        severity: Some("critical".into()),
        event_id: Some(format!("{i:032x}")),
        hostname: Some(format!("node-{i}")),
        client_ip: Some("203.0.113.9".into()),
        score: 85,
        level: ThreatLevel::Critical,
        reasons: vec!["falco.priority.critical +60".into()],
        event_ms: 1_795_910_400_000,
        ..Alert::default()
    }
}

fn answer(status: u16, retry_after: Option<u64>) -> Answer {
    Answer {
        status,
        retry_after,
        body: "busy",
    }
}

#[tokio::test]
async fn a_429_and_a_500_are_retried_and_the_alert_arrives_once() {
    let hook = Hook::start(&[answer(429, Some(1)), answer(500, None)]);
    let alerter = Alerter::start(&outputs(&hook)).expect("alerter");
    alerter.send(alert(7), &[Output::Slack]);
    let stats = alerter.close().await;
    assert_eq!((stats.sent, stats.failed, stats.messages), (1, 0, 1));

    let requests = hook.requests();
    let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 500, 200]);
    assert!(
        requests[1].at - requests[0].at >= Duration::from_secs(1),
        "the retry came before Retry-After: 1 had passed"
    );
    assert!(
        requests.iter().all(|r| r.body == requests[0].body),
        "every attempt is the same message"
    );
    let delivered = hook.delivered();
    assert_eq!(delivered.len(), 1);
    let shown = sections(&delivered[0]);
    assert_eq!(shown.len(), 1);
    assert_eq!(event_id(&shown[0]), Some(format!("{:032x}", 7)));
}

#[tokio::test]
async fn alerts_queued_together_share_a_message() {
    let hook = Hook::start(&[]);
    let alerter = Alerter::start(&outputs(&hook)).expect("alerter");
    for i in 0..50 {
        alerter.send(alert(i), &[Output::Slack]);
    }
    let stats = alerter.close().await;
    assert_eq!((stats.sent, stats.failed), (50, 0));

    let delivered = hook.delivered();
    assert!(
        delivered.len() < 5,
        "{} messages for 50 alerts",
        delivered.len()
    );
    assert_eq!(delivered.iter().map(alerts).sum::<u64>(), 50);
    assert!(delivered.iter().all(|m| sections(m).len() <= 20));
    assert_eq!(stats.messages, delivered.len() as u64);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let hook = Hook::start(&[Answer {
        status: 400,
        retry_after: None,
        body: "invalid_blocks",
    }]);
    let alerter = Alerter::start(&outputs(&hook)).expect("alerter");
    alerter.send(alert(1), &[Output::Slack]);
    let stats = alerter.close().await;
    assert_eq!((stats.sent, stats.failed), (0, 1));
    assert_eq!(hook.requests().len(), 1);
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_what_did_not_fit() {
    let hook = Hook::start(&[]);
    let alerter = Alerter::start(&outputs(&hook)).expect("alerter");
    // On this test's single thread the delivery task cannot run before the
    // first await, so every alert below is queued at once.
    for i in 0..10_003 {
        alerter.send(alert(i), &[Output::Slack]);
    }
    let stats = alerter.close().await;
    assert_eq!(stats.dropped, 3);
    assert_eq!((stats.sent, stats.failed), (10_000, 0));
    assert_eq!(hook.delivered().iter().map(alerts).sum::<u64>(), 10_000);
}
