//! AWS WAF v2 web ACL traffic log records.
//!
//! Field names follow AWS's "Log fields for web ACL traffic"; fields seclake
//! does not store are never looked at, and unknown ones are ignored.

use seclake_format::Format;
use simd_json::prelude::{TypedScalarValue as _, ValueIntoString as _};

use smallvec::SmallVec;

use super::json::{self, FieldError, Json, elements};
use super::{ClientIp, ParseError, Record, address_error, field_error, timestamp_error};
use crate::schema::EventRow;
use crate::threat::Signals;

/// Header names whose values never reach the lake.
const REDACTED_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];
const REDACTED: &str = "[REDACTED]";

/// Reads one record, already parsed into the JSON object `value`, and hands
/// it to `emit`. `names` is a buffer for the lowercased header names.
pub(super) fn parse(
    value: Json<'_>,
    names: &mut String,
    emit: impl FnOnce(Record<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    // One pass over each object: looking fields up one by one rescans the
    // keys every time, which cost more than the parse itself on WAF records.
    let log = WafFields::read(value);
    let req = log.http_request.map(HttpRequest::read).unwrap_or_default();
    let required = (|| {
        let ts_ms = json::required_i64(log.timestamp, "timestamp")?;
        let action = json::required_str(log.action, "action")?;
        if !json::required(log.http_request, "httpRequest")?.is_object() {
            return Err(FieldError::Type("httpRequest", "an object"));
        }
        let client_ip = json::required_str(req.client_ip, "httpRequest.clientIp")?;
        let status = json::opt_i64(log.response_code_sent, "responseCodeSent")?;
        Ok((ts_ms, action, client_ip, status))
    })();
    let (ts_ms, action, client_ip, status) = required.map_err(|e| field_error(Format::Waf, e))?;
    let ts = ts_ms
        .checked_mul(1000)
        .ok_or_else(|| timestamp_error(Format::Waf, "timestamp", &ts_ms.to_string()))?;
    // AWS takes the address from the connection, so one that does not parse
    // means a damaged or forged record, not a client without an address.
    let client_ip = ClientIp::parse(client_ip)
        .ok_or_else(|| address_error(Format::Waf, "httpRequest.clientIp", client_ip))?;

    // Header names are lowercased into one buffer, reused across records.
    names.clear();
    let mut spans: SmallVec<[(usize, &str); 16]> = SmallVec::new();
    for h in elements(req.headers) {
        let Some(h) = h.as_object() else { continue };
        let (mut name, mut value) = (None, None);
        for (key, v) in h.iter() {
            match key {
                "name" => name = v.into_string(),
                "value" => value = v.into_string(),
                _ => {}
            }
        }
        if let Some(name) = name {
            let start = names.len();
            names.push_str(name);
            names[start..].make_ascii_lowercase();
            spans.push((names.len(), value.unwrap_or_default()));
        }
    }
    let mut start = 0;
    let header_refs: SmallVec<[(&str, &str); 16]> = spans
        .iter()
        .map(|&(end, value)| {
            let name = &names[start..end];
            start = end;
            let value = if REDACTED_HEADERS.contains(&name) {
                REDACTED
            } else {
                value
            };
            (name, value)
        })
        .collect();
    let header = |want: &str| {
        header_refs
            .iter()
            .find(|(n, _)| *n == want)
            .map(|(_, v)| *v)
    };

    let mut groups: SmallVec<[&str; 8]> = SmallVec::new();
    for g in elements(log.rule_group_list) {
        let Some(g) = g.as_object() else { continue };
        let (mut id, mut matched) = (None, false);
        for (key, v) in g.iter() {
            match key {
                "ruleGroupId" => id = v.into_string(),
                "terminatingRule" => matched |= !v.is_null(),
                "nonTerminatingMatchingRules" => {
                    matched |= v.as_array().is_some_and(|r| !r.is_empty());
                }
                _ => {}
            }
        }
        if let (true, Some(id)) = (matched, id) {
            groups.push(id);
        }
    }
    let labels: SmallVec<[&str; 8]> = elements(log.labels)
        .filter_map(|l| json::str(l, "name"))
        .collect();
    let terminating_id = log.terminating_rule_id;
    let terminating_type = log.terminating_rule_type;
    let rate_based = if terminating_type == Some("RATE_BASED") {
        terminating_id
    } else {
        elements(log.rate_based_rule_list).find_map(|r| {
            json::str(r, "rateBasedRuleName").or_else(|| json::str(r, "rateBasedRuleId"))
        })
    };
    let status = status.and_then(|s| i32::try_from(s).ok());
    let user_agent = header("user-agent");
    let row = EventRow {
        ts,
        action: Some(action),
        rule: terminating_id,
        http_method: req.http_method,
        host: req.host.or_else(|| header("host")),
        uri: req.uri,
        status,
        user_agent,
        request_id: req.request_id,
        waf_web_acl_id: log.webacl_id,
        waf_terminating_rule_type: terminating_type,
        waf_rule_groups: &groups,
        waf_labels: &labels,
        waf_rate_based_rule: rate_based,
        waf_args: req.args.filter(|a| !a.is_empty()),
        waf_http_source: log.http_source_name,
        waf_country: req.country.filter(|c| *c != "-" && !c.is_empty()),
        ja3: log.ja3,
        ja4: log.ja4,
        headers: Some(&header_refs),
        ..EventRow::default()
    };
    let signals = Signals {
        format: Format::Waf,
        waf_action: Some(action),
        terminating_rule_id: terminating_id,
        terminating_rule_type: terminating_type,
        rule_groups: &groups,
        labels: &labels,
        rate_based_hit: rate_based.is_some(),
        user_agent,
        status: status.and_then(|s| u16::try_from(s).ok()),
        ..Signals::default()
    };
    emit(Record {
        row,
        signals,
        client_ip: Some(client_ip),
        blocked: action == "BLOCK",
    })
}

json::object_fields! {
    /// The top-level fields seclake reads.
    struct WafFields {
        timestamp: value = "timestamp",
        action: value = "action",
        http_request: value = "httpRequest",
        response_code_sent: value = "responseCodeSent",
        webacl_id: str = "webaclId",
        terminating_rule_id: str = "terminatingRuleId",
        terminating_rule_type: str = "terminatingRuleType",
        http_source_name: str = "httpSourceName",
        rule_group_list: value = "ruleGroupList",
        rate_based_rule_list: value = "rateBasedRuleList",
        labels: value = "labels",
        ja3: str = "ja3Fingerprint",
        ja4: str = "ja4Fingerprint",
    }
}

json::object_fields! {
    /// The `httpRequest` fields seclake reads.
    struct HttpRequest {
        client_ip: value = "clientIp",
        country: str = "country",
        headers: value = "headers",
        uri: str = "uri",
        args: str = "args",
        http_method: str = "httpMethod",
        request_id: str = "requestId",
        host: str = "host",
    }
}
