//! What a batch of alerts looks like on each output: a Slack Block Kit
//! message (one section per alert, at most [`SLACK_MAX_ALERTS`]) and an
//! SNS publish (readable text for people, JSON for programs, within SNS's
//! size limits).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value, json};

use super::Alert;
use super::rules::clip;

/// Most alerts shown one by one in a Slack message; the rest are counted.
pub(crate) const SLACK_MAX_ALERTS: usize = 20;

/// Slack's limits: a section's text, a header's, and the notification text.
const SECTION_CHARS: usize = 3000;
const HEADER_CHARS: usize = 150;
const FALLBACK_CHARS: usize = 500;

/// SNS's largest message (256 KiB, with the JSON structure around the
/// per-protocol forms) and longest subject.
pub(crate) const SNS_MAX_BYTES: usize = 256 * 1024;
const SNS_SUBJECT_CHARS: usize = 99;

/// The Slack webhook payload for `alerts`.
pub(crate) fn slack(alerts: &[Alert]) -> Value {
    let shown = &alerts[..alerts.len().min(SLACK_MAX_ALERTS)];
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": clip(&headline(alerts.len()), HEADER_CHARS)},
    })];
    for alert in shown {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": clip(&slack_section(alert), SECTION_CHARS)},
        }));
    }
    let mut notes = Vec::new();
    if let Some(more) = more(alerts, shown.len()) {
        notes.push(escape(&more));
    }
    if let Some(held) = rate_limited(alerts) {
        notes.push(escape(&held));
    }
    for note in notes {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": clip(&note, SECTION_CHARS)}],
        }));
    }
    let mut fallback = headline(alerts.len());
    for (i, alert) in shown.iter().enumerate() {
        fallback.push_str(if i == 0 { ": " } else { "; " });
        fallback.push_str(&format!("[{}] {}", badge(alert), alert.title));
    }
    json!({"text": clip(&escape(&fallback), FALLBACK_CHARS), "blocks": blocks})
}

fn headline(n: usize) -> String {
    match n {
        1 => "seclake: 1 alert".to_owned(),
        n => format!("seclake: {n} alerts"),
    }
}

/// One alert as Slack mrkdwn: the title, then who, where and why.
fn slack_section(alert: &Alert) -> String {
    let mut out = format!("*[{}] {}*", badge(alert), escape(&alert.title));
    for line in lines(alert) {
        out.push('\n');
        let parts: Vec<String> = line
            .iter()
            .map(|(label, value)| match *label {
                "IP" => format!("*IP* `{}`", escape(value)),
                label => format!("*{label}* {}", escape(value)),
            })
            .collect();
        out.push_str(&parts.join(" · "));
    }
    if let Some(text) = &alert.text {
        out.push_str("\n> ");
        out.push_str(&escape(&one_line(text)));
    }
    out.push('\n');
    out.push_str(&escape(&footer(alert)));
    out
}

/// The labelled facts of an alert, a line per group; empty ones left out.
fn lines(alert: &Alert) -> Vec<Vec<(&'static str, String)>> {
    let some = |label: &'static str, value: Option<String>| value.map(|v| (label, v));
    let country = match (&alert.country_iso, &alert.country_name) {
        (Some(iso), Some(name)) => Some(format!("{iso} ({name})")),
        (iso, name) => iso.clone().or_else(|| name.clone()),
    };
    let asn = match (alert.asn, &alert.as_org) {
        (Some(asn), Some(org)) => Some(format!("AS{asn} {org}")),
        (Some(asn), None) => Some(format!("AS{asn}")),
        (None, org) => org.clone(),
    };
    let reasons = (!alert.reasons.is_empty()).then(|| alert.reasons.join(", "));
    let groups = [
        vec![
            Some(("Source", alert.source.clone())),
            some(
                "Alert rule",
                Some(alert.alert_rule.clone()).filter(|r| !r.is_empty()),
            ),
            some("Host", alert.hostname.clone()),
            some("Action", alert.action.clone()),
        ],
        vec![
            some("IP", alert.client_ip.clone()),
            some("Country", country),
            some("ASN", asn),
        ],
        vec![
            Some((
                "Score",
                format!("{} ({})", alert.score, alert.level.as_str()),
            )),
            some("Reasons", reasons),
        ],
        vec![
            some("Rule", alert.rule.clone()),
            some("Expires", alert.expiry_ms.map(rfc3339)),
        ],
    ];
    groups
        .into_iter()
        .map(|g| g.into_iter().flatten().collect::<Vec<_>>())
        .filter(|g| !g.is_empty())
        .collect()
}

/// `event <id> at <time>`, with what the limits held back.
fn footer(alert: &Alert) -> String {
    let mut out = String::new();
    if let Some(id) = &alert.event_id {
        let _ = write!(out, "event `{id}` ");
    }
    let _ = write!(out, "at {}", rfc3339(alert.event_ms));
    if alert.repeats > 0 {
        let _ = write!(
            out,
            " · {} repeat{} held back by dedup_window",
            alert.repeats,
            plural(alert.repeats)
        );
    }
    out
}

/// The severity if the event has one, else the threat level, upper case.
fn badge(alert: &Alert) -> String {
    alert
        .severity
        .as_deref()
        .unwrap_or(alert.level.as_str())
        .to_ascii_uppercase()
}

/// `and 12 more alerts (falco-critical 10, waf-blocks 2)`.
fn more(alerts: &[Alert], shown: usize) -> Option<String> {
    let rest = alerts.get(shown..).filter(|r| !r.is_empty())?;
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for alert in rest {
        *by_rule.entry(alert.alert_rule.as_str()).or_default() += 1;
    }
    Some(format!(
        "and {} more alert{} ({})",
        rest.len(),
        plural(rest.len() as u64),
        counts(by_rule.into_iter().map(|(r, n)| (r, n as u64)))
    ))
}

/// `rate limits dropped 30 alerts before these (falco-noisy 30)`.
fn rate_limited(alerts: &[Alert]) -> Option<String> {
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a.rate_limited > 0) {
        *by_rule.entry(alert.alert_rule.as_str()).or_default() += alert.rate_limited;
    }
    let total: u64 = by_rule.values().sum();
    (total > 0).then(|| {
        format!(
            "{total} more suppressed by rate limits before these ({})",
            counts(by_rule.into_iter())
        )
    })
}

fn counts<'a>(by_rule: impl Iterator<Item = (&'a str, u64)>) -> String {
    by_rule
        .map(|(rule, n)| format!("{rule} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Escapes Slack's control characters, so text shows as written.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// One SNS publish.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SnsMessage {
    /// At most 99 printable ASCII characters, as SNS requires.
    pub(crate) subject: String,
    /// The JSON message structure (`MessageStructure = json`): text for
    /// `default` and `email`, JSON for the protocols programs read.
    pub(crate) message: String,
}

/// The SNS publish for `alerts`: as many alerts as fit in
/// [`SNS_MAX_BYTES`], the rest counted.
pub(crate) fn sns(alerts: &[Alert]) -> SnsMessage {
    let subject = sns_subject(alerts);
    let mut shown = alerts.len();
    loop {
        let message = sns_body(alerts, shown);
        if message.len() <= SNS_MAX_BYTES {
            return SnsMessage { subject, message };
        }
        if shown == 0 {
            // Only a pathological rule count gets here: say so, in a form
            // that always fits.
            let text = format!("{}; too many to list", headline(alerts.len()));
            let message = json!({"default": text}).to_string();
            return SnsMessage { subject, message };
        }
        let fit = shown * SNS_MAX_BYTES / message.len();
        shown = fit.min(shown - 1);
    }
}

fn sns_subject(alerts: &[Alert]) -> String {
    let mut subject = headline(alerts.len());
    if let Some(first) = alerts.first() {
        let _ = write!(subject, ": [{}] {}", badge(first), first.title);
    }
    let mut ascii: String = subject
        .replace('→', "->")
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if ascii.len() > SNS_SUBJECT_CHARS {
        ascii.truncate(SNS_SUBJECT_CHARS - 3);
        ascii.push_str("...");
    }
    ascii
}

/// The message structure with the first `shown` alerts.
fn sns_body(alerts: &[Alert], shown: usize) -> String {
    let list = &alerts[..shown];
    let mut text = headline(alerts.len());
    text.push('\n');
    for alert in list {
        text.push('\n');
        text.push_str(&sns_text(alert));
    }
    let more = more(alerts, shown);
    let held = rate_limited(alerts);
    for note in [&more, &held].into_iter().flatten() {
        text.push('\n');
        text.push_str(note);
        text.push('\n');
    }
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    for alert in alerts.iter().filter(|a| a.rate_limited > 0) {
        *by_rule.entry(alert.alert_rule.as_str()).or_default() += alert.rate_limited;
    }
    let data = json!({
        "alerts": list.iter().map(alert_json).collect::<Vec<_>>(),
        "more": alerts.len() - shown,
        "rate_limited": by_rule,
    })
    .to_string();
    json!({
        "default": text,
        "email": text,
        "email-json": data,
        "sqs": data,
        "lambda": data,
        "http": data,
        "https": data,
    })
    .to_string()
}

/// One alert as plain text: the title, then a line per group of facts.
fn sns_text(alert: &Alert) -> String {
    let mut out = format!("[{}] {}\n", badge(alert), alert.title);
    for line in lines(alert) {
        let parts: Vec<String> = line
            .iter()
            .map(|(label, value)| format!("{label}: {value}"))
            .collect();
        let _ = writeln!(out, "  {}", parts.join(", "));
    }
    if let Some(text) = &alert.text {
        let _ = writeln!(out, "  {}", one_line(text));
    }
    let _ = writeln!(out, "  {}", footer(alert).replace('`', ""));
    out
}

/// One alert as JSON, every field present (null when unknown).
fn alert_json(alert: &Alert) -> Value {
    json!({
        "alert_rule": alert.alert_rule,
        "title": alert.title,
        "source": alert.source,
        "severity": alert.severity,
        "level": alert.level.as_str(),
        "score": alert.score,
        "reasons": alert.reasons,
        "rule": alert.rule,
        "action": alert.action,
        "event_id": alert.event_id,
        "client_ip": alert.client_ip,
        "hostname": alert.hostname,
        "country_iso": alert.country_iso,
        "country_name": alert.country_name,
        "asn": alert.asn,
        "as_org": alert.as_org,
        "expiry": alert.expiry_ms.map(rfc3339),
        "event_time": rfc3339(alert.event_ms),
        "text": alert.text,
        "repeats": alert.repeats,
        "rate_limited": alert.rate_limited,
    })
}

#[cfg(test)]
mod tests {
    use seclake_enrich::threat::ThreatLevel;

    use super::*;

    fn alert(i: usize) -> Alert {
        Alert {
            alert_rule: "falco-critical".into(),
            title: format!("Drop and execute new binary <{i}>"),
            source: "falco".into(),
            severity: Some("critical".into()),
            rule: Some("Drop and execute new binary in container".into()),
            event_id: Some(format!("{i:032x}")),
            client_ip: Some("203.0.113.9".into()),
            hostname: Some("node-3".into()),
            country_iso: Some("KR".into()),
            country_name: Some("South Korea".into()),
            asn: Some(4766),
            as_org: Some("Korea Telecom".into()),
            score: 85,
            level: ThreatLevel::Critical,
            reasons: vec!["falco.priority.critical +60".into(), "mitre +10".into()],
            expiry_ms: Some(1_795_996_800_000),
            text: Some("a shell\nwas spawned & ran".into()),
            event_ms: 1_795_910_400_000,
            ..Alert::default()
        }
    }

    fn sections(payload: &Value) -> Vec<String> {
        payload["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .filter(|b| b["type"] == "section")
            .map(|b| b["text"]["text"].as_str().expect("text").to_owned())
            .collect()
    }

    #[test]
    fn a_slack_section_shows_ip_country_asn_score_reasons_and_expiry() {
        let payload = slack(&[alert(1)]);
        assert_eq!(payload["blocks"][0]["text"]["text"], "seclake: 1 alert");
        let text = &sections(&payload)[0];
        for part in [
            "*[CRITICAL] Drop and execute new binary &lt;1&gt;*",
            "*IP* `203.0.113.9`",
            "*Country* KR (South Korea)",
            "*ASN* AS4766 Korea Telecom",
            "*Score* 85 (critical)",
            "*Reasons* falco.priority.critical +60, mitre +10",
            "*Expires* 2026-11-30T00:00:00Z",
            "*Host* node-3",
            "> a shell was spawned &amp; ran",
            "event `00000000000000000000000000000001` at 2026-11-29T00:00:00Z",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        assert!(
            payload["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("seclake: 1 alert: [CRITICAL]"))
        );
    }

    #[test]
    fn a_slack_message_shows_twenty_alerts_and_counts_the_rest() {
        let mut alerts: Vec<Alert> = (0..23).map(alert).collect();
        alerts[21].alert_rule = "waf-blocks".into();
        alerts[22].rate_limited = 7;
        let payload = slack(&alerts);
        assert_eq!(sections(&payload).len(), SLACK_MAX_ALERTS);
        assert_eq!(payload["blocks"][0]["text"]["text"], "seclake: 23 alerts");
        let notes: Vec<&str> = payload["blocks"]
            .as_array()
            .expect("blocks")
            .iter()
            .filter(|b| b["type"] == "context")
            .filter_map(|b| b["elements"][0]["text"].as_str())
            .collect();
        assert_eq!(
            notes,
            [
                "and 3 more alerts (falco-critical 2, waf-blocks 1)",
                "7 more suppressed by rate limits before these (falco-critical 7)"
            ]
        );
        assert!(payload["blocks"].as_array().expect("blocks").len() <= 50);
    }

    #[test]
    fn an_sns_publish_has_text_for_people_and_json_for_programs() {
        let mut alerts = vec![alert(1), alert(2)];
        alerts[1].repeats = 4;
        let published = sns(&alerts);
        assert_eq!(
            published.subject,
            "seclake: 2 alerts: [CRITICAL] Drop and execute new binary <1>"
        );
        let structure: Value = serde_json::from_str(&published.message).expect("json");
        let text = structure["default"].as_str().expect("default");
        assert_eq!(structure["email"], structure["default"]);
        assert!(text.starts_with("seclake: 2 alerts\n"), "{text}");
        assert!(
            text.contains(
                "  IP: 203.0.113.9, Country: KR (South Korea), ASN: AS4766 Korea Telecom"
            ),
            "{text}"
        );
        assert!(
            text.contains("4 repeats held back by dedup_window"),
            "{text}"
        );
        for protocol in ["sqs", "lambda", "http", "https", "email-json"] {
            assert_eq!(structure[protocol], structure["sqs"], "{protocol}");
        }
        let data: Value =
            serde_json::from_str(structure["sqs"].as_str().expect("sqs")).expect("json");
        assert_eq!(data["more"], 0);
        let first = &data["alerts"][0];
        assert_eq!(first["client_ip"], "203.0.113.9");
        assert_eq!(first["asn"], 4766);
        assert_eq!(first["level"], "critical");
        assert_eq!(first["expiry"], "2026-11-30T00:00:00Z");
        assert_eq!(first["event_time"], "2026-11-29T00:00:00Z");
        assert_eq!(data["alerts"][1]["repeats"], 4);
    }

    #[test]
    fn an_sns_publish_fits_in_256_kib_and_counts_what_did_not_fit() {
        let alerts: Vec<Alert> = (0..2000)
            .map(|i| Alert {
                text: Some("é".repeat(400)),
                ..alert(i)
            })
            .collect();
        let published = sns(&alerts);
        assert!(published.message.len() <= SNS_MAX_BYTES);
        let structure: Value = serde_json::from_str(&published.message).expect("json");
        let data: Value =
            serde_json::from_str(structure["sqs"].as_str().expect("sqs")).expect("json");
        let shown = data["alerts"].as_array().expect("alerts").len();
        assert!(shown > 10, "{shown}");
        assert_eq!(data["more"].as_u64(), Some((2000 - shown) as u64));
        assert!(
            structure["default"]
                .as_str()
                .is_some_and(|t| t.contains(&format!("and {} more alerts", 2000 - shown)))
        );
    }

    #[test]
    fn the_sns_subject_is_short_printable_ascii() {
        let long = Alert {
            title: format!("GET /ü{} → 500", "x".repeat(200)),
            ..alert(1)
        };
        let subject = sns(&[long]).subject;
        assert_eq!(subject.len(), 99);
        assert!(
            subject.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{subject}"
        );
        assert!(subject.starts_with("seclake: 1 alert: [CRITICAL] GET /?x"));
        assert!(subject.ends_with("xxx..."));
    }
}
