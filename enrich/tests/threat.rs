//! Stateless threat rules, rules files and intel lists.
//! Wrapped in a module so that `cargo test threat` selects these tests.

mod threat_rules {
    use std::net::IpAddr;
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;
    use seclake_enrich::threat::{
        Assessment, IntelListConfig, Signals, ThreatConfig, ThreatEngine, ThreatError, ThreatLevel,
        UaVerdicts,
    };
    use seclake_ingest::Format;

    fn reasons(a: &Assessment) -> Vec<String> {
        a.reasons.iter().map(ToString::to_string).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An engine with `rules` (a user rules file) merged over the defaults.
    fn engine_with(rules: &str) -> ThreatEngine {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ThreatConfig {
            rules: Some(write(dir.path(), "rules.toml", rules)),
            intel: Vec::new(),
        };
        ThreatEngine::from_config(&cfg).unwrap()
    }

    fn rules_error(rules: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ThreatConfig {
            rules: Some(write(dir.path(), "my-rules.toml", rules)),
            intel: Vec::new(),
        };
        let err = ThreatEngine::from_config(&cfg).unwrap_err().to_string();
        assert!(err.contains("my-rules.toml"), "{err}");
        err
    }

    fn ua(engine: &ThreatEngine, user_agent: &str) -> Vec<String> {
        reasons(&engine.assess(&Signals {
            user_agent: Some(user_agent),
            ..Signals::default()
        }))
    }

    #[test]
    fn default_rules_parse_and_benign_events_score_zero_without_allocating() {
        let engine = ThreatEngine::defaults();
        let from_cfg = ThreatEngine::from_config(&ThreatConfig::default()).unwrap();
        for e in [&engine, &from_cfg] {
            let a = e.assess(&Signals::default());
            assert_eq!(a, Assessment::default());
            assert_eq!(a.reasons.capacity(), 0);
            let benign = e.assess(&Signals {
                format: Format::App,
                client_ip: Some(ip("198.51.100.7")),
                user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"),
                status: Some(200),
                text: br#"{"path":"/index.html","status":200}"#,
                ..Signals::default()
            });
            assert_eq!(benign.score, 0);
            assert_eq!(benign.reasons.capacity(), 0);
        }
        assert_eq!(engine.level_for(0), ThreatLevel::Low);
        assert_eq!(engine.level_for(24), ThreatLevel::Low);
        assert_eq!(engine.level_for(25), ThreatLevel::Medium);
        assert_eq!(engine.level_for(50), ThreatLevel::High);
        assert_eq!(engine.level_for(80), ThreatLevel::Critical);
        assert_eq!(engine.level_for(100), ThreatLevel::Critical);
        assert_eq!(ThreatLevel::Critical.as_str(), "critical");
    }

    #[test]
    fn engine_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ThreatEngine>();
    }

    #[test]
    fn waf_block_by_sqli_group_scores_higher_than_allow() {
        let e = ThreatEngine::defaults();
        let groups = ["AWS#AWSManagedRulesSQLiRuleSet"];
        let block = e.assess(&Signals {
            waf_action: Some("BLOCK"),
            terminating_rule_id: Some("AWS-AWSManagedRulesSQLiRuleSet"),
            terminating_rule_type: Some("MANAGED_RULE_GROUP"),
            rule_groups: &groups,
            ..Signals::default()
        });
        let allow = e.assess(&Signals {
            waf_action: Some("ALLOW"),
            ..Signals::default()
        });
        assert_eq!(
            reasons(&block),
            ["waf.action.block +30", "waf.group.sqli +25"]
        );
        assert_eq!((block.score, block.level), (55, ThreatLevel::High));
        assert_eq!(allow, Assessment::default());
        assert!(block.score > allow.score);
    }

    #[test]
    fn waf_groups_match_whole_segments_or_the_terminating_rule() {
        let e = ThreatEngine::defaults();
        let group = |g: &str| {
            let groups = [g];
            reasons(&e.assess(&Signals {
                rule_groups: &groups,
                ..Signals::default()
            }))
        };
        assert_eq!(
            group("AWS#AWSManagedRulesSQLiRuleSet#Version_2.0"),
            ["waf.group.sqli +25"]
        );
        assert_eq!(
            group("AWSManagedRulesKnownBadInputsRuleSet"),
            ["waf.group.known_bad_inputs +25"]
        );
        assert_eq!(
            group("AWS#AWSManagedRulesAmazonIpReputationList"),
            ["waf.group.ip_reputation +20"]
        );
        assert!(group("AWS#AWSManagedRulesSQLiRuleSetX").is_empty());
        assert!(group("MyOwnGroup").is_empty());
        let by_terminating = e.assess(&Signals {
            terminating_rule_id: Some("AWS-AWSManagedRulesKnownBadInputsRuleSet"),
            ..Signals::default()
        });
        assert_eq!(reasons(&by_terminating), ["waf.group.known_bad_inputs +25"]);
    }

    #[test]
    fn waf_labels_fire() {
        let e = ThreatEngine::defaults();
        let labels = [
            "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body",
            "awswaf:managed:aws:core-rule-set:CrossSiteScripting_QueryArguments",
            "awswaf:managed:aws:known-bad-inputs:Log4JRCE_Header",
        ];
        let a = e.assess(&Signals {
            labels: &labels,
            ..Signals::default()
        });
        assert_eq!(reasons(&a), ["waf.label.log4j +30", "waf.label.xss +25"]);
        assert_eq!(a.level, ThreatLevel::High);
        let other = [
            "awswaf:managed:aws:sql-database:SQLi_QueryArguments",
            "mylabel:xss",
        ];
        assert!(
            e.assess(&Signals {
                labels: &other,
                ..Signals::default()
            })
            .reasons
            .is_empty()
        );
    }

    #[test]
    fn rate_based_hit_fires() {
        let e = ThreatEngine::defaults();
        let hit = e.assess(&Signals {
            rate_based_hit: true,
            ..Signals::default()
        });
        assert_eq!(reasons(&hit), ["waf.rate_based +20"]);
        let terminated = e.assess(&Signals {
            waf_action: Some("BLOCK"),
            terminating_rule_type: Some("RATE_BASED"),
            ..Signals::default()
        });
        assert_eq!(
            reasons(&terminated),
            ["waf.action.block +30", "waf.rate_based +20"]
        );
    }

    #[test]
    fn scanner_user_agents_match_case_insensitively() {
        let e = ThreatEngine::defaults();
        for agent in [
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
            "SQLMAP/1.0",
            "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Nuclei",
            "Mozilla/5.0 zgrab/0.x",
            "Fuzz Faster U Fool v2.1.0-dev",
            "gobuster/3.6",
            "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
            "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
            "masscan/1.3",
            "DirBuster-1.0-RC1",
        ] {
            assert_eq!(ua(&e, agent), ["ua.scanner +25"], "{agent}");
        }
        for agent in [
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 Safari/605.1.15",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0 Safari/537.36",
            "curl/8.5.0",
            "",
            "s",
            "sqlma",
        ] {
            assert!(ua(&e, agent).is_empty(), "{agent}");
        }
    }

    #[test]
    fn cached_user_agent_verdicts_are_the_uncached_ones() {
        let e = ThreatEngine::defaults();
        let mut cache = UaVerdicts::new();
        let agents = [
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0.0.0 Safari/537.36",
            "masscan/1.3",
            "",
            "curl/8.5.0",
        ];
        // Repeats hit the cache; a thousand distinct agents evict entries.
        let many: Vec<String> = (0..1000).map(|i| format!("agent-{i} nikto")).collect();
        let all = agents
            .iter()
            .copied()
            .chain(many.iter().map(String::as_str))
            .chain(agents.iter().copied())
            .chain(agents.iter().copied());
        for agent in all {
            let s = Signals {
                format: Format::Waf,
                user_agent: Some(agent),
                ..Signals::default()
            };
            assert_eq!(e.assess_cached(&s, &mut cache), e.assess(&s), "{agent}");
        }
    }

    #[test]
    fn falco_priority_and_mitre_tags() {
        let e = ThreatEngine::defaults();
        let tags = ["container", "mitre_privilege_escalation", "T1611"];
        let critical = e.assess(&Signals {
            format: Format::Falco,
            falco_priority: Some("Critical"),
            falco_tags: &tags,
            ..Signals::default()
        });
        assert_eq!(
            reasons(&critical),
            [
                "falco.priority.critical +50",
                "falco.tag.mitre_privilege_escalation +25"
            ]
        );
        assert_eq!(critical.level, ThreatLevel::High);

        let debug = e.assess(&Signals {
            format: Format::Falco,
            falco_priority: Some("Debug"),
            falco_tags: &["host"],
            ..Signals::default()
        });
        assert_eq!((debug.score, debug.level), (0, ThreatLevel::Low));

        let shouting = e.assess(&Signals {
            falco_priority: Some("EMERGENCY"),
            ..Signals::default()
        });
        assert_eq!(reasons(&shouting), ["falco.priority.emergency +70"]);
        let info = e.assess(&Signals {
            falco_priority: Some("Info"),
            ..Signals::default()
        });
        assert!(info.reasons.is_empty());
    }

    #[test]
    fn guardduty_findings_score_by_their_severity_label() {
        let e = ThreatEngine::defaults();
        let finding = |label| {
            e.assess(&Signals {
                format: Format::GuardDuty,
                guardduty_severity: Some(label),
                ..Signals::default()
            })
        };
        let critical = finding("critical");
        assert_eq!(reasons(&critical), ["guardduty.severity.critical +90"]);
        assert_eq!(
            (critical.score, critical.level),
            (90, ThreatLevel::Critical)
        );
        let high = finding("high");
        assert_eq!(reasons(&high), ["guardduty.severity.high +60"]);
        assert_eq!(high.level, ThreatLevel::High);
        assert_eq!(finding("medium").level, ThreatLevel::Medium);
        assert_eq!(reasons(&finding("low")), ["guardduty.severity.low +10"]);
        assert_eq!(finding("low").level, ThreatLevel::Low);
    }

    #[test]
    fn guardduty_levels_hold_when_the_thresholds_rise() {
        let e = engine_with("[levels]\nmedium = 40\nhigh = 70\ncritical = 95\n");
        let level = |label| {
            e.assess(&Signals {
                guardduty_severity: Some(label),
                ..Signals::default()
            })
            .level
        };
        assert_eq!(level("critical"), ThreatLevel::Critical);
        assert_eq!(level("high"), ThreatLevel::High);
        assert_eq!(level("medium"), ThreatLevel::Low);
    }

    #[test]
    fn leaked_aws_key_in_app_text_is_critical() {
        let e = ThreatEngine::defaults();
        let app = |text: &[u8]| {
            e.assess(&Signals {
                format: Format::App,
                text,
                ..Signals::default()
            })
        };
        let leaked = app(br#"{"msg":"using key AKIAIOSFODNN7EXAMPLE for s3","status":200}"#);
        assert_eq!(reasons(&leaked), ["app.leaked_aws_key +100"]);
        assert_eq!((leaked.score, leaked.level), (100, ThreatLevel::Critical));

        for hit in [
            &b"ASIAY34FZKBOKMUTVV7A"[..],
            b"key=AKIA0123456789ABCDEF&x=1",
            br#"{"msg":"creds:\nAKIAIOSFODNN7EXAMPLE"}"#,
        ] {
            assert_eq!(
                reasons(&app(hit)),
                ["app.leaked_aws_key +100"],
                "{}",
                String::from_utf8_lossy(hit)
            );
        }
        for miss in [
            &b"ABCDEFGHIJKLMNOPQRST"[..],
            b"AKIAiosfodnn7example",
            b"AKIAIOSFODNN7EXAMPL",
            b"AKIAIOSFODNN7EXAMPLEX",
            b"xAKIAIOSFODNN7EXAMPLE",
            b"AKIAIOSFODNN7EXAMPLE_1",
            b"AKIA",
            b"",
        ] {
            assert!(
                app(miss).reasons.is_empty(),
                "{}",
                String::from_utf8_lossy(miss)
            );
        }
        let waf = e.assess(&Signals {
            format: Format::Waf,
            text: b"AKIAIOSFODNN7EXAMPLE",
            ..Signals::default()
        });
        assert!(waf.reasons.is_empty());
    }

    #[test]
    fn app_status_rule_applies_to_app_logs_only() {
        let e = ThreatEngine::defaults();
        let app = e.assess(&Signals {
            format: Format::App,
            status: Some(401),
            ..Signals::default()
        });
        assert_eq!(reasons(&app), ["app.status.401 +5"]);
        let waf = e.assess(&Signals {
            status: Some(401),
            ..Signals::default()
        });
        assert!(waf.reasons.is_empty());
    }

    const FIREHOL: &str = "\
#
# firehol_level1
#
# Maintainer      : FireHOL
# Entries         : a few
#
10.0.0.0/8
10.0.0.0/16
10.20.0.0/16
192.168.1.7
172.16.0.0/12
203.0.113.0/25
203.0.113.128/25
198.51.100.10-198.51.100.20
2001:db8::/32
2001:db8:ffff::/48
2a00:1450::1
   \t
";

    const SPAMHAUS: &str = "\
; Spamhaus DROP List 2024/05/01 - (c) 2024 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Wed, 01 May 2024 10:00:00 GMT
1.10.16.0/20 ; SBL256894
10.0.0.0/24 ; SBL1
192.0.2.0/24 ; SBL2
2c0f:fc00::/32 ; SBL3
{\"cidr\":\"100.64.0.0/10\",\"sblid\":\"SBL4\",\"rir\":\"arin\"}
{\"type\":\"metadata\",\"timestamp\":1714557600,\"size\":2,\"records\":1}
";

    fn intel_engine(dir: &Path) -> ThreatEngine {
        let cfg = ThreatConfig {
            rules: None,
            intel: vec![
                IntelListConfig {
                    name: "firehol_level1".into(),
                    path: write(dir, "firehol_level1.netset", FIREHOL),
                    points: None,
                },
                IntelListConfig {
                    name: "spamhaus_drop".into(),
                    path: write(dir, "drop.txt", SPAMHAUS),
                    points: Some(40),
                },
            ],
        };
        ThreatEngine::from_config(&cfg).unwrap()
    }

    #[test]
    fn intel_lists_match_range_edges_and_reject_neighbours() {
        let dir = tempfile::tempdir().unwrap();
        let e = intel_engine(dir.path());
        assert_eq!(e.intel_lists(), 2);
        let hits = |addr: &str| {
            reasons(&e.assess(&Signals {
                client_ip: Some(ip(addr)),
                ..Signals::default()
            }))
        };
        let firehol = ["intel.firehol_level1 +30"];
        for addr in [
            "10.255.255.255",
            "192.168.1.7",
            "172.16.0.0",
            "172.31.255.255",
            "203.0.113.0",
            "203.0.113.127",
            "203.0.113.128",
            "203.0.113.255",
            "198.51.100.10",
            "198.51.100.20",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "2a00:1450::1",
        ] {
            assert_eq!(hits(addr), firehol, "{addr}");
        }
        for addr in [
            "9.255.255.255",
            "11.0.0.0",
            "192.168.1.6",
            "192.168.1.8",
            "172.15.255.255",
            "172.32.0.0",
            "203.0.112.255",
            "203.0.114.0",
            "198.51.100.9",
            "198.51.100.21",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2a00:1450::",
            "2a00:1450::2",
            "1.9.255.255",
            "1.10.32.0",
            "100.63.255.255",
            "100.128.0.0",
        ] {
            assert!(hits(addr).is_empty(), "{addr}");
        }
        let spamhaus = ["intel.spamhaus_drop +40"];
        for addr in [
            "1.10.16.0",
            "1.10.31.255",
            "192.0.2.255",
            "2c0f:fc00::1",
            "100.64.0.0",
            "100.127.255.255",
        ] {
            assert_eq!(hits(addr), spamhaus, "{addr}");
        }
        assert_eq!(
            hits("10.0.0.0"),
            ["intel.firehol_level1 +30", "intel.spamhaus_drop +40"]
        );
        // IPv4-mapped IPv6 is looked up as IPv4.
        assert_eq!(hits("::ffff:192.168.1.7"), firehol);
    }

    #[test]
    fn intel_ranges_at_the_ends_of_the_address_space() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ThreatConfig {
            rules: None,
            intel: vec![IntelListConfig {
                name: "edges".into(),
                path: write(
                    dir.path(),
                    "edges.txt",
                    "0.0.0.0\n255.255.255.255\n255.255.255.254\n::/128\nffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120\n",
                ),
                points: Some(10),
            }],
        };
        let e = ThreatEngine::from_config(&cfg).unwrap();
        let hit = |addr: &str| {
            !e.assess(&Signals {
                client_ip: Some(ip(addr)),
                ..Signals::default()
            })
            .reasons
            .is_empty()
        };
        assert!(hit("0.0.0.0") && hit("255.255.255.255") && hit("255.255.255.254"));
        assert!(!hit("0.0.0.1") && !hit("255.255.255.253"));
        assert!(hit("::") && hit("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert!(!hit("::2") && !hit("ffff:ffff:ffff:ffff:ffff:ffff:ffff:feff"));
    }

    #[test]
    fn bad_intel_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line) in [
            ("# ok\n10.0.0.0/8\n10.0.0.300/8 ; SBL1\n", 3),
            ("1.2.3.4\n\n1.2.3.4-::1\n", 3),
            ("1.2.3.4/33\n", 1),
            ("{\"cidr\": 12}\n", 1),
            ("evil.example.com\n", 1),
        ] {
            let path = write(dir.path(), "bad.netset", text);
            let cfg = ThreatConfig {
                rules: None,
                intel: vec![IntelListConfig {
                    name: "bad".into(),
                    path: path.clone(),
                    points: None,
                }],
            };
            let err = ThreatEngine::from_config(&cfg).unwrap_err();
            assert!(
                matches!(&err, ThreatError::IntelLine { line: l, path: p, .. } if *l == line && *p == path),
                "{err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("bad.netset") && msg.contains(&format!("line {line}")),
                "{msg}"
            );
        }

        let missing = ThreatConfig {
            rules: None,
            intel: vec![IntelListConfig {
                name: "gone".into(),
                path: dir.path().join("missing.netset"),
                points: None,
            }],
        };
        let err = ThreatEngine::from_config(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.netset"), "{err}");
    }

    #[test]
    fn bad_intel_config_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "l.txt", "1.2.3.4\n");
        let list = |name: &str, points| IntelListConfig {
            name: name.into(),
            path: path.clone(),
            points,
        };
        for (lists, needle) in [
            (vec![list("a", None), list("a", None)], "earlier list"),
            (vec![list("has space", None)], "name"),
            (vec![list("", None)], "name"),
            (vec![list("a", Some(101))], "points"),
        ] {
            let cfg = ThreatConfig {
                rules: None,
                intel: lists,
            };
            let err = ThreatEngine::from_config(&cfg).unwrap_err().to_string();
            assert!(
                err.contains("threat.intel[") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn bad_rules_file_names_the_key() {
        for (rules, key) in [
            ("[waf.action]\nblock = \"lots\"\n", "`waf.action.block`"),
            ("[waf.action]\nblock = 101\n", "`waf.action.block`"),
            ("[waf.action]\nblocc = 10\n", "`waf.action.blocc`"),
            ("[waf.actoin]\nblock = 10\n", "`waf.actoin`"),
            ("[levels]\nhigh = 10\n", "`levels`"),
            ("[levels]\nsevere = 10\n", "`levels.severe`"),
            (
                "[waf.group.sqli]\nmin_level = \"severe\"\n",
                "`waf.group.sqli.min_level`",
            ),
            ("[waf.group.mine]\npoints = 5\n", "`waf.group.mine.match`"),
            (
                "[waf.group.mine]\npoints = 5\nmatch = []\n",
                "`waf.group.mine.match`",
            ),
            (
                "[waf.label.mine]\npoints = 5\nmatch = [\"ok\", 3]\n",
                "`waf.label.mine.match[1]`",
            ),
            (
                "[ua.mine]\npoints = 5\nmatch = [\"x\"]\n",
                "`ua.mine.match[0]`",
            ),
            (
                "[\"waf\".group.\"bad name\"]\npoints = 5\nmatch = [\"x\"]\n",
                "`waf.group.bad name`",
            ),
            (
                "[falco.priority]\ncritcal = 50\n",
                "`falco.priority.critcal`",
            ),
            ("[app.status]\n999 = 5\n", "`app.status.999`"),
            (
                "[guardduty.severity]\nsevere = 50\n",
                "`guardduty.severity.severe`",
            ),
            ("[guardduty.label]\nhigh = 50\n", "`guardduty.label`"),
            (
                "[window.rate]\nmax_per_minute = 0\n",
                "`window.rate.max_per_minute`",
            ),
            (
                "[window.block_ratio]\nratio = 1.5\n",
                "`window.block_ratio.ratio`",
            ),
            (
                "[window.scanner]\nmax_distinct_uris = 5000\n",
                "`window.scanner.max_distinct_uris`",
            ),
            ("[window]\nmax_ips = 0\n", "`window.max_ips`"),
            ("replace_defaults = \"yes\"\n", "`replace_defaults`"),
            (
                "replace_defaults = true\n[waf]\nrate_based = 5\n",
                "`levels`",
            ),
            ("bogus = 1\n", "`bogus`"),
        ] {
            let err = rules_error(rules);
            assert!(err.contains(key), "{rules:?}: {err}");
        }
        let syntax = rules_error("[waf.action\nblock = 1\n");
        assert!(syntax.contains("line 1"), "{syntax}");
    }

    #[test]
    fn user_rules_override_the_defaults_key_by_key() {
        let e = engine_with(
            r#"
[waf.action]
block = 50

[waf.group.sqli]
points = 0

[ua.tools]
points = 5
match = ["python-requests", "Go-http-client"]

[waf.label.internal]
points = 1
min_level = "high"
match = ["myorg:internal:"]
"#,
        );
        let groups = ["AWS#AWSManagedRulesSQLiRuleSet"];
        let labels = ["awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body"];
        let a = e.assess(&Signals {
            waf_action: Some("block"),
            rule_groups: &groups,
            labels: &labels,
            user_agent: Some("python-requests/2.31"),
            ..Signals::default()
        });
        assert_eq!(
            reasons(&a),
            ["waf.action.block +50", "waf.label.xss +25", "ua.tools +5"]
        );
        let forced = e.assess(&Signals {
            labels: &["myorg:internal:admin"],
            ..Signals::default()
        });
        assert_eq!(reasons(&forced), ["waf.label.internal +1"]);
        assert_eq!((forced.score, forced.level), (1, ThreatLevel::High));
        assert_eq!(ua(&e, "sqlmap/1.0"), ["ua.scanner +25"]);
    }

    #[test]
    fn replace_defaults_starts_from_an_empty_rule_set() {
        let e = engine_with(
            r#"
replace_defaults = true
[levels]
medium = 10
high = 20
critical = 30
[waf.action]
block = 15
"#,
        );
        let a = e.assess(&Signals {
            waf_action: Some("BLOCK"),
            user_agent: Some("sqlmap"),
            rate_based_hit: true,
            ..Signals::default()
        });
        assert_eq!(reasons(&a), ["waf.action.block +15"]);
        assert_eq!(a.level, ThreatLevel::Medium);
        let mut w = e.windows();
        for i in 0..1000 {
            assert!(w.observe(ip("192.0.2.1"), i, true, i as u64).is_empty());
        }
    }

    #[test]
    fn score_is_capped_at_100() {
        let e = ThreatEngine::defaults();
        let groups = [
            "AWS#AWSManagedRulesSQLiRuleSet",
            "AWS#AWSManagedRulesKnownBadInputsRuleSet",
        ];
        let labels = ["awswaf:managed:aws:known-bad-inputs:Log4JRCE_Body"];
        let a = e.assess(&Signals {
            waf_action: Some("BLOCK"),
            rule_groups: &groups,
            labels: &labels,
            rate_based_hit: true,
            user_agent: Some("nuclei"),
            ..Signals::default()
        });
        assert_eq!(a.score, 100);
        assert_eq!(a.level, ThreatLevel::Critical);
        assert_eq!(
            a.reasons.iter().map(|r| u32::from(r.points)).sum::<u32>(),
            155
        );
    }

    #[test]
    fn threat_config_section_deserializes() {
        #[derive(serde::Deserialize)]
        struct Root {
            threat: ThreatConfig,
        }
        let root: Root = toml::from_str(
            r#"
[threat]
rules = "/etc/seclake/threat.toml"
[[threat.intel]]
name = "firehol_level1"
path = "/var/lib/seclake/firehol_level1.netset"
[[threat.intel]]
name = "spamhaus_drop"
path = "/var/lib/seclake/drop.txt"
points = 40
"#,
        )
        .unwrap();
        assert_eq!(
            root.threat.rules.as_deref(),
            Some(Path::new("/etc/seclake/threat.toml"))
        );
        assert_eq!(root.threat.intel.len(), 2);
        assert_eq!(root.threat.intel[1].points, Some(40));
        assert!(toml::from_str::<Root>("[threat]\nrulez = \"x\"\n").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Lookups in merged ranges agree with checking every listed CIDR.
        #[test]
        fn intel_lookup_matches_a_linear_scan(
            nets in prop::collection::vec((any::<u32>(), 8u8..=32), 1..40),
            probes in prop::collection::vec(any::<u32>(), 50),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let text: String = nets
                .iter()
                .map(|(a, len)| format!("{}/{len}\n", std::net::Ipv4Addr::from(*a)))
                .collect();
            let cfg = ThreatConfig {
                rules: None,
                intel: vec![IntelListConfig {
                    name: "p".into(),
                    path: write(dir.path(), "p.netset", &text),
                    points: Some(1),
                }],
            };
            let e = ThreatEngine::from_config(&cfg).unwrap();
            let listed = |x: u32| nets.iter().any(|&(a, len)| {
                let mask = u32::MAX << (32 - u32::from(len));
                x & mask == a & mask
            });
            // Probe the random addresses and the edges of every listed network.
            let edges = nets.iter().flat_map(|&(a, len)| {
                let mask = u32::MAX << (32 - u32::from(len));
                let (lo, hi) = (a & mask, a | !mask);
                [lo.wrapping_sub(1), lo, hi, hi.wrapping_add(1)]
            });
            for x in probes.iter().copied().chain(edges) {
                let got = !e
                    .assess(&Signals {
                        client_ip: Some(IpAddr::from(std::net::Ipv4Addr::from(x))),
                        ..Signals::default()
                    })
                    .reasons
                    .is_empty();
                prop_assert_eq!(got, listed(x), "{}", std::net::Ipv4Addr::from(x));
            }
        }

        /// The user-agent matcher agrees with lower-casing and `contains`.
        #[test]
        fn ua_matcher_matches_naive_search(hay in "[a-zA-Z /.()]{0,40}(nMaP|SqlMap|zg|ffuf)?[a-zA-Z /.()]{0,10}") {
            let e = ThreatEngine::defaults();
            let lower = hay.to_ascii_lowercase();
            let naive = ["sqlmap", "nmap", "ffuf", "zgrab", "nikto", "nuclei", "masscan", "gobuster",
                "wpscan", "dirbuster", "feroxbuster", "wfuzz", "dirsearch", "acunetix", "netsparker",
                "openvas", "nessus", "qualys", "arachni", "skipfish", "w3af", "whatweb", "commix",
                "xsstrike", "hydra", "jaeles", "zmeu", "morfeus", "fuzz faster u fool", "interactsh",
                "l9explore", "l9tcpid", "censysinspect", "paros", "joomscan"]
                .iter()
                .any(|p| lower.contains(p));
            prop_assert_eq!(!ua(&e, &hay).is_empty(), naive);
        }
    }
}
