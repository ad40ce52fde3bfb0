//! Parsers: each format's fields land in the right columns; bad records are
//! rejected with a reason, never a panic.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use seclake_enrich::parse::{Enricher, ParseError, Parsed};
use seclake_enrich::schema::Event;
use seclake_enrich::threat::ThreatEngine;
use seclake_enrich::time_window::TimeWindow;
use seclake_ingest::{Flaw, Format};

/// Parses with no time window: the records here keep their own times.
fn parse(format: Format, lines: &[&[u8]]) -> Parsed {
    parse_at(TimeWindow::UNBOUNDED, 1_700_000_000_000_000, format, lines)
}

/// Parses as ingested at `ingest_ts` (µs), keeping events inside `window`.
fn parse_at(window: TimeWindow, ingest_ts: i64, format: Format, lines: &[&[u8]]) -> Parsed {
    let mut enricher = Enricher::new(None, Arc::new(ThreatEngine::defaults()), window);
    enricher
        .parse_records(format, lines.iter().map(|l| (*l, None)), ingest_ts)
        .expect("batch builds")
}

fn reasons(parsed: &Parsed) -> Vec<String> {
    parsed
        .rejects
        .iter()
        .map(|r| r.reason.to_string())
        .collect()
}

fn events(parsed: &Parsed) -> Vec<Event> {
    Event::from_batch(&parsed.events).expect("readable")
}

const WAF_BLOCK: &str = r#"{"timestamp":1732492800123,"formatVersion":1,"webaclId":"arn:aws:wafv2:ap-northeast-2:123456789012:regional/webacl/shop-prod/a1b2","terminatingRuleId":"AWS-AWSManagedRulesSQLiRuleSet","terminatingRuleType":"MANAGED_RULE_GROUP","action":"BLOCK","terminatingRuleMatchDetails":[{"conditionType":"SQL_INJECTION","location":"QUERY_STRING","matchedData":["1","or","1"]}],"httpSourceName":"ALB","httpSourceId":"123456789012-app/shop/abc","ruleGroupList":[{"ruleGroupId":"AWS#AWSManagedRulesCommonRuleSet","terminatingRule":null,"nonTerminatingMatchingRules":[],"excludedRules":null},{"ruleGroupId":"AWS#AWSManagedRulesSQLiRuleSet","terminatingRule":{"ruleId":"SQLi_QUERYARGUMENTS","action":"BLOCK","ruleMatchDetails":null},"nonTerminatingMatchingRules":[],"excludedRules":null}],"rateBasedRuleList":[],"nonTerminatingMatchingRules":[],"requestHeadersInserted":null,"responseCodeSent":403,"httpRequest":{"clientIp":"81.2.69.142","country":"GB","headers":[{"name":"Host","value":"shop.example.com"},{"name":"User-Agent","value":"sqlmap/1.7"},{"name":"Authorization","value":"Bearer secret-token"},{"name":"Cookie","value":"session=abc"}],"uri":"/products","args":"id=1%20or%201=1","httpVersion":"HTTP/1.1","httpMethod":"GET","requestId":"req-1"},"labels":[{"name":"awswaf:managed:aws:sql-database:SQLi_QueryArguments"}],"ja3Fingerprint":"e7d705a3286e19ea42f587b344ee6865"}"#;

#[test]
fn waf_fields_land_in_their_columns_and_secrets_are_redacted() {
    let parsed = parse(Format::Waf, &[WAF_BLOCK.as_bytes()]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    let e = &events(&parsed)[0];
    assert_eq!(e.source, "waf");
    assert_eq!(e.ts, 1_732_492_800_123_000);
    assert_eq!(e.client_ip.as_deref(), Some("81.2.69.142"));
    assert_eq!(e.action.as_deref(), Some("BLOCK"));
    assert_eq!(e.rule.as_deref(), Some("AWS-AWSManagedRulesSQLiRuleSet"));
    assert_eq!(
        e.waf_terminating_rule_type.as_deref(),
        Some("MANAGED_RULE_GROUP")
    );
    assert_eq!(
        e.waf_rule_groups,
        vec!["AWS#AWSManagedRulesSQLiRuleSet".to_owned()]
    );
    assert_eq!(
        e.waf_labels,
        vec!["awswaf:managed:aws:sql-database:SQLi_QueryArguments".to_owned()]
    );
    assert_eq!(e.status, Some(403));
    assert_eq!(e.host.as_deref(), Some("shop.example.com"));
    assert_eq!(e.user_agent.as_deref(), Some("sqlmap/1.7"));
    assert_eq!(e.waf_country.as_deref(), Some("GB"));
    assert_eq!(e.ja3.as_deref(), Some("e7d705a3286e19ea42f587b344ee6865"));
    let headers = e.headers.as_ref().expect("headers");
    assert!(headers.contains(&("authorization".into(), "[REDACTED]".into())));
    assert!(headers.contains(&("cookie".into(), "[REDACTED]".into())));
    assert!(headers.contains(&("user-agent".into(), "sqlmap/1.7".into())));
    assert!(e.threat_score > 0);
    assert!(!e.threat_reasons.is_empty());
    assert_eq!(e.event_id.len(), 32);
}

#[test]
fn waf_dash_country_is_null_and_ipv6_is_canonical() {
    let line = WAF_BLOCK
        .replace("\"country\":\"GB\"", "\"country\":\"-\"")
        .replace("81.2.69.142", "2001:0db8:0000:0000:0000:0000:0000:0001");
    let parsed = parse(Format::Waf, &[line.as_bytes()]);
    let e = &events(&parsed)[0];
    assert_eq!(e.waf_country, None);
    assert_eq!(e.client_ip.as_deref(), Some("2001:db8::1"));
    assert_eq!(e.ip_class.as_deref(), Some("documentation"));
}

#[test]
fn the_same_record_always_gets_the_same_id_and_another_record_another() {
    let other = WAF_BLOCK.replace("req-1", "req-2");
    let a = events(&parse(
        Format::Waf,
        &[WAF_BLOCK.as_bytes(), other.as_bytes()],
    ));
    let b = events(&parse(Format::Waf, &[WAF_BLOCK.as_bytes()]));
    assert_eq!(a[0].event_id, b[0].event_id);
    assert_ne!(a[0].event_id, a[1].event_id);
}

#[test]
fn falco_output_and_sidekick_payloads_parse() {
    let falco = br#"{"hostname":"ip-10-0-1-23","output":"Shell spawned","priority":"Critical","rule":"Terminal shell in container","source":"syscall","tags":["container","mitre_execution","shell","T1059"],"time":"2026-11-25T10:00:00.123456789Z","output_fields":{"container.id":"0123456789ab","container.image.repository":"shop/api","container.image.tag":"1.4.2","k8s.ns.name":"shop","k8s.pod.name":"api-7d9","proc.cmdline":"bash -i","proc.name":"bash","user.name":"root","evt.time":1764064800123456789}}"#;
    let sidekick = br#"{"uuid":"5b6a","output":"x","priority":"Debug","rule":"Read sensitive file untrusted","time":"2026-11-25T10:00:01.5Z","tags":["T1555.003"],"hostname":"node-2","source":"syscall"}"#;
    let parsed = parse(Format::Falco, &[falco, sidekick]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    let ev = events(&parsed);
    let e = &ev[0];
    assert_eq!(e.ts, 1_795_600_800_123_456);
    assert_eq!(e.rule.as_deref(), Some("Terminal shell in container"));
    assert_eq!(e.severity.as_deref(), Some("critical"));
    assert_eq!(e.falco_priority.as_deref(), Some("Critical"));
    assert_eq!(e.k8s_namespace.as_deref(), Some("shop"));
    assert_eq!(e.container_image.as_deref(), Some("shop/api:1.4.2"));
    assert_eq!(e.proc_cmdline.as_deref(), Some("bash -i"));
    assert_eq!(e.mitre_ids, vec!["T1059".to_owned()]);
    assert_eq!(ev[1].ts, 1_795_600_801_500_000);
    assert_eq!(ev[1].mitre_ids, vec!["T1555.003".to_owned()]);
    assert!(e.threat_score > ev[1].threat_score);
}

#[test]
fn app_access_log_parses_with_nanosecond_time() {
    let line = br#"{"ts":"2026-11-25T09:59:59.999999999Z","level":"INFO","service":"commerce-api","method":"POST","route":"/orders","path":"/orders","status":201,"latency_ms":12.5,"bytes":512,"client_ip":"89.160.20.112","user_agent":"Mozilla/5.0","user_id":"u-1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","request_id":"r-1","idempotency_key":"k-1","order_id":"o-1","amount_krw":45000,"error":null,"msg":"order created"}"#;
    let parsed = parse(Format::App, &[line]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    let e = &events(&parsed)[0];
    assert_eq!(e.ts, 1_795_600_799_999_999);
    assert_eq!(e.severity.as_deref(), Some("info"));
    assert_eq!(e.status, Some(201));
    assert_eq!(e.latency_ms, Some(12.5));
    assert_eq!(e.amount, Some(45000));
    assert_eq!(e.app_route.as_deref(), Some("/orders"));
    assert_eq!(e.order_id.as_deref(), Some("o-1"));
    assert_eq!(e.threat_level, "low");
}

/// The commerce API writes `seclake_format::app_log::AccessLog`; every field
/// it writes lands in its column here.
#[test]
fn the_commerce_apis_access_log_lands_in_every_app_column() {
    use seclake_format::app_log::AccessLog;
    let written = AccessLog {
        ts: "2026-12-07T04:01:02.345678Z",
        level: "warn",
        service: "commerce-api",
        method: "POST",
        route: Some("/api/v1/orders"),
        path: "/api/v1/orders",
        status: 409,
        latency_ms: 3.25,
        bytes: Some(210),
        client_ip: Some("89.160.20.112"),
        user_agent: Some("Vegeta/12"),
        user_id: Some("u-7"),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        request_id: "r-9",
        idempotency_key: Some("k-9"),
        order_id: Some("0193a0c4-7b1e-7000-8000-000000000001"),
        amount_krw: Some(5_380_000),
        error: Some("idempotency_key: already used"),
        msg: Some("conflict"),
    };
    let line = serde_json::to_vec(&written).unwrap();
    let parsed = parse(Format::App, &[&line]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    let e = &events(&parsed)[0];
    assert_eq!(e.ts, 1_796_616_062_345_678);
    assert_eq!(e.severity.as_deref(), Some("warn"));
    assert_eq!(e.app_service.as_deref(), Some("commerce-api"));
    assert_eq!(e.http_method.as_deref(), Some("POST"));
    assert_eq!(e.app_route.as_deref(), Some("/api/v1/orders"));
    assert_eq!(e.uri.as_deref(), Some("/api/v1/orders"));
    assert_eq!(e.status, Some(409));
    assert_eq!(e.latency_ms, Some(3.25));
    assert_eq!(e.bytes, Some(210));
    assert_eq!(e.client_ip.as_deref(), Some("89.160.20.112"));
    assert_eq!(e.user_agent.as_deref(), Some("Vegeta/12"));
    assert_eq!(e.user_id.as_deref(), Some("u-7"));
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(e.request_id.as_deref(), Some("r-9"));
    assert_eq!(e.idempotency_key.as_deref(), Some("k-9"));
    assert_eq!(
        e.order_id.as_deref(),
        Some("0193a0c4-7b1e-7000-8000-000000000001")
    );
    assert_eq!(e.amount, Some(5_380_000));
    assert_eq!(
        e.app_error.as_deref(),
        Some("idempotency_key: already used")
    );
    assert_eq!(e.message.as_deref(), Some("conflict"));
}

#[test]
fn numbers_and_escapes_read_as_loggers_write_them() {
    // An integer latency is a number too; escaped strings are unescaped.
    let app = br#"{"ts":"2026-11-25T10:00:00Z","method":"GET","status":200,"latency_ms":12,"path":"/a\"b\u00e9","msg":"tab\there"}"#;
    let e = &events(&parse(Format::App, &[app]))[0];
    assert_eq!(e.latency_ms, Some(12.0));
    assert_eq!(e.uri.as_deref(), Some("/a\"b\u{e9}"));
    assert_eq!(e.message.as_deref(), Some("tab\there"));
    // Falco's output_fields may hold numbers and booleans where text is stored.
    let falco = br#"{"time":"2026-11-25T10:00:00Z","rule":"r","priority":"Notice","output_fields":{"user.name":0,"proc.name":true,"k8s.ns.name":1.5,"container.id":18446744073709551615}}"#;
    let e = &events(&parse(Format::Falco, &[falco]))[0];
    assert_eq!(e.user_name.as_deref(), Some("0"));
    assert_eq!(e.proc_name.as_deref(), Some("true"));
    assert_eq!(e.k8s_namespace.as_deref(), Some("1.5"));
    assert_eq!(e.container_id.as_deref(), Some("18446744073709551615"));
}

#[test]
fn a_leaked_access_key_in_an_app_log_is_critical() {
    let line = br#"{"ts":"2026-11-25T10:00:00Z","method":"GET","status":500,"path":"/x","error":"s3 call failed with key AKIAIOSFODNN7EXAMPLE"}"#;
    let e = &events(&parse(Format::App, &[line]))[0];
    assert_eq!(e.threat_level, "critical");
    assert!(
        e.threat_reasons.iter().any(|r| r.contains("leaked")),
        "{:?}",
        e.threat_reasons
    );
}

#[test]
fn bad_records_are_rejected_with_a_reason_and_their_index() {
    let good = WAF_BLOCK.as_bytes();
    let lines: [&[u8]; 6] = [
        good,
        br#"{"timestamp":1732492800123,"action":"ALLOW","httpReq"#,
        b"GET / HTTP/1.1 garbage",
        b"{\"timestamp\":\"yesterday\",\"action\":\"ALLOW\",\"httpRequest\":{\"clientIp\":\"1.2.3.4\"}}",
        b"{}",
        b"{\"timestamp\":1,\"action\":\"\xff\xfe\",\"httpRequest\":{\"clientIp\":\"1.2.3.4\"}}",
    ];
    let parsed = parse(Format::Waf, &lines);
    assert_eq!(parsed.events.num_rows(), 1);
    let indexes: Vec<usize> = parsed.rejects.iter().map(|r| r.index).collect();
    assert_eq!(indexes, vec![1, 2, 3, 4, 5]);
    let reasons: Vec<String> = parsed
        .rejects
        .iter()
        .map(|r| r.reason.to_string())
        .collect();
    assert!(
        reasons.iter().all(|r| r.starts_with("invalid waf record")),
        "{reasons:?}"
    );
    assert!(matches!(parsed.rejects[0].reason, ParseError::Json { .. }));
    assert!(
        reasons[2].contains("field `timestamp` is not an integer"),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].contains("field `timestamp` is missing"),
        "{}",
        reasons[3]
    );
}

#[test]
fn a_bad_timestamp_string_is_rejected_naming_the_field() {
    let line = br#"{"ts":"not-a-time","method":"GET","status":200}"#;
    let parsed = parse(Format::App, &[line]);
    let reason = parsed.rejects[0].reason.to_string();
    assert!(
        reason.contains("`ts`") && reason.contains("not-a-time"),
        "{reason}"
    );
}

#[test]
fn truncated_records_are_rejected_without_parsing() {
    let mut enricher = Enricher::new(
        None,
        Arc::new(ThreatEngine::defaults()),
        TimeWindow::UNBOUNDED,
    );
    let parsed = enricher
        .parse_records(
            Format::Waf,
            [(WAF_BLOCK.as_bytes(), Some(Flaw::Truncated))].into_iter(),
            0,
        )
        .expect("batch builds");
    assert_eq!(
        parsed.rejects[0].reason,
        ParseError::Flawed(Flaw::Truncated)
    );
}

/// `WAF_BLOCK`'s time, 2024-11-25T00:00:00.123Z, in µs.
const WAF_BLOCK_TS: i64 = 1_732_492_800_123_000;
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

fn waf_block_with(from: &str, to: &str) -> Vec<u8> {
    assert!(WAF_BLOCK.contains(from), "{from}");
    WAF_BLOCK.replacen(from, to, 1).into_bytes()
}

#[test]
fn a_waf_client_ip_that_is_not_an_address_is_a_dead_letter() {
    let line = waf_block_with(r#""clientIp":"81.2.69.142""#, r#""clientIp":"not-an-ip""#);
    let parsed = parse(Format::Waf, &[&line]);
    assert_eq!(parsed.events.num_rows(), 0);
    assert_eq!(
        reasons(&parsed),
        ["invalid waf record: field `httpRequest.clientIp` is not an IP address: \"not-an-ip\""]
    );
}

#[test]
fn a_waf_client_ip_that_is_a_number_is_not_a_string() {
    let line = waf_block_with(r#""clientIp":"81.2.69.142""#, r#""clientIp":1359103374"#);
    let parsed = parse(Format::Waf, &[&line]);
    assert_eq!(
        reasons(&parsed),
        ["invalid waf record: field `httpRequest.clientIp` is not a string"]
    );
}

#[test]
fn a_waf_client_ip_with_surrounding_space_is_kept_trimmed() {
    let line = waf_block_with(
        r#""clientIp":"81.2.69.142""#,
        r#""clientIp":" 81.2.69.142 ""#,
    );
    let parsed = parse(Format::Waf, &[&line]);
    assert_eq!(events(&parsed)[0].client_ip.as_deref(), Some("81.2.69.142"));
}

#[test]
fn an_app_client_ip_that_is_not_an_address_leaves_the_event_without_one() {
    let line =
        br#"{"ts":"2026-11-25T10:00:00Z","method":"GET","status":200,"client_ip":"unknown"}"#;
    let parsed = parse(Format::App, &[line]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    let e = &events(&parsed)[0];
    assert_eq!(
        (e.client_ip.as_deref(), e.ip_class.as_deref()),
        (None, None)
    );
}

#[test]
fn a_far_future_event_is_a_dead_letter_naming_its_time_and_the_limit() {
    // 3000-01-01T00:00:00Z, in ms.
    let line = waf_block_with(
        r#""timestamp":1732492800123"#,
        r#""timestamp":32503680000000"#,
    );
    let parsed = parse_at(TimeWindow::default(), WAF_BLOCK_TS, Format::Waf, &[&line]);
    assert_eq!(parsed.events.num_rows(), 0);
    assert_eq!(
        reasons(&parsed),
        [
            "invalid waf record: event time 3000-01-01T00:00:00Z is 356147d 23h after ingest \
          (2024-11-25T00:00:00.123Z); the limit is pipeline.max_future_skew = 1h"
        ]
    );
}

#[test]
fn an_event_older_than_max_age_is_a_dead_letter() {
    let week = TimeWindow {
        max_age: Some(Duration::from_secs(7 * 86_400)),
        ..TimeWindow::default()
    };
    let ingest = WAF_BLOCK_TS + 7 * DAY_US + 1;
    let parsed = parse_at(week, ingest, Format::Waf, &[WAF_BLOCK.as_bytes()]);
    assert_eq!(
        reasons(&parsed),
        [
            "invalid waf record: event time 2024-11-25T00:00:00.123Z is 7d before ingest \
          (2024-12-02T00:00:00.123001Z); the limit is pipeline.max_age = 7d"
        ]
    );
}

#[test]
fn events_exactly_at_either_limit_are_kept() {
    let window = TimeWindow {
        max_future_skew: Duration::from_secs(3600),
        max_age: Some(Duration::from_secs(7 * 86_400)),
    };
    let line = WAF_BLOCK.as_bytes();
    let skewed = parse_at(window, WAF_BLOCK_TS - HOUR_US, Format::Waf, &[line]);
    let aged = parse_at(window, WAF_BLOCK_TS + 7 * DAY_US, Format::Waf, &[line]);
    assert_eq!(
        (skewed.events.num_rows(), aged.events.num_rows()),
        (1, 1),
        "{:?} {:?}",
        skewed.rejects,
        aged.rejects
    );
}

#[test]
fn without_max_age_old_events_are_kept() {
    let parsed = parse_at(
        TimeWindow::default(),
        WAF_BLOCK_TS + 3650 * DAY_US,
        Format::Waf,
        &[WAF_BLOCK.as_bytes()],
    );
    assert_eq!(parsed.events.num_rows(), 1, "{:?}", parsed.rejects);
}

#[test]
fn falco_and_app_events_are_held_to_the_window_too() {
    let falco = br#"{"time":"3000-01-01T00:00:00Z","rule":"r","priority":"Warning"}"#;
    let app = br#"{"ts":"3000-01-01T00:00:00Z","method":"GET","status":200}"#;
    let falco = parse_at(TimeWindow::default(), WAF_BLOCK_TS, Format::Falco, &[falco]);
    let app = parse_at(TimeWindow::default(), WAF_BLOCK_TS, Format::App, &[app]);
    for parsed in [falco, app] {
        assert!(
            matches!(
                parsed.rejects[..],
                [seclake_enrich::parse::Reject {
                    reason: ParseError::EventTime { .. },
                    ..
                }]
            ),
            "{:?}",
            parsed.rejects
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_parser_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
        for format in Format::ALL {
            let parsed = parse(format, &[&raw]);
            prop_assert_eq!(parsed.events.num_rows() + parsed.rejects.len(), 1);
        }
    }

    #[test]
    fn no_parser_panics_on_mutated_records(cut in 0usize..1400, byte in any::<u8>(), at in 0usize..1400) {
        let mut raw = WAF_BLOCK.as_bytes().to_vec();
        let at = at % raw.len();
        raw[at] = byte;
        raw.truncate(cut.max(1).min(raw.len()));
        for format in Format::ALL {
            let parsed = parse(format, &[&raw]);
            prop_assert_eq!(parsed.events.num_rows() + parsed.rejects.len(), 1);
        }
    }
}
