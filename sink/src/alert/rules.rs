//! Which events become alerts: every `[[alert]]` rule's match, rate limit
//! and de-duplication window, and the [`Alert`] made of a matching event.
//!
//! Limits count in processing time (the wall clock, passed in as `now_ms`
//! so tests can move it): they protect a channel from floods, which a
//! replay of old logs causes as much as a live attack.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int32Array, Int64Array, ListArray, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use metrics::counter;
use seclake_enrich::threat::ThreatLevel;
use seclake_ingest::Format;

use super::Alert;
use super::config::{AlertSinkConfig, Matcher, Output, RuleFormat, severity_rank};
use crate::SinkError;

/// Longest title and text an alert carries; an event's text can be long.
const MAX_TITLE_CHARS: usize = 150;
const MAX_TEXT_CHARS: usize = 1000;
/// Most reasons an alert lists.
const MAX_REASONS: usize = 20;
/// Keys a de-duplication window holds before expired ones are swept.
const DEDUP_SWEEP: usize = 1024;

/// An alert and the outputs it goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// The alert, with its rule's name and held-back counts set.
    pub alert: Alert,
    /// Where it goes; never empty.
    pub outputs: Vec<Output>,
}

/// Every `[[alert]]` rule with its limits' state.
///
/// An event goes to each output at most once: the first rule (in file
/// order) that matches it, passes its limits and names the output sends
/// it there.
pub struct AlertRules {
    rules: Vec<RuleState>,
}

struct RuleState {
    matcher: Matcher,
    /// Times (ms) of the alerts sent within the rate limit's period.
    sent: VecDeque<i64>,
    /// Alerts the rate limit dropped since the last one sent.
    rate_limited: u64,
    /// Per key: when it was last alerted and the repeats held back since.
    seen: HashMap<(String, String), Seen>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    at_ms: i64,
    repeats: u64,
}

/// What a rule's limits said.
enum Admit {
    /// Send it: repeats and rate-limited alerts held back before it.
    Send { repeats: u64, rate_limited: u64 },
    /// Held back.
    Suppressed,
}

impl AlertRules {
    /// Checks and compiles every rule.
    pub fn new(config: &AlertSinkConfig) -> Result<AlertRules, SinkError> {
        let rules = config
            .matchers()?
            .into_iter()
            .map(|matcher| RuleState {
                matcher,
                sent: VecDeque::new(),
                rate_limited: 0,
                seen: HashMap::new(),
                sweep_at: DEDUP_SWEEP,
            })
            .collect();
        Ok(AlertRules { rules })
    }

    /// Whether any rule routes the response's decisions.
    pub fn routes_decisions(&self) -> bool {
        self.rules.iter().any(|r| r.matcher.for_response())
    }

    /// The alerts of a batch of `format` events (the event schema) at
    /// `now_ms`, in event order.
    pub fn events(
        &mut self,
        format: Format,
        events: &RecordBatch,
        now_ms: i64,
    ) -> Result<Vec<Routed>, SinkError> {
        let wanted: Vec<usize> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| match r.matcher.format {
                None => true,
                Some(RuleFormat::Log(f)) => f == format,
                Some(RuleFormat::Response) => false,
            })
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() || events.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let columns = Columns::of(events)?;
        let mut out = Vec::new();
        for row in 0..events.num_rows() {
            let mut alert: Option<Alert> = None;
            let mut served: Vec<Output> = Vec::new();
            for &i in &wanted {
                let state = &mut self.rules[i];
                if !columns.matches(&state.matcher, row) {
                    continue;
                }
                let outputs = unserved(&state.matcher.outputs, &served);
                if outputs.is_empty() {
                    continue;
                }
                let key = state.matcher.dedup_window.map(|_| columns.dedup_key(row));
                let Admit::Send {
                    repeats,
                    rate_limited,
                } = state.admit(key, now_ms)
                else {
                    continue;
                };
                let base = alert.get_or_insert_with(|| columns.alert(format, row));
                served.extend_from_slice(&outputs);
                out.push(Routed {
                    alert: Alert {
                        alert_rule: state.matcher.name.to_string(),
                        repeats,
                        rate_limited,
                        ..base.clone()
                    },
                    outputs,
                });
            }
        }
        Ok(out)
    }

    /// Routes one of the response's decisions (`action`, e.g. `blocked`)
    /// through the `format = "response"` rules at `now_ms`.
    pub fn decision(&mut self, alert: Alert, action: &str, now_ms: i64) -> Vec<Routed> {
        let mut out = Vec::new();
        let mut served: Vec<Output> = Vec::new();
        for state in &mut self.rules {
            let m = &state.matcher;
            let matches = m.for_response()
                && m.min_level.is_none_or(|min| alert.level >= min)
                && (m.actions.is_empty() || m.actions.iter().any(|a| a == action));
            if !matches {
                continue;
            }
            let outputs = unserved(&m.outputs, &served);
            if outputs.is_empty() {
                continue;
            }
            let key = m.dedup_window.map(|_| {
                let who = alert.client_ip.as_ref().or(alert.hostname.as_ref());
                (
                    who.cloned().unwrap_or_default(),
                    format!("{action}\0{}", alert.rule.as_deref().unwrap_or_default()),
                )
            });
            let Admit::Send {
                repeats,
                rate_limited,
            } = state.admit(key, now_ms)
            else {
                continue;
            };
            served.extend_from_slice(&outputs);
            out.push(Routed {
                alert: Alert {
                    alert_rule: state.matcher.name.to_string(),
                    source: "response".to_owned(),
                    action: Some(action.to_owned()),
                    repeats,
                    rate_limited,
                    ..alert.clone()
                },
                outputs,
            });
        }
        out
    }
}

impl RuleState {
    /// Applies the de-duplication window (to `key`) and then the rate
    /// limit, and records the alert when both let it through. A duplicate
    /// spends none of the rate; a rate-limited alert leaves no key behind,
    /// so the next occurrence is not taken for a repeat of one never sent.
    fn admit(&mut self, key: Option<(String, String)>, now_ms: i64) -> Admit {
        let m = &self.matcher;
        if let (Some(window), Some(key)) = (m.dedup_window, &key)
            && let Some(seen) = self.seen.get_mut(key)
            && now_ms.saturating_sub(seen.at_ms) < millis(window)
        {
            seen.repeats += 1;
            suppressed(&m.name, "dedup");
            return Admit::Suppressed;
        }
        if let Some(limit) = m.rate_limit {
            let period = millis(limit.per);
            while self
                .sent
                .front()
                .is_some_and(|at| now_ms.saturating_sub(*at) >= period)
            {
                self.sent.pop_front();
            }
            if self.sent.len() >= limit.max as usize {
                self.rate_limited += 1;
                suppressed(&m.name, "rate_limit");
                return Admit::Suppressed;
            }
            self.sent.push_back(now_ms);
        }
        let mut repeats = 0;
        if let (Some(window), Some(key)) = (m.dedup_window, key) {
            if self.seen.len() >= self.sweep_at {
                let window = millis(window);
                self.seen
                    .retain(|_, s| now_ms.saturating_sub(s.at_ms) < window);
                self.sweep_at = (self.seen.len() * 2).max(DEDUP_SWEEP);
            }
            let fresh = Seen {
                at_ms: now_ms,
                repeats: 0,
            };
            repeats = self.seen.insert(key, fresh).map_or(0, |s| s.repeats);
        }
        Admit::Send {
            repeats,
            rate_limited: std::mem::take(&mut self.rate_limited),
        }
    }
}

fn suppressed(rule: &Arc<str>, why: &'static str) {
    counter!("seclake_alerts_suppressed_total", "rule" => rule.to_string(), "why" => why)
        .increment(1);
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The wall clock in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The columns alerts read, by name.
struct Columns<'a> {
    event_id: &'a StringArray,
    source: &'a StringArray,
    ts: &'a TimestampMicrosecondArray,
    client_ip: &'a StringArray,
    country_iso: &'a StringArray,
    country_name: &'a StringArray,
    asn: &'a Int64Array,
    as_org: &'a StringArray,
    action: &'a StringArray,
    rule: &'a StringArray,
    severity: &'a StringArray,
    http_method: &'a StringArray,
    host: &'a StringArray,
    uri: &'a StringArray,
    status: &'a Int32Array,
    falco_output: &'a StringArray,
    hostname: &'a StringArray,
    app_service: &'a StringArray,
    app_route: &'a StringArray,
    app_error: &'a StringArray,
    message: &'a StringArray,
    score: &'a Int32Array,
    level: &'a StringArray,
    reasons: &'a ListArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Result<Columns<'a>, SinkError> {
        use crate::columns::{list, primitive, text};
        let text = |name| text(batch, name);
        let int32 = |name| primitive(batch, name);
        Ok(Columns {
            event_id: text("event_id")?,
            source: text("source")?,
            ts: primitive(batch, "ts")?,
            client_ip: text("client_ip")?,
            country_iso: text("country_iso")?,
            country_name: text("country_name")?,
            asn: primitive(batch, "asn")?,
            as_org: text("as_org")?,
            action: text("action")?,
            rule: text("rule")?,
            severity: text("severity")?,
            http_method: text("http_method")?,
            host: text("host")?,
            uri: text("uri")?,
            status: int32("status")?,
            falco_output: text("falco_output")?,
            hostname: text("hostname")?,
            app_service: text("app_service")?,
            app_route: text("app_route")?,
            app_error: text("app_error")?,
            message: text("message")?,
            score: int32("threat_score")?,
            level: text("threat_level")?,
            reasons: list(batch, "threat_reasons")?,
        })
    }

    fn matches(&self, m: &Matcher, row: usize) -> bool {
        if let Some(min) = m.min_level
            && ThreatLevel::from_name(self.level.value(row)).is_none_or(|l| l < min)
        {
            return false;
        }
        if let Some(min) = m.min_severity
            && text(self.severity, row)
                .and_then(severity_rank)
                .is_none_or(|r| r < min)
        {
            return false;
        }
        if !m.rules.is_empty()
            && !text(self.rule, row).is_some_and(|r| m.rules.iter().any(|x| x == r))
        {
            return false;
        }
        if !m.actions.is_empty()
            && !text(self.action, row)
                .is_some_and(|a| m.actions.iter().any(|x| x.eq_ignore_ascii_case(a)))
        {
            return false;
        }
        true
    }

    /// Who (the client address, else the host) and what (the event's rule).
    fn dedup_key(&self, row: usize) -> (String, String) {
        let who = text(self.client_ip, row).or_else(|| text(self.hostname, row));
        (
            who.unwrap_or_default().to_owned(),
            text(self.rule, row).unwrap_or_default().to_owned(),
        )
    }

    fn alert(&self, format: Format, row: usize) -> Alert {
        let owned = |a: &StringArray| text(a, row).map(str::to_owned);
        let rule = text(self.rule, row);
        let action = text(self.action, row);
        let (title, body) = match format {
            Format::Falco => (
                rule.unwrap_or("Falco alert").to_owned(),
                text(self.falco_output, row).map(str::to_owned),
            ),
            Format::Waf => (
                format!(
                    "WAF {}: {}",
                    action.unwrap_or("request"),
                    rule.unwrap_or("no rule")
                ),
                self.request_line(row),
            ),
            // App events, and any format without its own words here: the
            // request if there is one, else the rule.
            other => (
                match (text(self.app_service, row), self.request_line(row)) {
                    (Some(service), Some(line)) => format!("{service}: {line}"),
                    (None, Some(line)) => line,
                    (service, None) => rule
                        .or(service)
                        .map_or_else(|| format!("{other} event"), str::to_owned),
                },
                text(self.app_error, row)
                    .or_else(|| text(self.message, row))
                    .map(str::to_owned),
            ),
        };
        Alert {
            alert_rule: String::new(),
            title: clip(&title, MAX_TITLE_CHARS),
            source: text(self.source, row).unwrap_or(format.as_str()).to_owned(),
            severity: owned(self.severity),
            rule: rule.map(str::to_owned),
            action: action.map(str::to_owned),
            event_id: owned(self.event_id),
            client_ip: owned(self.client_ip),
            hostname: owned(self.hostname),
            country_iso: owned(self.country_iso),
            country_name: owned(self.country_name),
            asn: (!self.asn.is_null(row)).then(|| self.asn.value(row)),
            as_org: owned(self.as_org),
            score: self.score.value(row),
            level: ThreatLevel::from_name(self.level.value(row)).unwrap_or_default(),
            reasons: self.reasons(row),
            expiry_ms: None,
            text: body.map(|t| clip(&t, MAX_TEXT_CHARS)),
            event_ms: self.ts.value(row).div_euclid(1000),
            repeats: 0,
            rate_limited: 0,
        }
    }

    /// `GET example.com/login → 403` (app events have a route, not a host).
    fn request_line(&self, row: usize) -> Option<String> {
        let method = text(self.http_method, row)?;
        let path = text(self.app_route, row).or_else(|| text(self.uri, row))?;
        let host = text(self.host, row).unwrap_or_default();
        let mut line = format!("{method} {host}{path}");
        if !self.status.is_null(row) {
            line.push_str(&format!(" → {}", self.status.value(row)));
        }
        Some(line)
    }

    fn reasons(&self, row: usize) -> Vec<String> {
        if self.reasons.is_null(row) {
            return Vec::new();
        }
        let list = self.reasons.value(row);
        list.as_string_opt::<i32>()
            .map(|s| {
                s.iter()
                    .flatten()
                    .take(MAX_REASONS)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn text(array: &StringArray, row: usize) -> Option<&str> {
    (!array.is_null(row)).then(|| array.value(row))
}

/// `s` cut to `max` characters, an ellipsis marking the cut.
pub(crate) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if s[end..].chars().nth(1).is_some() => format!("{}…", &s[..end]),
        _ => s.to_owned(),
    }
}

/// The rule's outputs an earlier rule has not sent this alert to: each
/// alert reaches each output once.
fn unserved(outputs: &[Output], served: &[Output]) -> Vec<Output> {
    outputs
        .iter()
        .copied()
        .filter(|o| !served.contains(o))
        .collect()
}

#[cfg(test)]
mod tests {
    use seclake_enrich::schema::{Event, events_to_batch};

    use super::*;
    use crate::alert::config::{AlertOutputs, AlertRule, SlackOutput, SnsOutput};

    const MINUTE: i64 = 60_000;

    fn outputs() -> AlertOutputs {
        AlertOutputs {
            slack: Some(SlackOutput {
                webhook_url: "https://hooks.slack.com/services/x".into(),
            }),
            sns: Some(SnsOutput {
                topic_arn: "arn:aws:sns:ap-northeast-2:123456789012:t".into(),
                region: None,
                endpoint: None,
            }),
        }
    }

    /// Rules from `[[alert]]` TOML.
    fn rules(text: &str) -> AlertRules {
        #[derive(serde::Deserialize)]
        struct File {
            alert: Vec<AlertRule>,
        }
        let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        AlertRules::new(&AlertSinkConfig {
            outputs: outputs(),
            rules: file.alert,
        })
        .expect("valid rules")
    }

    fn falco(rule: &str, severity: &str, host: &str) -> Event {
        Event {
            event_id: format!("{rule}-{severity}-{host}"),
            source: "falco".into(),
            ts: 1_764_400_000_000_000,
            rule: Some(rule.into()),
            severity: Some(severity.into()),
            falco_priority: Some(severity.into()),
            falco_output: Some(format!("{rule} on {host}")),
            hostname: Some(host.into()),
            threat_score: 70,
            threat_level: "high".into(),
            threat_reasons: vec!["falco.priority +70".into()],
            ..Event::default()
        }
    }

    fn waf(ip: &str, action: &str, level: &str) -> Event {
        Event {
            event_id: format!("{ip}-{action}-{level}"),
            source: "waf".into(),
            ts: 1_764_400_000_000_000,
            client_ip: Some(ip.into()),
            country_iso: Some("KR".into()),
            asn: Some(4766),
            as_org: Some("Korea Telecom".into()),
            action: Some(action.into()),
            rule: Some("AWS-AWSManagedRulesSQLiRuleSet".into()),
            http_method: Some("GET".into()),
            host: Some("shop.example.com".into()),
            uri: Some("/login".into()),
            status: Some(403),
            threat_score: 90,
            threat_level: level.into(),
            threat_reasons: vec!["waf.group.sqli +25".into()],
            ..Event::default()
        }
    }

    fn batch(events: &[Event]) -> RecordBatch {
        events_to_batch(events).expect("a batch")
    }

    /// The event ids alerted, with the rule that sent each.
    fn alerted(routed: &[Routed]) -> Vec<(String, String)> {
        routed
            .iter()
            .map(|r| {
                (
                    r.alert.event_id.clone().unwrap_or_default(),
                    r.alert.alert_rule.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn severity_is_compared_by_rank_and_only_for_its_format() {
        let mut rules = rules(
            "[[alert]]\nname = \"crit\"\noutput = \"slack\"\nformat = \"falco\"\nmin_severity = \"critical\"\n",
        );
        let events = [
            falco("Drop and execute", "critical", "a"),
            falco("Outbound C2", "alert", "a"),
            falco("Token exfil", "emergency", "a"),
            falco("Write below etc", "error", "a"),
            falco("Terminal shell", "notice", "a"),
        ];
        let routed = rules
            .events(Format::Falco, &batch(&events), 0)
            .expect("read");
        let ids: Vec<String> = alerted(&routed).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            ids,
            [
                "Drop and execute-critical-a",
                "Outbound C2-alert-a",
                "Token exfil-emergency-a"
            ]
        );
        assert!(
            rules
                .events(Format::App, &batch(&events), 0)
                .expect("read")
                .is_empty(),
            "a falco rule never sees another format"
        );
    }

    #[test]
    fn app_levels_rank_like_falco_priorities() {
        let mut rules = rules(
            "[[alert]]\nname = \"errors\"\noutput = \"sns\"\nformat = \"app\"\nmin_severity = \"error\"\n",
        );
        let app = |level: &str| Event {
            event_id: level.into(),
            source: "app".into(),
            severity: Some(level.into()),
            app_service: Some("commerce-api".into()),
            http_method: Some("POST".into()),
            app_route: Some("/orders/{id}".into()),
            status: Some(500),
            app_error: Some("db timeout".into()),
            threat_level: "low".into(),
            ..Event::default()
        };
        let routed = rules
            .events(
                Format::App,
                &batch(&[app("info"), app("warn"), app("error")]),
                0,
            )
            .expect("read");
        assert_eq!(routed.len(), 1);
        let alert = &routed[0].alert;
        assert_eq!(alert.event_id.as_deref(), Some("error"));
        assert_eq!(alert.title, "commerce-api: POST /orders/{id} → 500");
        assert_eq!(alert.text.as_deref(), Some("db timeout"));
        assert_eq!(routed[0].outputs, [Output::Sns]);
    }

    #[test]
    fn level_rule_and_action_each_narrow_the_match() {
        let mut rules = rules(
            "[[alert]]\nname = \"sqli-blocks\"\noutput = \"slack\"\nformat = \"waf\"\nmin_level = \"high\"\n\
             action = \"block\"\nrule = [\"AWS-AWSManagedRulesSQLiRuleSet\", \"other\"]\n",
        );
        let mut other_rule = waf("198.51.100.4", "BLOCK", "critical");
        other_rule.rule = Some("RateLimit".into());
        other_rule.event_id = "other-rule".into();
        let events = [
            waf("198.51.100.1", "BLOCK", "high"),
            waf("198.51.100.2", "BLOCK", "medium"),
            waf("198.51.100.3", "ALLOW", "critical"),
            other_rule,
            waf("198.51.100.5", "BLOCK", "critical"),
        ];
        let routed = rules.events(Format::Waf, &batch(&events), 0).expect("read");
        let ips: Vec<&str> = routed
            .iter()
            .filter_map(|r| r.alert.client_ip.as_deref())
            .collect();
        assert_eq!(ips, ["198.51.100.1", "198.51.100.5"]);
        let alert = &routed[0].alert;
        assert_eq!(alert.title, "WAF BLOCK: AWS-AWSManagedRulesSQLiRuleSet");
        assert_eq!(
            alert.text.as_deref(),
            Some("GET shop.example.com/login → 403")
        );
        assert_eq!(
            (
                alert.country_iso.as_deref(),
                alert.asn,
                alert.as_org.as_deref()
            ),
            (Some("KR"), Some(4766), Some("Korea Telecom"))
        );
        assert_eq!((alert.score, alert.level), (90, ThreatLevel::High));
        assert_eq!(alert.reasons, ["waf.group.sqli +25"]);
        assert_eq!(alert.event_ms, 1_764_400_000_000);
    }

    #[test]
    fn an_event_reaches_each_output_once_through_the_first_rule_naming_it() {
        let mut rules = rules(
            "[[alert]]\nname = \"first\"\noutput = \"slack\"\nformat = \"falco\"\n\
             [[alert]]\nname = \"second\"\noutput = [\"slack\", \"sns\"]\nmin_severity = \"debug\"\n\
             [[alert]]\nname = \"third\"\noutput = \"sns\"\nformat = \"falco\"\n",
        );
        let routed = rules
            .events(Format::Falco, &batch(&[falco("r", "notice", "h")]), 0)
            .expect("read");
        let sent: Vec<(&str, &[Output])> = routed
            .iter()
            .map(|r| (r.alert.alert_rule.as_str(), r.outputs.as_slice()))
            .collect();
        assert_eq!(
            sent,
            [
                ("first", &[Output::Slack][..]),
                ("second", &[Output::Sns][..])
            ]
        );
    }

    #[test]
    fn the_rate_limit_holds_n_per_period_and_counts_what_it_dropped() {
        let mut rules = rules(
            "[[alert]]\nname = \"noisy\"\noutput = \"slack\"\nformat = \"falco\"\nrate_limit = \"2/m\"\n",
        );
        let one = batch(&[falco("r", "notice", "h")]);
        let mut sent_at = |now: i64| {
            rules
                .events(Format::Falco, &one, now)
                .expect("read")
                .pop()
                .map(|r| r.alert.rate_limited)
        };
        assert_eq!(sent_at(0), Some(0));
        assert_eq!(sent_at(1_000), Some(0));
        assert_eq!(sent_at(2_000), None, "a third within the minute");
        assert_eq!(sent_at(59_999), None);
        assert_eq!(
            sent_at(MINUTE),
            Some(2),
            "the first left the window; two were dropped meanwhile"
        );
        assert_eq!(sent_at(MINUTE + 500), None);
        assert_eq!(sent_at(MINUTE + 1_000), Some(1));
    }

    #[test]
    fn dedup_alerts_a_key_once_per_window_and_says_how_often_it_repeated() {
        let mut rules = rules(
            "[[alert]]\nname = \"shells\"\noutput = \"slack\"\nformat = \"falco\"\ndedup_window = \"5m\"\n",
        );
        let events = batch(&[
            falco("shell", "notice", "node-a"),
            falco("shell", "notice", "node-a"),
            falco("shell", "notice", "node-b"),
            falco("miner", "critical", "node-a"),
        ]);
        let first = rules.events(Format::Falco, &events, 0).expect("read");
        assert_eq!(
            alerted(&first)
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>(),
            [
                "shell-notice-node-a",
                "shell-notice-node-b",
                "miner-critical-node-a"
            ]
        );
        let again = rules
            .events(Format::Falco, &events, 5 * MINUTE - 1)
            .expect("read");
        assert!(again.is_empty(), "all within the window: {again:?}");
        let later = rules
            .events(Format::Falco, &events, 5 * MINUTE)
            .expect("read");
        let repeats: Vec<(Option<&str>, u64)> = later
            .iter()
            .map(|r| (r.alert.hostname.as_deref(), r.alert.repeats))
            .collect();
        assert_eq!(
            repeats,
            [
                (Some("node-a"), 3),
                (Some("node-b"), 1),
                (Some("node-a"), 1)
            ]
        );
    }

    #[test]
    fn a_rate_limited_alert_is_not_remembered_as_sent() {
        let mut rules = rules(
            "[[alert]]\nname = \"r\"\noutput = \"slack\"\nformat = \"falco\"\nrate_limit = \"1/m\"\ndedup_window = \"1h\"\n",
        );
        let a = batch(&[falco("shell", "notice", "a")]);
        let b = batch(&[falco("shell", "notice", "b")]);
        assert_eq!(rules.events(Format::Falco, &a, 0).expect("read").len(), 1);
        assert!(rules.events(Format::Falco, &b, 1).expect("read").is_empty());
        assert!(
            rules.events(Format::Falco, &a, 2).expect("read").is_empty(),
            "a repeat"
        );
        let b_later = rules.events(Format::Falco, &b, MINUTE).expect("read");
        assert_eq!(
            b_later.len(),
            1,
            "b was only rate-limited, so it is no repeat"
        );
        assert_eq!(b_later[0].alert.rate_limited, 1, "the dropped b");
    }

    #[test]
    fn the_dedup_memory_is_swept_of_expired_keys() {
        let mut rules = rules(
            "[[alert]]\nname = \"r\"\noutput = \"slack\"\nformat = \"waf\"\ndedup_window = \"1s\"\n",
        );
        for i in 0..(3 * DEDUP_SWEEP as i64) {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            let routed = rules
                .events(Format::Waf, &batch(&[waf(&ip, "BLOCK", "low")]), i * 10)
                .expect("read");
            assert_eq!(routed.len(), 1);
        }
        assert!(rules.rules[0].seen.len() < 2 * DEDUP_SWEEP);
    }

    #[test]
    fn decisions_go_through_response_rules_only_by_action_and_level() {
        let mut rules = rules(
            "[[alert]]\nname = \"events\"\noutput = \"slack\"\nmin_level = \"low\"\n\
             [[alert]]\nname = \"blocks\"\noutput = \"slack\"\nformat = \"response\"\n\
             action = [\"blocked\", \"dry_run\"]\nmin_level = \"high\"\ndedup_window = \"1h\"\n",
        );
        assert!(rules.routes_decisions());
        let decided = |level: ThreatLevel| Alert {
            title: "blocked 203.0.113.9".into(),
            client_ip: Some("203.0.113.9".into()),
            rule: Some("level critical".into()),
            level,
            score: 95,
            expiry_ms: Some(86_400_000),
            ..Alert::default()
        };
        let sent = rules.decision(decided(ThreatLevel::Critical), "blocked", 0);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].alert.alert_rule, "blocks");
        assert_eq!(sent[0].alert.source, "response");
        assert_eq!(sent[0].alert.action.as_deref(), Some("blocked"));
        assert_eq!(sent[0].alert.expiry_ms, Some(86_400_000));
        assert!(
            rules
                .decision(decided(ThreatLevel::Critical), "blocked", 1)
                .is_empty(),
            "the same block again within the window"
        );
        assert_eq!(
            rules
                .decision(decided(ThreatLevel::Critical), "dry_run", 2)
                .len(),
            1,
            "another decision is another key"
        );
        assert!(
            rules
                .decision(decided(ThreatLevel::Medium), "expired", 3)
                .is_empty()
        );
        assert!(
            rules
                .decision(decided(ThreatLevel::Medium), "blocked", 4)
                .is_empty(),
            "below min_level"
        );
    }

    #[test]
    fn long_event_text_is_clipped() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abcd", 4), "abcd");
        assert_eq!(clip("ééééé", 3), "éé…");
        let mut rules = rules("[[alert]]\nname = \"r\"\noutput = \"slack\"\nformat = \"falco\"\n");
        let mut long = falco(&"x".repeat(500), "notice", "h");
        long.falco_output = Some("y".repeat(5000));
        let routed = rules
            .events(Format::Falco, &batch(&[long]), 0)
            .expect("read");
        let alert = &routed[0].alert;
        assert_eq!(alert.title.chars().count(), MAX_TITLE_CHARS);
        assert_eq!(
            alert.text.as_deref().map(|t| t.chars().count()),
            Some(MAX_TEXT_CHARS)
        );
    }
}
