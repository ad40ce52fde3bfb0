//! AWS WAF v2 web ACL traffic log records.
//!
//! Field names follow AWS's "Log fields for web ACL traffic"; fields seclake
//! does not store are skipped by the JSON parser without being built.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::str::{Str, opt};
use super::{Emitter, ParseError};
use crate::schema::{EventBuilder, EventRow};
use crate::threat::{Signals, Source};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WafLog<'a> {
    /// Epoch milliseconds.
    timestamp: i64,
    #[serde(borrow)]
    action: Str<'a>,
    #[serde(borrow)]
    http_request: HttpRequest<'a>,
    #[serde(borrow, rename = "webaclId")]
    webacl_id: Option<Str<'a>>,
    #[serde(borrow)]
    terminating_rule_id: Option<Str<'a>>,
    #[serde(borrow)]
    terminating_rule_type: Option<Str<'a>>,
    #[serde(borrow)]
    http_source_name: Option<Str<'a>>,
    #[serde(borrow)]
    rule_group_list: Option<Vec<RuleGroup<'a>>>,
    #[serde(borrow)]
    rate_based_rule_list: Option<Vec<RateBasedRule<'a>>>,
    response_code_sent: Option<i32>,
    #[serde(borrow)]
    labels: Option<Vec<Label<'a>>>,
    #[serde(borrow)]
    ja3_fingerprint: Option<Str<'a>>,
    #[serde(borrow)]
    ja4_fingerprint: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HttpRequest<'a> {
    #[serde(borrow)]
    client_ip: Str<'a>,
    #[serde(borrow)]
    country: Option<Str<'a>>,
    #[serde(borrow)]
    headers: Option<Vec<Header<'a>>>,
    #[serde(borrow)]
    uri: Option<Str<'a>>,
    #[serde(borrow)]
    args: Option<Str<'a>>,
    #[serde(borrow)]
    http_method: Option<Str<'a>>,
    #[serde(borrow)]
    request_id: Option<Str<'a>>,
    #[serde(borrow)]
    host: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    value: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleGroup<'a> {
    #[serde(borrow)]
    rule_group_id: Option<Str<'a>>,
    terminating_rule: Option<IgnoredAny>,
    non_terminating_matching_rules: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateBasedRule<'a> {
    #[serde(borrow)]
    rate_based_rule_name: Option<Str<'a>>,
    #[serde(borrow)]
    rate_based_rule_id: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Label<'a> {
    #[serde(borrow)]
    name: Str<'a>,
}

/// Header names whose values never reach the lake.
const REDACTED_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];
const REDACTED: &str = "[REDACTED]";

pub(super) fn parse(
    raw: &[u8],
    em: &mut Emitter,
    out: &mut EventBuilder,
) -> Result<(), ParseError> {
    let log: WafLog<'_> = sonic_rs::from_slice(raw).map_err(|e| em.json_error(e))?;
    let req = &log.http_request;
    let ts = log
        .timestamp
        .checked_mul(1000)
        .ok_or_else(|| em.timestamp_error("timestamp", &log.timestamp.to_string()))?;

    let headers: Vec<(Cow<'_, str>, &str)> = req
        .headers
        .iter()
        .flatten()
        .map(|h| {
            let name = lowercase(h.name.as_str());
            let value = if REDACTED_HEADERS.contains(&name.as_ref()) {
                REDACTED
            } else {
                opt(&h.value).unwrap_or_default()
            };
            (name, value)
        })
        .collect();
    let header = |want: &str| headers.iter().find(|(n, _)| n == want).map(|(_, v)| *v);
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_ref(), *v)).collect();

    let groups: Vec<&str> = log
        .rule_group_list
        .iter()
        .flatten()
        .filter(|g| {
            g.terminating_rule.is_some()
                || g.non_terminating_matching_rules
                    .as_ref()
                    .is_some_and(|r| !r.is_empty())
        })
        .filter_map(|g| opt(&g.rule_group_id))
        .collect();
    let labels: Vec<&str> = log
        .labels
        .iter()
        .flatten()
        .map(|l| l.name.as_str())
        .collect();
    let terminating_type = opt(&log.terminating_rule_type);
    let rate_based = if terminating_type == Some("RATE_BASED") {
        opt(&log.terminating_rule_id)
    } else {
        log.rate_based_rule_list
            .iter()
            .flatten()
            .find_map(|r| opt(&r.rate_based_rule_name).or(opt(&r.rate_based_rule_id)))
    };

    let action = log.action.as_str();
    let user_agent = header("user-agent");
    let row = EventRow {
        ts,
        action: Some(action),
        rule: opt(&log.terminating_rule_id),
        http_method: opt(&req.http_method),
        host: opt(&req.host).or_else(|| header("host")),
        uri: opt(&req.uri),
        status: log.response_code_sent,
        user_agent,
        request_id: opt(&req.request_id),
        waf_web_acl_id: opt(&log.webacl_id),
        waf_terminating_rule_type: terminating_type,
        waf_rule_groups: &groups,
        waf_labels: &labels,
        waf_rate_based_rule: rate_based,
        waf_args: opt(&req.args).filter(|a| !a.is_empty()),
        waf_http_source: opt(&log.http_source_name),
        waf_country: opt(&req.country).filter(|c| *c != "-" && !c.is_empty()),
        ja3: opt(&log.ja3_fingerprint),
        ja4: opt(&log.ja4_fingerprint),
        headers: Some(&header_refs),
        ..EventRow::default()
    };
    let signals = Signals {
        source: Source::Waf,
        waf_action: Some(action),
        terminating_rule_id: row.rule,
        terminating_rule_type: terminating_type,
        rule_groups: &groups,
        labels: &labels,
        rate_based_hit: rate_based.is_some(),
        user_agent,
        status: log.response_code_sent.and_then(|s| u16::try_from(s).ok()),
        ..Signals::default()
    };
    let blocked = action == "BLOCK";
    em.emit(
        out,
        raw,
        row,
        signals,
        Some(req.client_ip.as_str()),
        blocked,
    );
    Ok(())
}

fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}
