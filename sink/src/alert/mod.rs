//! Alerts: events and the response's decisions, routed by `[[alert]]` rules
//! to Slack and SNS.
//!
//! [`AlertSinkConfig`] is `[alerts]` (the outputs) with every `[[alert]]`
//! rule; [`AlertRules`] decides which events match which rule, with each
//! rule's rate limit and de-duplication window, and makes an [`Alert`] of
//! each; an [`Alerter`] hands alerts to one delivery task per output, which
//! batches what is queued into one message and retries Slack's 429s and
//! 5xx. [`AlertSink`] runs them in the pipeline, outside acknowledgement;
//! [`ResponseAlerts`] is the same for the response's decisions.

mod alerter;
mod config;
mod message;
mod rules;
mod sink;
mod slack;
mod sns;

use std::sync::{Mutex, PoisonError};

pub use alerter::{AlertStats, Alerter};
pub use config::{
    AlertOutputs, AlertRule, AlertSinkConfig, DECISIONS, Output, SlackOutput, SnsOutput,
    webhook_url,
};
pub use rules::{AlertRules, Routed};
use seclake_enrich::threat::ThreatLevel;
pub use sink::AlertSink;

use crate::SinkError;

/// One alert: what happened, to whom, from where, and how bad.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alert {
    /// The `[[alert]]` rule that sent it; set by routing.
    pub alert_rule: String,
    /// One line saying what happened (a Falco rule, `WAF BLOCK: <rule>`,
    /// `blocked 203.0.113.7`).
    pub title: String,
    /// `waf`, `falco`, `app` or `response`.
    pub source: String,
    /// The event's `severity` (Falco priority, app log level), lowercase.
    pub severity: Option<String>,
    /// The event's `rule`: the Falco rule, the WAF terminating rule, the
    /// response's trigger.
    pub rule: Option<String>,
    /// The event's `action`: the WAF action, the response's decision.
    pub action: Option<String>,
    /// The event's id, to find it in the lake.
    pub event_id: Option<String>,
    /// The client address.
    pub client_ip: Option<String>,
    /// The host that raised it (Falco).
    pub hostname: Option<String>,
    /// GeoIP country code.
    pub country_iso: Option<String>,
    /// GeoIP country name.
    pub country_name: Option<String>,
    /// GeoIP autonomous system number.
    pub asn: Option<i64>,
    /// GeoIP autonomous system organisation.
    pub as_org: Option<String>,
    /// Threat score, 0–100.
    pub score: i32,
    /// Threat level.
    pub level: ThreatLevel,
    /// Why the score is what it is (`rule +points`).
    pub reasons: Vec<String>,
    /// When a block ends (ms since the epoch), for the response's blocks.
    pub expiry_ms: Option<i64>,
    /// The event's own words: Falco's output, the app's message or error,
    /// the request line.
    pub text: Option<String>,
    /// When it happened (ms since the epoch).
    pub event_ms: i64,
    /// Repeats of this alert the rule's `dedup_window` held back since it
    /// was last sent; set by routing.
    pub repeats: u64,
    /// Alerts of this rule its `rate_limit` dropped since it last sent one;
    /// set by routing.
    pub rate_limited: u64,
}

/// The alerts of the response's decisions: the `format = "response"` rules
/// and an [`Alerter`] of their own.
///
/// The response sink builds it with [`response_alerter`] when it opens,
/// calls [`ResponseAlerts::decision`] for every decision it makes (never
/// blocks: the alert is queued), and [`ResponseAlerts::close`] when it
/// closes.
pub struct ResponseAlerts {
    rules: Mutex<AlertRules>,
    alerter: Alerter,
}

/// The response's alerts, when any `[[alert]]` rule has `format =
/// "response"`; `None` otherwise. Starts the delivery tasks on the current
/// tokio runtime (an error outside one).
pub fn response_alerter(
    outputs: &AlertOutputs,
    rules: &[AlertRule],
) -> Result<Option<ResponseAlerts>, SinkError> {
    let config = AlertSinkConfig {
        outputs: outputs.clone(),
        rules: rules.to_vec(),
    };
    let rules = AlertRules::new(&config)?;
    if !rules.routes_decisions() {
        return Ok(None);
    }
    Ok(Some(ResponseAlerts {
        rules: Mutex::new(rules),
        alerter: Alerter::start(outputs)?,
    }))
}

impl ResponseAlerts {
    /// Routes one decision: `action` is its name (one of [`DECISIONS`],
    /// e.g. `blocked`), `alert` says who and why (title, client_ip, score,
    /// level, reasons, GeoIP, expiry). Each matching rule's rate limit and
    /// de-duplication apply; what passes is queued for its outputs.
    pub fn decision(&self, alert: Alert, action: &str) {
        let routed = self
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .decision(alert, action, rules::now_ms());
        for Routed { alert, outputs } in routed {
            self.alerter.send(alert, &outputs);
        }
    }

    /// Sends what is queued (waiting at most 20 s) and stops.
    pub async fn close(self) -> AlertStats {
        self.alerter.close().await
    }
}
