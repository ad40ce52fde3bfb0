//! GuardDuty findings: EventBridge events and bare findings land in the
//! event columns; the remote address comes from whichever action the
//! finding describes; findings without a time, or events that are not
//! findings, are dead letters that say why.

use std::sync::Arc;

use seclake_enrich::parse::{Enricher, Parsed};
use seclake_enrich::schema::Event;
use seclake_enrich::threat::ThreatEngine;
use seclake_enrich::time_window::TimeWindow;
use seclake_ingest::Format;
use serde_json::{Value, json};

fn parse(lines: &[Vec<u8>]) -> Parsed {
    let mut enricher = Enricher::new(
        None,
        Arc::new(ThreatEngine::defaults()),
        TimeWindow::UNBOUNDED,
    );
    enricher
        .parse_records(
            Format::GuardDuty,
            lines.iter().map(|l| (l.as_slice(), None)),
            1_700_000_000_000_000,
        )
        .expect("batch builds")
}

/// The one event `record` becomes; panics with the reason if it is rejected.
fn event(record: &Value) -> Event {
    let parsed = parse(&[record.to_string().into_bytes()]);
    assert!(parsed.rejects.is_empty(), "{:?}", parsed.rejects);
    Event::from_batch(&parsed.events)
        .expect("readable")
        .remove(0)
}

/// Why `record` was rejected; panics if it was not.
fn rejected(record: &Value) -> String {
    let parsed = parse(&[record.to_string().into_bytes()]);
    assert_eq!(parsed.events.num_rows(), 0, "{record}");
    parsed.rejects[0].reason.to_string()
}

/// An instance role's credentials used from outside AWS, as GuardDuty
/// reports it (trimmed to the fields that matter here).
fn exfiltration() -> Value {
    json!({
        "schemaVersion": "2.0",
        "accountId": "123456789012",
        "region": "ap-northeast-2",
        "partition": "aws",
        "id": "5eb2b0f6a1c84e7b9d3f1a2c4e6b8d0f",
        "arn": "arn:aws:guardduty:ap-northeast-2:123456789012:detector/a0f7/finding/5eb2b0f6a1c84e7b9d3f1a2c4e6b8d0f",
        "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS",
        "resource": {
            "resourceType": "AccessKey",
            "accessKeyDetails": {
                "accessKeyId": "ASIAQ4WZ7EXAMPLE2KEY",
                "principalId": "AROAQ4WZ7EXAMPLEROLE:i-0dff78a5fa75a13b2",
                "userName": "shop-web-role",
                "userType": "AssumedRole"
            }
        },
        "service": {
            "serviceName": "guardduty",
            "detectorId": "a0f7",
            "action": {
                "actionType": "AWS_API_CALL",
                "awsApiCallAction": {
                    "api": "ListBuckets",
                    "serviceName": "s3.amazonaws.com",
                    "callerType": "Remote IP",
                    "remoteIpDetails": {
                        "country": {"countryName": "Netherlands"},
                        "ipAddressV4": "198.51.100.23",
                        "organization": {"asn": "14061", "asnOrg": "DigitalOcean, LLC"}
                    },
                    "userAgent": "aws-cli/2.15.30 Python/3.11.8"
                }
            },
            "resourceRole": "TARGET",
            "eventFirstSeen": "2026-11-24T09:58:00Z",
            "eventLastSeen": "2026-11-24T10:00:00Z",
            "archived": false,
            "count": 3
        },
        "severity": 8,
        "createdAt": "2026-11-24T09:59:00.000Z",
        "updatedAt": "2026-11-24T10:00:01.250Z",
        "title": "Credentials for instance role shop-web-role used from external IP address.",
        "description": "Credentials created exclusively for an EC2 instance using instance role shop-web-role have been used from external IP address 198.51.100.23."
    })
}

/// `finding` as an EventBridge rule delivers it.
fn wrapped(finding: Value) -> Value {
    json!({
        "version": "0",
        "id": "193d5d2d-69a2-47bd-9c5d-6504f05454b5",
        "detail-type": "GuardDuty Finding",
        "source": "aws.guardduty",
        "account": "123456789012",
        "time": "2026-11-24T10:02:00Z",
        "region": "ap-northeast-2",
        "resources": [],
        "detail": finding
    })
}

/// A finding whose `service.action` is `action`.
fn with_action(action: Value) -> Value {
    let mut f = exfiltration();
    f["service"]["action"] = action;
    f
}

/// 2026-11-24T10:00:01.250Z in µs.
const UPDATED_AT: i64 = 1_795_600_801_250_000 - 86_400_000_000;

#[test]
fn an_eventbridge_finding_lands_in_its_columns() {
    let e = event(&wrapped(exfiltration()));
    assert_eq!(e.source, "guardduty");
    assert_eq!(e.ts, UPDATED_AT);
    assert_eq!(
        e.rule.as_deref(),
        Some("UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS")
    );
    assert_eq!(e.severity.as_deref(), Some("high"));
    assert_eq!(e.action.as_deref(), Some("AWS_API_CALL"));
    assert_eq!(e.client_ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(e.ip_class.as_deref(), Some("documentation"));
    assert_eq!(
        e.request_id.as_deref(),
        Some("5eb2b0f6a1c84e7b9d3f1a2c4e6b8d0f")
    );
    assert_eq!(
        e.message.as_deref(),
        Some("Credentials for instance role shop-web-role used from external IP address.")
    );
    assert_eq!(e.user_name.as_deref(), Some("shop-web-role"));
    assert_eq!(e.aws_access_key_id.as_deref(), Some("ASIAQ4WZ7EXAMPLE2KEY"));
    assert_eq!(
        e.user_agent.as_deref(),
        Some("aws-cli/2.15.30 Python/3.11.8")
    );
    // The finding's own geography is not GeoIP's.
    assert_eq!(e.country_iso, None);
    assert_eq!(e.threat_level, "high");
    assert_eq!(e.threat_reasons, ["guardduty.severity.high +60"]);
}

#[test]
fn a_bare_finding_parses_like_the_event_that_carries_it() {
    let bare = event(&exfiltration());
    let event = event(&wrapped(exfiltration()));
    assert_ne!(bare.event_id, event.event_id, "different records");
    assert_eq!(
        Event {
            event_id: String::new(),
            ..bare
        },
        Event {
            event_id: String::new(),
            ..event
        }
    );
}

#[test]
fn the_remote_address_comes_from_whichever_action_the_finding_describes() {
    let remote = |ip: &str| json!({"ipAddressV4": ip, "country": {"countryName": "China"}});
    let cases = [
        (
            json!({"actionType": "NETWORK_CONNECTION", "networkConnectionAction": {
                "connectionDirection": "INBOUND", "remoteIpDetails": remote("203.0.113.1"),
                "localPortDetails": {"port": 22, "portName": "SSH"}, "protocol": "TCP", "blocked": false}}),
            "203.0.113.1",
        ),
        (
            json!({"actionType": "AWS_API_CALL", "awsApiCallAction": {
                "api": "ListUsers", "remoteIpDetails": remote("203.0.113.2")}}),
            "203.0.113.2",
        ),
        (
            json!({"actionType": "PORT_PROBE", "portProbeAction": {"blocked": false, "portProbeDetails": [
                {"localPortDetails": {"port": 3389, "portName": "RDP"}, "remoteIpDetails": remote("203.0.113.3")},
                {"localPortDetails": {"port": 22, "portName": "SSH"}, "remoteIpDetails": remote("203.0.113.99")}]}}),
            "203.0.113.3",
        ),
        (
            json!({"actionType": "RDS_LOGIN_ATTEMPT", "rdsLoginAttemptAction": {
                "remoteIpDetails": remote("203.0.113.4"),
                "loginAttributes": [{"user": "postgres", "failedLoginAttempts": 12}]}}),
            "203.0.113.4",
        ),
        (
            json!({"actionType": "KUBERNETES_API_CALL", "kubernetesApiCallAction": {
                "requestUri": "/api/v1/namespaces/shop/secrets", "verb": "list",
                "userAgent": "kubectl/v1.30.2", "remoteIpDetails": remote("203.0.113.5")}}),
            "203.0.113.5",
        ),
    ];
    for (action, ip) in cases {
        let kind = action["actionType"].as_str().unwrap().to_owned();
        let e = event(&wrapped(with_action(action)));
        assert_eq!(e.client_ip.as_deref(), Some(ip), "{kind}");
        assert_eq!(e.action.as_deref(), Some(kind.as_str()));
    }
}

#[test]
fn an_ipv6_remote_address_is_kept_in_canonical_form() {
    let e = event(&with_action(json!({
        "actionType": "NETWORK_CONNECTION",
        "networkConnectionAction": {
            "connectionDirection": "INBOUND",
            "remoteIpDetails": {"ipAddressV6": "2001:0db8:0000:0000:0000:0000:0000:0042"}
        }
    })));
    assert_eq!(e.client_ip.as_deref(), Some("2001:db8::42"));
}

#[test]
fn findings_without_a_usable_remote_address_keep_everything_else() {
    let dns = event(&with_action(json!({
        "actionType": "DNS_REQUEST",
        "dnsRequestAction": {"domain": "xmr.pool.minergate.com", "protocol": "UDP", "blocked": false}
    })));
    assert_eq!(dns.action.as_deref(), Some("DNS_REQUEST"));
    assert_eq!((dns.client_ip, dns.ip_class), (None, None));
    assert_eq!(dns.severity.as_deref(), Some("high"));

    let garbled = event(&with_action(json!({
        "actionType": "AWS_API_CALL",
        "awsApiCallAction": {"remoteIpDetails": {"ipAddressV4": "not-an-address"}}
    })));
    assert_eq!(garbled.client_ip, None);
    assert_eq!(garbled.action.as_deref(), Some("AWS_API_CALL"));
}

#[test]
fn severity_labels_change_at_guardduty_range_boundaries() {
    for (score, label) in [
        (json!(3.9), "low"),
        (json!(4.0), "medium"),
        (json!(6.9), "medium"),
        (json!(7.0), "high"),
        (json!(8.9), "high"),
        (json!(9.0), "critical"),
        (json!(2), "low"),
    ] {
        let mut f = exfiltration();
        f["severity"] = score.clone();
        let e = event(&wrapped(f));
        assert_eq!(e.severity.as_deref(), Some(label), "severity {score}");
        assert_eq!(
            e.threat_reasons,
            [format!(
                "guardduty.severity.{label} +{}",
                [10, 30, 60, 90][["low", "medium", "high", "critical"]
                    .iter()
                    .position(|l| *l == label)
                    .unwrap()]
            )]
        );
    }
}

#[test]
fn a_critical_finding_with_a_remote_address_is_critical_with_its_reason() {
    let mut f = exfiltration();
    f["severity"] = json!(9.2);
    let e = event(&wrapped(f));
    assert_eq!(e.severity.as_deref(), Some("critical"));
    assert_eq!(e.threat_level, "critical");
    assert_eq!(e.threat_score, 90);
    assert_eq!(e.threat_reasons, ["guardduty.severity.critical +90"]);
    assert_eq!(e.client_ip.as_deref(), Some("198.51.100.23"));
}

#[test]
fn without_updated_at_the_time_is_the_last_sighting_then_the_event_time() {
    let mut f = exfiltration();
    f.as_object_mut().unwrap().remove("updatedAt");
    assert_eq!(
        event(&wrapped(f.clone())).ts,
        UPDATED_AT - 1_250_000,
        "service.eventLastSeen"
    );
    f["service"]
        .as_object_mut()
        .unwrap()
        .remove("eventLastSeen");
    assert_eq!(
        event(&wrapped(f)).ts,
        UPDATED_AT + 118_750_000,
        "the event's time"
    );
}

#[test]
fn a_finding_without_any_time_is_a_dead_letter_naming_the_fields_looked_at() {
    let mut f = exfiltration();
    f.as_object_mut().unwrap().remove("updatedAt");
    f["service"]
        .as_object_mut()
        .unwrap()
        .remove("eventLastSeen");
    assert_eq!(
        rejected(&f),
        "invalid guardduty record: field `updatedAt` is missing, and so is `service.eventLastSeen`"
    );
    let mut event = wrapped(f);
    event.as_object_mut().unwrap().remove("time");
    assert_eq!(
        rejected(&event),
        "invalid guardduty record: field `detail.updatedAt` is missing, and so are \
         `detail.service.eventLastSeen` and `time`"
    );
}

#[test]
fn a_bad_time_is_a_dead_letter_naming_its_field() {
    let mut f = exfiltration();
    f["updatedAt"] = json!("yesterday");
    let reason = rejected(&wrapped(f.clone()));
    assert!(
        reason.contains("`detail.updatedAt` is not a valid timestamp: \"yesterday\""),
        "{reason}"
    );
    f["updatedAt"] = json!(1795478416);
    assert_eq!(
        rejected(&f),
        "invalid guardduty record: field `updatedAt` is not a string"
    );
}

#[test]
fn another_eventbridge_event_is_a_dead_letter_naming_its_detail_type() {
    let mut other = wrapped(json!({"resourceType": "EKS", "status": "UNHEALTHY"}));
    other["detail-type"] = json!("GuardDuty Runtime Protection Unhealthy");
    assert_eq!(
        rejected(&other),
        "invalid guardduty record: field `detail-type` is \"GuardDuty Runtime Protection \
         Unhealthy\", not \"GuardDuty Finding\""
    );
}

#[test]
fn a_finding_needs_its_type_and_a_severity_from_0_to_10() {
    let mut f = exfiltration();
    f.as_object_mut().unwrap().remove("type");
    assert_eq!(
        rejected(&wrapped(f)),
        "invalid guardduty record: field `detail.type` is missing"
    );
    let mut f = exfiltration();
    f["severity"] = json!("HIGH");
    assert_eq!(
        rejected(&f),
        "invalid guardduty record: field `severity` is not a number"
    );
    f["severity"] = json!(11);
    assert_eq!(
        rejected(&f),
        "invalid guardduty record: field `severity` is 11, not a severity from 0 to 10"
    );
    let mut event = wrapped(exfiltration());
    event["detail"] = json!([]);
    assert_eq!(
        rejected(&event),
        "invalid guardduty record: field `detail` is not an object"
    );
}

#[test]
fn archived_findings_are_still_events() {
    let mut f = exfiltration();
    f["service"]["archived"] = json!(true);
    let e = event(&wrapped(f));
    assert_eq!(e.severity.as_deref(), Some("high"));
    assert_eq!(e.threat_level, "high");
}

#[test]
fn an_instance_finding_names_the_instance() {
    let mut f = with_action(json!({
        "actionType": "PORT_PROBE",
        "portProbeAction": {"portProbeDetails": [{"remoteIpDetails": {"ipAddressV4": "203.0.113.9"}}]}
    }));
    f["type"] = json!("Recon:EC2/PortProbeUnprotectedPort");
    f["severity"] = json!(2);
    f["resource"] = json!({
        "resourceType": "Instance",
        "instanceDetails": {"instanceId": "i-0dff78a5fa75a13b2", "instanceType": "m6i.large"}
    });
    let e = event(&wrapped(f));
    assert_eq!(e.hostname.as_deref(), Some("i-0dff78a5fa75a13b2"));
    assert_eq!((e.user_name, e.aws_access_key_id), (None, None));
    assert_eq!(e.threat_level, "low");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

    #[test]
    fn a_damaged_finding_is_an_event_or_a_dead_letter_never_a_panic(
        cut in 0usize..2000,
        byte in proptest::prelude::any::<u8>(),
        at in 0usize..2000,
    ) {
        let mut raw = wrapped(exfiltration()).to_string().into_bytes();
        let at = at % raw.len();
        raw[at] = byte;
        raw.truncate(cut.max(1).min(raw.len()));
        let parsed = parse(&[raw]);
        proptest::prop_assert_eq!(parsed.events.num_rows() + parsed.rejects.len(), 1);
    }
}
