//! Per-IP sliding windows and how their findings combine with the stateless score.
//! Wrapped in a module so that `cargo test threat` selects these tests.

mod threat_windows {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::path::PathBuf;

    use proptest::prelude::*;
    use seclake_enrich::threat::{
        Signals, ThreatConfig, ThreatEngine, ThreatLevel, WindowFindings, WindowState,
    };

    const SEC: i64 = 1_000_000;
    /// 2024-05-01T00:00:00Z in µs.
    const T0: i64 = 1_714_521_600 * SEC;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ids(f: &WindowFindings) -> Vec<&'static str> {
        f.reasons().iter().map(|r| r.rule).collect()
    }

    fn engine_with(rules: &str) -> ThreatEngine {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        ThreatEngine::from_config(&ThreatConfig {
            rules: Some(path),
            intel: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn window_state_is_send() {
        fn check<T: Send>() {}
        check::<WindowState>();
    }

    #[test]
    fn many_requests_in_a_minute_fire_the_rate_rule() {
        let e = ThreatEngine::defaults();
        let mut w = e.windows();
        let flood = ip("203.0.113.9");
        let findings: Vec<WindowFindings> = (0..500)
            .map(|i| w.observe(flood, T0 + i * 100_000, false, 7))
            .collect();
        // Default threshold: more than 300 requests in 60 s.
        assert!(findings[..300].iter().all(WindowFindings::is_empty));
        for f in &findings[300..] {
            assert_eq!(ids(f), ["window.rate"]);
            assert_eq!(f.reasons()[0].to_string(), "window.rate +20");
        }

        let benign = ip("198.51.100.1");
        for i in 0..5 {
            assert!(w.observe(benign, T0 + i * SEC, false, i as u64).is_empty());
        }
    }

    #[test]
    fn many_distinct_uris_fire_the_scanner_rule() {
        let e = ThreatEngine::defaults();
        let mut w = e.windows();
        let hash = |i: u64| xxhash_rust::xxh3::xxh3_64(format!("/admin/{i}.php").as_bytes());
        let scanner = ip("2001:db8::bad");
        let last = (0..200)
            .map(|i| w.observe(scanner, T0 + i * 200_000, false, hash(i as u64)))
            .last()
            .unwrap();
        assert_eq!(ids(&last), ["window.scanner"]);

        // The same few pages over and over, and fewer distinct pages than the
        // threshold (100), are not scanning.
        let browser = ip("198.51.100.2");
        let crawler = ip("198.51.100.3");
        for i in 0..250 {
            assert!(
                w.observe(browser, T0 + i * 200_000, false, hash((i % 5) as u64))
                    .is_empty()
            );
            assert!(
                w.observe(crawler, T0 + i * 200_000, false, hash((i % 60) as u64))
                    .is_empty()
            );
        }
    }

    #[test]
    fn mostly_blocked_requests_fire_the_block_ratio_rule() {
        let e = ThreatEngine::defaults();
        let mut w = e.windows();
        let run = |w: &mut WindowState, addr: &str, n: i64, blocked_every: i64| {
            (0..n)
                .map(|i| w.observe(ip(addr), T0 + i * SEC, i % blocked_every != 0, 1))
                .last()
                .unwrap()
        };
        // 2 of 3 blocked, 30 requests: over the 0.5 ratio with at least 20 requests.
        assert_eq!(
            ids(&run(&mut w, "192.0.2.1", 30, 3)),
            ["window.block_ratio"]
        );
        // All blocked but only 10 requests: too few to judge.
        assert!(run(&mut w, "192.0.2.2", 10, i64::MAX).is_empty());
        // Half blocked is not over 0.5.
        assert!(run(&mut w, "192.0.2.3", 40, 2).is_empty());
    }

    #[test]
    fn windows_slide_and_old_requests_age_out() {
        let e = engine_with("[window.rate]\nmax_per_minute = 10\n");
        let mut w = e.windows();
        let a = ip("192.0.2.10");
        // 11 requests at seconds 0..=10: the 11th is over the limit.
        for s in 0..10 {
            assert!(w.observe(a, T0 + s * SEC, false, 1).is_empty());
        }
        assert_eq!(ids(&w.observe(a, T0 + 10 * SEC, false, 1)), ["window.rate"]);
        // At second 60 the request of second 0 has left the window: 10 + 1 = 11.
        assert_eq!(ids(&w.observe(a, T0 + 60 * SEC, false, 1)), ["window.rate"]);
        // At second 61 seconds 0 and 1 have left: 9 + 2 = 11, still over.
        assert_eq!(
            ids(&w.observe(a, T0 + 61 * SEC + 999_999, false, 1)),
            ["window.rate"]
        );
        // At second 70 only seconds 11..=70 count: the 3 requests at 60 and 61 and this one.
        assert!(w.observe(a, T0 + 70 * SEC, false, 1).is_empty());
        // A long pause empties the window entirely.
        assert!(w.observe(a, T0 + 3600 * SEC, false, 1).is_empty());
    }

    #[test]
    fn out_of_order_timestamps_are_counted_or_ignored_without_corruption() {
        let e = engine_with("[window.rate]\nmax_per_minute = 4\n");
        let mut w = e.windows();
        let a = ip("192.0.2.20");
        assert!(w.observe(a, T0 + 100 * SEC, false, 1).is_empty());
        // Up to 59 s older than the newest: counted.
        for back in [1, 30, 59] {
            assert!(w.observe(a, T0 + (100 - back) * SEC, false, 1).is_empty());
        }
        assert_eq!(ids(&w.observe(a, T0 + 41 * SEC, false, 1)), ["window.rate"]);
        // 60 s or more older: not recorded, no findings.
        assert!(w.observe(a, T0 + 40 * SEC, false, 1).is_empty());
        assert!(w.observe(a, 0, false, 1).is_empty());
        // Extreme timestamps don't panic, and the window still works afterwards.
        let b = ip("192.0.2.21");
        for ts in [i64::MIN, -1, 0, i64::MAX, i64::MIN, 0] {
            w.observe(b, ts, true, 1);
        }
        let c = ip("192.0.2.22");
        for s in 0..4 {
            assert!(w.observe(c, T0 + s * SEC, false, 1).is_empty());
        }
        assert_eq!(ids(&w.observe(c, T0 + 4 * SEC, false, 1)), ["window.rate"]);
    }

    #[test]
    fn state_stays_bounded_with_a_million_distinct_ips() {
        let e = engine_with("[window]\nmax_ips = 10000\n");
        let mut w = e.windows();
        let hot = ip("2001:db8::1");
        let mut hot_findings = WindowFindings::default();
        let mut hot_sent = 0;
        for i in 0..1_000_000u32 {
            let ts = T0 + i64::from(i) * 40;
            assert!(
                w.observe(IpAddr::V4(Ipv4Addr::from(i)), ts, false, 1)
                    .is_empty()
            );
            // The hot IP is seen often enough to never be the least recently seen.
            if i % 3_000 == 0 {
                hot_findings = w.observe(hot, ts, false, 1);
                hot_sent += 1;
            }
        }
        // Eviction frees the least recently seen sixteenth at once.
        assert!(
            (9_375..=10_000).contains(&w.tracked_ips()),
            "{}",
            w.tracked_ips()
        );
        assert_eq!(hot_sent, 334);
        // All 334 requests of the hot IP fall within 40 s, so it kept its history.
        assert_eq!(ids(&hot_findings), ["window.rate"]);
        // The first IP was evicted long ago: it starts afresh.
        assert!(
            w.observe(IpAddr::V4(Ipv4Addr::from(0)), T0 + 40 * SEC, false, 1)
                .is_empty()
        );
        assert!(w.tracked_ips() <= 10_000);
    }

    #[test]
    fn ipv4_and_ipv4_mapped_ipv6_share_a_window() {
        let e = engine_with("[window.rate]\nmax_per_minute = 1\n");
        let mut w = e.windows();
        assert!(w.observe(ip("192.0.2.30"), T0, false, 1).is_empty());
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 30).to_ipv6_mapped());
        assert_eq!(ids(&w.observe(mapped, T0, false, 1)), ["window.rate"]);
        assert!(
            w.observe(IpAddr::V6(Ipv6Addr::LOCALHOST), T0, false, 1)
                .is_empty()
        );
    }

    /// A pseudo-random request stream: three busy IPs (one mostly blocked) among
    /// several hundred quiet ones, timestamps now and then a little out of order.
    fn stream(n: usize, seed: u64) -> Vec<(IpAddr, i64, bool, u64)> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ts = T0;
        (0..n)
            .map(|_| {
                let r = next();
                ts += (r % 20_000) as i64 - 2_000;
                let busy = (r >> 8) as u8 % 3;
                let (addr, blocked) = if r % 4 == 0 {
                    (Ipv4Addr::new(10, 9, 9, busy), busy == 2 || r % 3 == 0)
                } else {
                    (
                        Ipv4Addr::new(10, 0, (r >> 20) as u8 % 3, (r >> 30) as u8),
                        r % 3 == 0,
                    )
                };
                (IpAddr::V4(addr), ts, blocked, next() % 150)
            })
            .collect()
    }

    /// The scorer looks IPs up a few requests ahead; evictions and new IPs in
    /// between must not change what each request finds.
    #[test]
    fn lookups_made_ahead_find_what_direct_observes_find() {
        let input = stream(50_000, 0xa4ead);
        let rules = "[window]\nmax_ips = 40\n[window.rate]\nmax_per_minute = 150\n";
        let e = engine_with(rules);
        let mut direct = e.windows();
        let expected: Vec<_> = input
            .iter()
            .map(|&(addr, ts, blocked, uri)| direct.observe(addr, ts, blocked, uri))
            .collect();
        for ahead in [1, 3, 8, 64] {
            let mut w = e.windows();
            let mut pending: std::collections::VecDeque<_> = input
                .iter()
                .take(ahead)
                .map(|&(addr, ts, ..)| w.lookup(addr, ts))
                .collect();
            for (i, &(_, ts, blocked, uri)) in input.iter().enumerate() {
                if let Some(&(addr, ts, ..)) = input.get(i + ahead) {
                    pending.push_back(w.lookup(addr, ts));
                }
                let found = pending.pop_front().unwrap();
                assert_eq!(
                    w.observe_at(found, ts, blocked, uri),
                    expected[i],
                    "request {i}, looked up {ahead} ahead"
                );
            }
        }
        assert!(expected.iter().any(|f| !f.is_empty()));
    }

    #[test]
    fn same_input_sequence_gives_identical_outputs() {
        let input = stream(50_000, 0x5eed);
        let run = || {
            let e = engine_with("[window]\nmax_ips = 500\n[window.rate]\nmax_per_minute = 150\n");
            let mut w = e.windows();
            input
                .iter()
                .map(|&(addr, ts, blocked, uri)| {
                    let base = e.assess(&Signals {
                        client_ip: Some(addr),
                        waf_action: Some(if blocked { "BLOCK" } else { "ALLOW" }),
                        ..Signals::default()
                    });
                    e.combine(base, &w.observe(addr, ts, blocked, uri))
                })
                .collect::<Vec<_>>()
        };
        let (first, second) = (run(), run());
        assert_eq!(first, second);
        // The stream is busy enough for every window rule to fire somewhere.
        for rule in ["window.rate", "window.block_ratio", "window.scanner"] {
            assert!(
                first
                    .iter()
                    .any(|a| a.reasons.iter().any(|r| r.rule == rule)),
                "{rule}"
            );
        }
    }

    #[test]
    fn combine_adds_points_reasons_and_levels() {
        let e = engine_with(
            "[window.block_ratio]\nmin_requests = 1\nmin_level = \"critical\"\n[window.rate]\nmax_per_minute = 1\n",
        );
        let mut w = e.windows();
        let a = ip("192.0.2.40");
        let base = e.assess(&Signals {
            waf_action: Some("BLOCK"),
            ..Signals::default()
        });
        assert_eq!((base.score, base.level), (30, ThreatLevel::Medium));
        let first = w.observe(a, T0, true, 1);
        let combined = e.combine(base.clone(), &first);
        assert_eq!(
            combined
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["waf.action.block +30", "window.block_ratio +15"]
        );
        assert_eq!(
            (combined.score, combined.level),
            (45, ThreatLevel::Critical)
        );

        let second = w.observe(a, T0, true, 1);
        assert_eq!(ids(&second), ["window.rate", "window.block_ratio"]);
        assert_eq!(second.points(), 35);
        let combined = e.combine(base.clone(), &second);
        assert_eq!(combined.score, 65);

        let unchanged = e.combine(base.clone(), &WindowFindings::default());
        assert_eq!(unchanged, base);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The rate rule agrees with counting the kept requests of the last 60 s,
        /// whatever the order of timestamps.
        #[test]
        fn rate_rule_matches_a_naive_window(steps in prop::collection::vec(-70i64..90, 1..300)) {
            let e = engine_with("[window.rate]\nmax_per_minute = 5\n");
            let mut w = e.windows();
            let a = ip("192.0.2.50");
            let mut sec = 1_000i64;
            let mut newest = i64::MIN;
            let mut kept: Vec<i64> = Vec::new();
            for step in steps {
                sec += step / 3;
                let got = !w.observe(a, sec * SEC + 123, false, 1).is_empty();
                let expected = if newest != i64::MIN && newest - sec >= 60 {
                    false
                } else {
                    newest = newest.max(sec);
                    kept.push(sec);
                    kept.iter().filter(|&&s| s > newest - 60).count() > 5
                };
                prop_assert_eq!(got, expected);
            }
        }
    }
}
