//! `[alerts]` (where alerts go) and `[[alert]]` (which events become alerts),
//! and their checks. A rule that checked is compiled into a [`Matcher`], so
//! nothing downstream looks at the config's strings again.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use seclake_enrich::threat::ThreatLevel;
use seclake_enrich::time_window::config::duration;
use serde::{Deserialize, Deserializer};
use url::{Host, Url};

use crate::SinkError;

/// The `action` values of the response's decisions (its audit's `action`
/// column), which `format = "response"` rules match.
pub const DECISIONS: &[&str] = &[
    "blocked",
    "dry_run",
    "allow_listed",
    "throttled",
    "expired",
    "evicted",
    "refused",
    "key_disabled",
    "key_dry_run",
    "key_protected",
    "key_not_found",
];

/// The most alerts a `rate_limit` allows per period: the limiter keeps one
/// timestamp per alert sent within the period.
const MAX_RATE: u32 = 10_000;

/// `[alerts]`: the outputs `[[alert]]` rules send to; each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertOutputs {
    /// `[alerts.slack]`: a Slack incoming webhook.
    pub slack: Option<SlackOutput>,
    /// `[alerts.sns]`: an SNS topic.
    pub sns: Option<SnsOutput>,
}

/// `[alerts.slack]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackOutput {
    /// `https://hooks.slack.com/services/…`. A secret: write it as `${VAR}`;
    /// it is never logged or put in errors. Plain `http://` only to a
    /// loopback address.
    pub webhook_url: String,
}

impl fmt::Debug for SlackOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackOutput")
            .field("webhook_url", &"<redacted>")
            .finish()
    }
}

/// `[alerts.sns]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnsOutput {
    /// `arn:aws:sns:<region>:<account>:<topic>`.
    pub topic_arn: String,
    /// The topic's region; default: the one in `topic_arn`.
    pub region: Option<String>,
    /// Another SNS endpoint (a stand-in, a VPC endpoint).
    pub endpoint: Option<String>,
}

/// One `[[alert]]` rule: which events (or response decisions) go to which
/// outputs, and how often.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique; the `rule` label of the alert metrics.
    pub name: String,
    /// `"slack"`, `"sns"` or a list of them; each must be configured in
    /// `[alerts]`.
    #[serde(deserialize_with = "one_or_many")]
    pub output: Vec<String>,
    /// `waf`, `falco`, `app`, or `response` for the response's decisions.
    /// Without it the rule matches events of every log format (never
    /// response decisions).
    pub format: Option<String>,
    /// The least `severity` (Falco priority, app log level) that matches,
    /// compared by rank: `emergency` > `alert` > `critical` > `error` >
    /// `warning` > `notice` > `informational` > `debug`.
    pub min_severity: Option<String>,
    /// The least `threat_level` that matches: `low`, `medium`, `high`,
    /// `critical`.
    pub min_level: Option<String>,
    /// The event's `rule` must be one of these (exact match).
    #[serde(default, deserialize_with = "one_or_many")]
    pub rule: Vec<String>,
    /// The event's `action` must be one of these (any case); for
    /// response decisions one of [`DECISIONS`].
    #[serde(default, deserialize_with = "one_or_many")]
    pub action: Vec<String>,
    /// At most this many alerts per second, minute or hour (`"10/m"`);
    /// past it alerts are dropped and counted.
    pub rate_limit: Option<String>,
    /// The same key (the client address, or the host without one, and the
    /// event's `rule`) is alerted once per window (`"5m"`).
    #[serde(default, deserialize_with = "duration")]
    pub dedup_window: Option<Duration>,
}

/// The alert sink's spec: `[alerts]` and every `[[alert]]`, put together by
/// the config loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertSinkConfig {
    /// `[alerts]`.
    pub outputs: AlertOutputs,
    /// `[[alert]]`, in file order.
    pub rules: Vec<AlertRule>,
}

impl AlertSinkConfig {
    /// Checks the outputs and every rule; errors name the key
    /// (`alerts.sns.topic_arn`, `alert[0].min_severity`).
    pub fn check(&self) -> Result<(), SinkError> {
        self.matchers().map(drop)
    }

    /// Whether any rule looks at events (not only at response decisions):
    /// the alert sink runs only then.
    pub fn watches_events(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.format.as_deref() != Some(RuleFormat::Response.as_str()))
    }

    /// The checked rules, in file order.
    pub(crate) fn matchers(&self) -> Result<Vec<Matcher>, SinkError> {
        self.outputs.check()?;
        let mut matchers: Vec<Matcher> = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let matcher = rule.compile(i, &self.outputs)?;
            if let Some(first) = matchers.iter().position(|m| *m.name == *matcher.name) {
                return Err(entry(
                    i,
                    "name",
                    format!("{:?} is already the name of alert[{first}]", rule.name),
                ));
            }
            matchers.push(matcher);
        }
        Ok(matchers)
    }
}

impl AlertOutputs {
    /// Checks each configured output without touching the network.
    pub fn check(&self) -> Result<(), SinkError> {
        if let Some(slack) = &self.slack {
            slack.url()?;
        }
        if let Some(sns) = &self.sns {
            sns.region()?;
            if let Some(endpoint) = &sns.endpoint {
                let ok = Url::parse(endpoint)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
                if !ok {
                    return Err(SinkError::Config {
                        key: "alerts.sns.endpoint",
                        why: format!("{endpoint:?} is not an http(s) URL"),
                    });
                }
            }
        }
        Ok(())
    }

    fn has(&self, output: Output) -> bool {
        match output {
            Output::Slack => self.slack.is_some(),
            Output::Sns => self.sns.is_some(),
        }
    }
}

impl SlackOutput {
    /// The webhook URL, refused unless `https://` (or `http://` to
    /// loopback), so the secret never crosses a network in clear text.
    /// Errors don't repeat the URL.
    pub(crate) fn url(&self) -> Result<Url, SinkError> {
        let bad = |why: String| SinkError::Config {
            key: "alerts.slack.webhook_url",
            why,
        };
        webhook_url(&self.webhook_url).map_err(bad)
    }
}

/// A webhook URL that carries a secret: refused unless `https://` (or
/// `http://` to loopback), so the secret never crosses a network in clear
/// text. The reason never repeats the URL. Shared with the report's Slack
/// delivery.
pub fn webhook_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err("names no host".to_owned()),
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err(
            "plain http:// would send the webhook's secret in clear text: use https://".to_owned(),
        ),
        other => Err(format!("unsupported scheme {other:?}: use https://")),
    }
}

impl SnsOutput {
    /// The region to call: `region`, which must agree with the one in
    /// `topic_arn`, or the ARN's.
    pub(crate) fn region(&self) -> Result<String, SinkError> {
        let arn_region = topic_region(&self.topic_arn).ok_or_else(|| SinkError::Config {
            key: "alerts.sns.topic_arn",
            why: format!(
                "{:?} is not an SNS topic ARN (arn:aws:sns:<region>:<12-digit account>:<topic>)",
                self.topic_arn
            ),
        })?;
        match &self.region {
            Some(region) if region != arn_region => Err(SinkError::Config {
                key: "alerts.sns.region",
                why: format!("{region:?}, but the topic is in {arn_region}"),
            }),
            _ => Ok(arn_region.to_owned()),
        }
    }

    /// A FIFO topic needs a message group on every publish.
    pub(crate) fn is_fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }
}

/// The region of a well-formed SNS topic ARN.
fn topic_region(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some("sns"), Some(region), Some(account), Some(topic)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name = topic.strip_suffix(".fifo").unwrap_or(topic);
    let ok = parts.next().is_none()
        && partition.starts_with("aws")
        && !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=256).contains(&topic.len())
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(region)
}

/// An alert output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Output {
    /// `[alerts.slack]`.
    Slack,
    /// `[alerts.sns]`.
    Sns,
}

impl Output {
    /// `slack` or `sns`: the config name and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Output::Slack => "slack",
            Output::Sns => "sns",
        }
    }

    fn from_name(name: &str) -> Option<Output> {
        [Output::Slack, Output::Sns]
            .into_iter()
            .find(|o| o.as_str() == name)
    }
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleFormat {
    /// Events of one log format.
    Log(seclake_ingest::Format),
    /// The response's decisions.
    Response,
}

impl RuleFormat {
    fn from_name(name: &str) -> Option<RuleFormat> {
        if name == "response" {
            return Some(RuleFormat::Response);
        }
        seclake_ingest::Format::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .map(RuleFormat::Log)
    }

    /// Every name, for errors: `waf, falco, app or response`.
    fn names() -> String {
        let logs: Vec<&str> = seclake_ingest::Format::ALL
            .iter()
            .map(|f| f.as_str())
            .collect();
        format!("{} or response", logs.join(", "))
    }

    fn as_str(self) -> &'static str {
        match self {
            RuleFormat::Log(format) => format.as_str(),
            RuleFormat::Response => "response",
        }
    }
}

/// Severity names by rank, highest first (syslog's order, which Falco's
/// priorities follow), with the spellings app logs use.
const SEVERITIES: &[(&[&str], u8)] = &[
    (&["emergency", "emerg", "panic"], 7),
    (&["alert"], 6),
    (&["critical", "crit", "fatal"], 5),
    (&["error", "err"], 4),
    (&["warning", "warn"], 3),
    (&["notice"], 2),
    (&["informational", "info"], 1),
    (&["debug", "trace"], 0),
];

/// The rank of a severity name (any case); higher is more severe.
pub(crate) fn severity_rank(name: &str) -> Option<u8> {
    SEVERITIES
        .iter()
        .find(|(names, _)| names.iter().any(|n| n.eq_ignore_ascii_case(name)))
        .map(|(_, rank)| *rank)
}

/// At most `max` alerts in any `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    pub(crate) max: u32,
    pub(crate) per: Duration,
}

impl RateLimit {
    /// `N/s`, `N/m` or `N/h` (also `second`, `minute`, `hour`).
    fn parse(text: &str) -> Result<RateLimit, String> {
        let usage = || format!("{text:?} is not a rate: write e.g. \"10/m\" (per s, m or h)");
        let (count, unit) = text.split_once('/').ok_or_else(usage)?;
        let max: u32 = count.trim().parse().map_err(|_| usage())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        if max == 0 || max > MAX_RATE {
            return Err(format!("{text:?}: the count must be from 1 to {MAX_RATE}"));
        }
        Ok(RateLimit { max, per })
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
pub(crate) struct Matcher {
    pub(crate) name: Arc<str>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) format: Option<RuleFormat>,
    pub(crate) min_severity: Option<u8>,
    pub(crate) min_level: Option<ThreatLevel>,
    pub(crate) rules: Vec<String>,
    /// Lowercase.
    pub(crate) actions: Vec<String>,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) dedup_window: Option<Duration>,
}

impl Matcher {
    /// Whether the rule routes the response's decisions.
    pub(crate) fn for_response(&self) -> bool {
        self.format == Some(RuleFormat::Response)
    }
}

impl AlertRule {
    /// Checks the rule, the `i`th `[[alert]]`, and compiles it.
    fn compile(&self, i: usize, outputs: &AlertOutputs) -> Result<Matcher, SinkError> {
        let bad = |key: &str, why: String| entry(i, key, why);
        let name = self.name.trim();
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(bad(
                "name",
                format!(
                    "{:?}: give the rule a name of 1 to 128 characters",
                    self.name
                ),
            ));
        }
        if self.output.is_empty() {
            return Err(bad(
                "output",
                "name at least one: \"slack\" or \"sns\"".into(),
            ));
        }
        let mut chosen = Vec::new();
        for name in &self.output {
            let output = Output::from_name(name)
                .ok_or_else(|| bad("output", format!("{name:?}: use \"slack\" or \"sns\"")))?;
            if !outputs.has(output) {
                return Err(bad(
                    "output",
                    format!("{name:?} is not configured: add [alerts.{name}]"),
                ));
            }
            if !chosen.contains(&output) {
                chosen.push(output);
            }
        }
        let format = self
            .format
            .as_deref()
            .map(|f| {
                RuleFormat::from_name(f)
                    .ok_or_else(|| bad("format", format!("{f:?}: use {}", RuleFormat::names())))
            })
            .transpose()?;
        let response = format == Some(RuleFormat::Response);
        let min_severity = match &self.min_severity {
            None => None,
            Some(_) if response => {
                return Err(bad(
                    "min_severity",
                    "the response's decisions have no severity: use min_level or action".into(),
                ));
            }
            Some(_) if format == Some(RuleFormat::Log(seclake_ingest::Format::Waf)) => {
                return Err(bad(
                    "min_severity",
                    "WAF events have no severity: use min_level or action".into(),
                ));
            }
            Some(name) => Some(severity_rank(name).ok_or_else(|| {
                bad(
                    "min_severity",
                    format!(
                        "{name:?}: use emergency, alert, critical, error, warning, notice, informational or debug"
                    ),
                )
            })?),
        };
        let min_level = self
            .min_level
            .as_deref()
            .map(|name| {
                ThreatLevel::from_name(name).ok_or_else(|| {
                    bad(
                        "min_level",
                        format!("{name:?}: use low, medium, high or critical"),
                    )
                })
            })
            .transpose()?;
        if response && !self.rule.is_empty() {
            return Err(bad(
                "rule",
                "the response's decisions are matched by action and min_level".into(),
            ));
        }
        if let Some(empty) = self.rule.iter().position(|r| r.is_empty()) {
            return Err(bad("rule", format!("entry {empty} is empty")));
        }
        let mut actions = Vec::with_capacity(self.action.len());
        for action in &self.action {
            let action = action.trim().to_ascii_lowercase();
            if action.is_empty() {
                return Err(bad("action", "an entry is empty".into()));
            }
            if response && !DECISIONS.contains(&action.as_str()) {
                return Err(bad(
                    "action",
                    format!(
                        "{action:?} is not a response decision: use {}",
                        DECISIONS.join(", ")
                    ),
                ));
            }
            actions.push(action);
        }
        if format.is_none()
            && min_severity.is_none()
            && min_level.is_none()
            && self.rule.is_empty()
            && actions.is_empty()
        {
            return Err(entry(
                i,
                "",
                "the rule would alert on every event: give at least one of format, min_severity, min_level, rule or action".into(),
            ));
        }
        let rate_limit = self
            .rate_limit
            .as_deref()
            .map(|text| RateLimit::parse(text).map_err(|why| bad("rate_limit", why)))
            .transpose()?;
        if self
            .dedup_window
            .is_some_and(|w| w < Duration::from_secs(1))
        {
            return Err(bad("dedup_window", "must be at least 1s".into()));
        }
        Ok(Matcher {
            name: Arc::from(name),
            outputs: chosen,
            format,
            min_severity,
            min_level,
            rules: self.rule.clone(),
            actions,
            rate_limit,
            dedup_window: self.dedup_window,
        })
    }
}

/// An error about the key `key` of the `i`th `[[alert]]` (the entry itself
/// when `key` is empty).
fn entry(i: usize, key: &str, why: String) -> SinkError {
    let key = if key.is_empty() {
        format!("alert[{i}]")
    } else {
        format!("alert[{i}].{key}")
    };
    SinkError::ConfigEntry { key, why }
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Strings;
    impl<'de> serde::de::Visitor<'de> for Strings {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<String>, E> {
            Ok(vec![v.to_owned()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Vec<String>, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Strings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        alerts: AlertOutputs,
        #[serde(default)]
        alert: Vec<AlertRule>,
    }

    const OUTPUTS: &str = "[alerts.slack]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/s3cr3t\"\n\
        [alerts.sns]\ntopic_arn = \"arn:aws:sns:ap-northeast-2:123456789012:seclake-alerts\"\n";

    fn config(text: &str) -> AlertSinkConfig {
        let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        AlertSinkConfig {
            outputs: file.alerts,
            rules: file.alert,
        }
    }

    fn rule(body: &str) -> AlertSinkConfig {
        config(&format!(
            "{OUTPUTS}[[alert]]\nname = \"r\"\noutput = \"slack\"\n{body}"
        ))
    }

    /// The key a bad config is refused with.
    fn refused(cfg: &AlertSinkConfig) -> String {
        match cfg.check() {
            Err(SinkError::ConfigEntry { key, .. }) => key,
            Err(SinkError::Config { key, .. }) => key.to_owned(),
            other => panic!("{cfg:?}: {other:?}"),
        }
    }

    #[test]
    fn the_documented_example_parses_and_checks() {
        let cfg = config(&format!(
            "{OUTPUTS}region = \"ap-northeast-2\"\nendpoint = \"http://127.0.0.1:5000\"\n\
             [[alert]]\nname = \"falco-critical\"\noutput = \"slack\"\nformat = \"falco\"\n\
             min_severity = \"critical\"\nmin_level = \"high\"\nrule = \"Terminal shell in container\"\n\
             rate_limit = \"10/m\"\ndedup_window = \"5m\"\n\
             [[alert]]\nname = \"blocks\"\noutput = [\"slack\", \"sns\"]\nformat = \"response\"\n\
             action = [\"blocked\"]\n"
        ));
        let matchers = cfg.matchers().expect("valid");
        let first = &matchers[0];
        assert_eq!(&*first.name, "falco-critical");
        assert_eq!(first.outputs, [Output::Slack]);
        assert_eq!(
            first.format,
            Some(RuleFormat::Log(seclake_ingest::Format::Falco))
        );
        assert_eq!(first.min_severity, severity_rank("critical"));
        assert_eq!(first.min_level, Some(ThreatLevel::High));
        assert_eq!(first.rules, ["Terminal shell in container"]);
        assert_eq!(
            first.rate_limit,
            Some(RateLimit {
                max: 10,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(first.dedup_window, Some(Duration::from_secs(300)));
        assert_eq!(matchers[1].outputs, [Output::Slack, Output::Sns]);
        assert!(matchers[1].for_response());
        assert!(cfg.watches_events());
    }

    #[test]
    fn only_response_rules_need_no_sink() {
        let cfg = rule("format = \"response\"\naction = \"blocked\"\n");
        cfg.check().expect("valid");
        assert!(!cfg.watches_events());
        assert!(!AlertSinkConfig::default().watches_events());
    }

    #[test]
    fn every_bad_rule_value_names_its_key() {
        let cases = [
            ("min_severity = \"severe\"", "alert[0].min_severity"),
            ("min_level = \"extreme\"", "alert[0].min_level"),
            ("format = \"syslog\"", "alert[0].format"),
            (
                "format = \"waf\"\nmin_severity = \"error\"",
                "alert[0].min_severity",
            ),
            (
                "format = \"response\"\nmin_severity = \"error\"",
                "alert[0].min_severity",
            ),
            (
                "format = \"response\"\naction = \"banned\"",
                "alert[0].action",
            ),
            ("format = \"response\"\nrule = \"x\"", "alert[0].rule"),
            (
                "format = \"waf\"\nrate_limit = \"10\"",
                "alert[0].rate_limit",
            ),
            (
                "format = \"waf\"\nrate_limit = \"0/m\"",
                "alert[0].rate_limit",
            ),
            (
                "format = \"waf\"\nrate_limit = \"5/day\"",
                "alert[0].rate_limit",
            ),
            (
                "format = \"waf\"\ndedup_window = \"10ms\"",
                "alert[0].dedup_window",
            ),
            ("format = \"waf\"\nrule = [\"\"]", "alert[0].rule"),
            ("rate_limit = \"10/m\"", "alert[0]"),
        ];
        for (body, key) in cases {
            assert_eq!(refused(&rule(body)), key, "{body}");
        }
    }

    #[test]
    fn outputs_must_exist_and_be_configured() {
        let only_slack = |output: &str| {
            config(&format!(
                "[alerts.slack]\nwebhook_url = \"https://hooks.slack.com/x\"\n\
                 [[alert]]\nname = \"r\"\noutput = {output}\nformat = \"falco\"\n"
            ))
        };
        assert_eq!(refused(&only_slack("\"sns\"")), "alert[0].output");
        assert_eq!(refused(&only_slack("\"email\"")), "alert[0].output");
        assert_eq!(refused(&only_slack("[]")), "alert[0].output");
        only_slack("[\"slack\", \"slack\"]").check().expect("valid");
        let none = config("[[alert]]\nname = \"r\"\noutput = \"slack\"\nformat = \"falco\"\n");
        assert_eq!(refused(&none), "alert[0].output");
    }

    #[test]
    fn names_are_required_and_unique() {
        let two = config(&format!(
            "{OUTPUTS}[[alert]]\nname = \"a\"\noutput = \"slack\"\nformat = \"waf\"\n\
             [[alert]]\nname = \"a\"\noutput = \"sns\"\nformat = \"app\"\n"
        ));
        assert_eq!(refused(&two), "alert[1].name");
        let unnamed = config(&format!(
            "{OUTPUTS}[[alert]]\nname = \" \"\noutput = \"slack\"\nformat = \"waf\"\n"
        ));
        assert_eq!(refused(&unnamed), "alert[0].name");
        let text = format!("{OUTPUTS}[[alert]]\noutput = \"slack\"\n");
        let err = toml::from_str::<File>(&text).expect_err("no name");
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn bad_outputs_name_their_key_and_hide_the_webhook() {
        let slack = |url: &str| AlertOutputs {
            slack: Some(SlackOutput {
                webhook_url: url.to_owned(),
            }),
            sns: None,
        };
        slack("http://127.0.0.1:9/hook").check().expect("loopback");
        let err = slack("http://hooks.example.com/services/s3cr3t")
            .check()
            .expect_err("clear text");
        assert!(
            matches!(&err, SinkError::Config { key: "alerts.slack.webhook_url", why } if !why.contains("s3cr3t")),
            "{err:?}"
        );
        assert!(!format!("{:?}", slack("https://x/s3cr3t")).contains("s3cr3t"));

        let sns = |arn: &str, region: Option<&str>, endpoint: Option<&str>| AlertOutputs {
            slack: None,
            sns: Some(SnsOutput {
                topic_arn: arn.to_owned(),
                region: region.map(str::to_owned),
                endpoint: endpoint.map(str::to_owned),
            }),
        };
        let key = |outputs: AlertOutputs| match outputs.check() {
            Err(SinkError::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let arn = "arn:aws:sns:ap-northeast-2:123456789012:seclake-alerts";
        sns(arn, Some("ap-northeast-2"), Some("http://127.0.0.1:5000"))
            .check()
            .expect("valid");
        sns("arn:aws:sns:us-east-1:123456789012:alerts.fifo", None, None)
            .check()
            .expect("fifo");
        assert_eq!(
            key(sns("seclake-alerts", None, None)),
            "alerts.sns.topic_arn"
        );
        assert_eq!(
            key(sns("arn:aws:sqs:ap-northeast-2:123456789012:q", None, None)),
            "alerts.sns.topic_arn"
        );
        assert_eq!(
            key(sns("arn:aws:sns:ap-northeast-2:1234:t", None, None)),
            "alerts.sns.topic_arn"
        );
        assert_eq!(key(sns(arn, Some("eu-west-1"), None)), "alerts.sns.region");
        assert_eq!(
            key(sns(arn, None, Some("127.0.0.1:5000"))),
            "alerts.sns.endpoint"
        );
        assert_eq!(
            AlertSinkConfig {
                outputs: sns(arn, None, None),
                rules: Vec::new()
            }
            .outputs
            .sns
            .as_ref()
            .map(SnsOutput::region)
            .transpose()
            .expect("region"),
            Some("ap-northeast-2".to_owned())
        );
    }

    #[test]
    fn severities_rank_as_syslog_does_in_any_spelling() {
        let rank = |s: &str| severity_rank(s).unwrap_or_else(|| panic!("{s}"));
        assert!(rank("emergency") > rank("alert"));
        assert!(rank("alert") > rank("critical"));
        assert!(rank("Critical") > rank("error"));
        assert!(rank("error") > rank("warning"));
        assert_eq!(rank("warn"), rank("warning"));
        assert!(rank("warning") > rank("notice"));
        assert!(rank("notice") > rank("informational"));
        assert_eq!(rank("info"), rank("Informational"));
        assert!(rank("info") > rank("debug"));
        assert_eq!(severity_rank("loud"), None);
    }

    #[test]
    fn a_list_or_a_string_is_accepted_where_a_list_is() {
        let cfg = rule("format = \"waf\"\naction = \"BLOCK\"\nrule = [\"a\", \"b\"]\n");
        let matcher = cfg.matchers().expect("valid").remove(0);
        assert_eq!(matcher.actions, ["block"]);
        assert_eq!(matcher.rules, ["a", "b"]);
        let text = format!("{OUTPUTS}[[alert]]\nname = \"r\"\noutput = 3\n");
        let err = toml::from_str::<File>(&text).expect_err("a number");
        assert!(err.to_string().contains("a string or a list"), "{err}");
    }
}
