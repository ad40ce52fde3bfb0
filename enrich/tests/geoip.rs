//! GeoIP enrichment against the MaxMind test databases in `shared/geoip`
//! (beside the repository; override with `SECLAKE_GEOIP_TESTDATA`). Expected
//! values were read from the databases themselves.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seclake_enrich::geoip::{
    GeoInfo, GeoIp, GeoIpConfig, GeoIpError, GeoLookup, IpClass, PathList,
};

fn data_dir() -> PathBuf {
    let dir = std::env::var_os("SECLAKE_GEOIP_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/geoip"));
    assert!(
        dir.join("GeoLite2-City-Test.mmdb").is_file(),
        "GeoIP test data not found in {} (set SECLAKE_GEOIP_TESTDATA)",
        dir.display()
    );
    dir
}

fn db(name: &str) -> PathBuf {
    data_dir().join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn open(cfg: GeoIpConfig) -> Arc<GeoIp> {
    Arc::new(GeoIp::open(&cfg).unwrap().expect("configured"))
}

fn city_cfg(name: &str) -> GeoIpConfig {
    GeoIpConfig {
        city: Some(PathList::from(db(name))),
        ..GeoIpConfig::default()
    }
}

fn s(v: &str) -> Option<Arc<str>> {
    Some(Arc::from(v))
}

fn place(iso: &str, country: &str, city: Option<&str>, lat: f64, lon: f64) -> GeoInfo {
    GeoInfo {
        ip_class: IpClass::Public,
        country_iso: s(iso),
        country_name: s(country),
        city: city.and_then(s),
        lat: Some(lat),
        lon: Some(lon),
        asn: None,
        as_org: None,
    }
}

fn open_err(cfg: GeoIpConfig) -> GeoIpError {
    GeoIp::open(&cfg).expect_err("open should fail")
}

// Inside a module so that `cargo test geoip` selects every test here.
mod geoip {
    use super::*;

    #[test]
    fn geolite2_city() {
        let mut h = open(city_cfg("GeoLite2-City-Test.mmdb")).handle();
        let london = place("GB", "United Kingdom", Some("London"), 51.5142, -0.0931);
        assert_eq!(h.lookup(ip("81.2.69.142")), london);
        assert_eq!(h.lookup(ip("::ffff:81.2.69.142")), london);
        assert_eq!(
            h.lookup(ip("89.160.20.112")),
            place("SE", "Sweden", Some("Linköping"), 58.4167, 15.6167)
        );
        assert_eq!(
            h.lookup(ip("216.160.83.56")),
            place("US", "United States", Some("Milton"), 47.2513, -122.3149)
        );
        assert_eq!(
            h.lookup(ip("1.1.1.1")),
            GeoInfo::default(),
            "not in the database"
        );
    }

    #[test]
    fn geoip2_city() {
        let mut h = open(city_cfg("GeoIP2-City-Test.mmdb")).handle();
        assert_eq!(
            h.lookup(ip("81.2.69.142")),
            place("GB", "United Kingdom", Some("London"), 51.5142, -0.0931)
        );
        assert_eq!(
            h.lookup(ip("2.2.3.1")),
            place("GB", "United Kingdom", Some("Boxford"), 51.75, -1.25)
        );
        // A record with only a continent: found, but nothing seclake uses.
        assert_eq!(h.lookup(ip("2.3.3.1")), GeoInfo::default());
    }

    #[test]
    fn ipv6_lookups() {
        let mut h = open(city_cfg("GeoLite2-City-Test.mmdb")).handle();
        assert_eq!(
            h.lookup(ip("2001:218::1")),
            place("JP", "Japan", None, 35.68536, 139.75309)
        );
        assert_eq!(
            h.lookup(ip("2001:480::1")),
            place("US", "United States", Some("San Diego"), 32.7203, -117.1552)
        );
        assert_eq!(
            h.lookup(ip("2a02:ffc0::1")),
            place("GI", "Gibraltar", None, 36.13333, -5.35)
        );
    }

    #[test]
    fn country_database() {
        let cfg = GeoIpConfig {
            country: Some(PathList::from(db("GeoLite2-Country-Test.mmdb"))),
            ..GeoIpConfig::default()
        };
        let mut h = open(cfg).handle();
        let gb = GeoInfo {
            country_iso: s("GB"),
            country_name: s("United Kingdom"),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("81.2.69.142")), gb);
        let jp = GeoInfo {
            country_iso: s("JP"),
            country_name: s("Japan"),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("2001:218::1")), jp);
    }

    #[test]
    fn country_fills_what_city_lacks() {
        let cfg = GeoIpConfig {
            city: Some(PathList::from(db("GeoLite2-City-Test.mmdb"))),
            country: Some(PathList::from(db("GeoLite2-Country-Test.mmdb"))),
            ..GeoIpConfig::default()
        };
        let mut h = open(cfg).handle();
        assert_eq!(
            h.lookup(ip("81.2.69.142")),
            place("GB", "United Kingdom", Some("London"), 51.5142, -0.0931)
        );
        // 217.65.48.0/29 is only in the Country database.
        let gi = GeoInfo {
            country_iso: s("GI"),
            country_name: s("Gibraltar"),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("217.65.48.1")), gi);

        // Listed first, a Country database answers the country and the City
        // database after it adds the city and coordinates.
        let cfg = GeoIpConfig {
            city: Some(PathList::from_iter([
                db("GeoLite2-Country-Test.mmdb"),
                db("GeoLite2-City-Test.mmdb"),
            ])),
            ..GeoIpConfig::default()
        };
        let mut h = open(cfg).handle();
        assert_eq!(
            h.lookup(ip("89.160.20.112")),
            place("SE", "Sweden", Some("Linköping"), 58.4167, 15.6167)
        );
    }

    fn asn_cfg(paths: PathList) -> GeoIpConfig {
        GeoIpConfig {
            asn: Some(paths),
            ..GeoIpConfig::default()
        }
    }

    fn asn(number: u32, org: Option<&str>) -> GeoInfo {
        GeoInfo {
            asn: Some(number),
            as_org: org.and_then(s),
            ..GeoInfo::default()
        }
    }

    #[test]
    fn asn_database() {
        let mut h = open(asn_cfg(PathList::from(db("GeoLite2-ASN-Test.mmdb")))).handle();
        assert_eq!(
            h.lookup(ip("89.160.20.112")),
            asn(29518, Some("Bredband2 AB"))
        );
        assert_eq!(
            h.lookup(ip("1.128.0.1")),
            asn(1221, Some("Telstra Pty Ltd"))
        );
        assert_eq!(
            h.lookup(ip("2001:1700::1")),
            asn(6730, Some("Sunrise Communications AG"))
        );
        // A record with a number and no organisation.
        assert_eq!(h.lookup(ip("12.81.96.1")), asn(7018, None));
        assert_eq!(h.lookup(ip("81.2.69.142")), GeoInfo::default());
    }

    #[test]
    fn city_and_asn_together() {
        let cfg = GeoIpConfig {
            city: Some(PathList::from(db("GeoIP2-City-Test.mmdb"))),
            asn: Some(PathList::from(db("GeoLite2-ASN-Test.mmdb"))),
            ..GeoIpConfig::default()
        };
        let mut h = open(cfg).handle();
        let want = GeoInfo {
            asn: Some(29518),
            as_org: s("Bredband2 AB"),
            ..place("SE", "Sweden", Some("Linköping"), 58.4167, 15.6167)
        };
        assert_eq!(h.lookup(ip("89.160.20.112")), want);
    }

    #[test]
    fn non_public_addresses_are_tagged_not_looked_up() {
        let cfg = GeoIpConfig {
            city: Some(PathList::from(db("GeoLite2-City-Test.mmdb"))),
            asn: Some(PathList::from(db("GeoLite2-ASN-Test.mmdb"))),
            ..GeoIpConfig::default()
        };
        let mut h = open(cfg).handle();
        for (addr, class) in [
            ("10.1.2.3", IpClass::Private),
            ("::ffff:192.168.0.1", IpClass::Private),
            ("fd00::1", IpClass::Private),
            ("127.0.0.1", IpClass::Loopback),
            ("::1", IpClass::Loopback),
            ("fe80::1", IpClass::LinkLocal),
            ("100.64.0.1", IpClass::Cgnat),
            ("224.0.0.251", IpClass::Multicast),
            ("2001:db8::1", IpClass::Documentation),
            ("203.0.113.9", IpClass::Documentation),
            ("240.0.0.1", IpClass::Reserved),
            ("0.0.0.0", IpClass::Unspecified),
        ] {
            let info = h.lookup(ip(addr));
            assert_eq!(
                info,
                GeoInfo {
                    ip_class: class,
                    ..GeoInfo::default()
                },
                "{addr}"
            );
        }
        assert_eq!(
            h.cache_misses(),
            0,
            "no database lookup for non-public addresses"
        );
        assert_eq!(h.cache_hits(), 0);
    }

    #[test]
    fn corrupt_databases_fail_at_open_naming_the_file() {
        let bad: Vec<PathBuf> = std::fs::read_dir(data_dir().join("bad"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(bad.len(), 5, "{bad:?}");
        for path in bad {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for cfg in [
                GeoIpConfig {
                    city: Some(PathList::from(&path)),
                    ..GeoIpConfig::default()
                },
                asn_cfg(PathList::from(&path)),
            ] {
                let err = open_err(cfg);
                assert!(err.to_string().contains(&name), "{name}: {err}");
                assert_eq!(err.path(), path);
            }
        }
    }

    #[test]
    fn wrong_kind_of_database_is_rejected() {
        let err = open_err(city_cfg("GeoLite2-ASN-Test.mmdb"));
        assert!(matches!(err, GeoIpError::WrongKind { .. }), "{err}");
        assert!(err.to_string().contains("GeoLite2-ASN-Test.mmdb"), "{err}");
        let err = open_err(city_cfg("GeoIP2-Anonymous-IP-Test.mmdb"));
        assert!(matches!(err, GeoIpError::WrongKind { .. }), "{err}");
        let err = open_err(asn_cfg(PathList::from(db("GeoLite2-City-Test.mmdb"))));
        assert!(matches!(err, GeoIpError::WrongKind { .. }), "{err}");
        let err = open_err(asn_cfg(PathList::from(db("README.md"))));
        assert!(matches!(err, GeoIpError::UnknownAsnFormat { .. }), "{err}");
        let err = open_err(city_cfg("README.md"));
        assert!(matches!(err, GeoIpError::Corrupt { .. }), "{err}");
        let err = open_err(city_cfg("bad"));
        assert!(matches!(err, GeoIpError::NotAFile { .. }), "{err}");
    }

    #[test]
    fn nothing_configured_is_none() {
        assert!(GeoIp::open(&GeoIpConfig::default()).unwrap().is_none());
        let cfg = GeoIpConfig {
            cache_size: Some(10),
            ..GeoIpConfig::default()
        };
        assert!(GeoIp::open(&cfg).unwrap().is_none());
    }

    #[test]
    fn missing_file_is_named() {
        let cfg = GeoIpConfig {
            city: Some(PathList::from(db("GeoLite2-City-Test.mmdb"))),
            asn: Some(PathList::from("/nonexistent/seclake/GeoLite2-ASN.mmdb")),
            ..GeoIpConfig::default()
        };
        let err = open_err(cfg);
        assert!(matches!(err, GeoIpError::Io { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("/nonexistent/seclake/GeoLite2-ASN.mmdb"),
            "{err}"
        );
    }

    const ASN_V4: &str = "\
    1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"
    1.0.4.0,1.0.7.255,38803,Gtelecom Pty Ltd
    2.26.200.0,2.26.215.255,201907,\"LLC \"\"SPUTNIK\"\"\"
    214.95.0.0,215.0.255.255,749,United States Department of Defense (DoD)
    215.0.0.0,215.1.3.255,721,DoD Network Information Center
    223.255.255.0,223.255.255.255,4000,
    ";

    const ASN_V6: &str = "\
    2001::,2001::ffff:ffff:ffff:ffff:ffff:ffff,6939,Hurricane Electric LLC
    2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project
    2001:200:1ba::,2001:200:1ba:ffff:ffff:ffff:ffff:ffff,24047,\"Internet Systems Consortium, Inc.\"
    ";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn asn_csv_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let v4 = write(dir.path(), "asn-ipv4.csv", ASN_V4);
        let v6 = write(dir.path(), "asn-ipv6.csv", ASN_V6);
        let mut h = open(asn_cfg(PathList::from_iter([v4, v6]))).handle();
        let cf = asn(13335, Some("Cloudflare, Inc."));
        assert_eq!(h.lookup(ip("1.0.0.0")), cf);
        assert_eq!(h.lookup(ip("1.0.0.128")), cf);
        assert_eq!(h.lookup(ip("1.0.0.255")), cf);
        assert_eq!(h.lookup(ip("1.0.1.0")), GeoInfo::default());
        assert_eq!(h.lookup(ip("1.0.3.255")), GeoInfo::default());
        assert_eq!(
            h.lookup(ip("1.0.4.0")),
            asn(38803, Some("Gtelecom Pty Ltd"))
        );
        assert_eq!(
            h.lookup(ip("1.0.7.255")),
            asn(38803, Some("Gtelecom Pty Ltd"))
        );
        assert_eq!(h.lookup(ip("1.0.8.0")), GeoInfo::default());
        assert_eq!(
            h.lookup(ip("2.26.210.1")),
            asn(201907, Some("LLC \"SPUTNIK\""))
        );
        // Overlapping rows (as in the real file): the later-starting range wins.
        let dod = asn(749, Some("United States Department of Defense (DoD)"));
        let nic = asn(721, Some("DoD Network Information Center"));
        assert_eq!(h.lookup(ip("214.95.0.0")), dod);
        assert_eq!(h.lookup(ip("214.255.255.255")), dod);
        assert_eq!(h.lookup(ip("215.0.0.0")), nic);
        assert_eq!(h.lookup(ip("215.1.3.255")), nic);
        assert_eq!(h.lookup(ip("215.1.4.0")), GeoInfo::default());
        assert_eq!(h.lookup(ip("223.255.255.255")), asn(4000, None));

        let he = asn(6939, Some("Hurricane Electric LLC"));
        assert_eq!(h.lookup(ip("2001::")), he);
        assert_eq!(h.lookup(ip("2001:0:ffff:ffff:ffff:ffff:ffff:ffff")), he);
        assert_eq!(h.lookup(ip("2001:1::")), GeoInfo::default());
        assert_eq!(
            h.lookup(ip("2001:200:1b9:ffff::1")),
            asn(2500, Some("WIDE Project"))
        );
        assert_eq!(
            h.lookup(ip("2001:200:1ba::")),
            asn(24047, Some("Internet Systems Consortium, Inc."))
        );
        assert_eq!(h.lookup(ip("2001:200:1bb::")), GeoInfo::default());
    }

    #[test]
    fn asn_csv_numeric_header_and_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let v4 = write(
            dir.path(),
            "asn-ipv4-num.csv",
            "ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization\n\
             16777216,16777471,13335,\"Cloudflare, Inc.\"\n\
             1503663104,1503663231,65000,Test Override\n",
        );
        let v6 = write(
            dir.path(),
            "asn-ipv6-num.csv",
            "42540488161975842760550356425300246528,42540488241204005274814694018844196863,6939,Hurricane Electric LLC\n",
        );
        // 1503663104 is 89.160.20.0: the CSV listed first answers before the
        // ASN database for that range; the database answers the rest.
        let cfg = asn_cfg(PathList::from_iter([v4, v6, db("GeoLite2-ASN-Test.mmdb")]));
        let mut h = open(cfg).handle();
        assert_eq!(
            h.lookup(ip("1.0.0.255")),
            asn(13335, Some("Cloudflare, Inc."))
        );
        assert_eq!(
            h.lookup(ip("89.160.20.112")),
            asn(65000, Some("Test Override"))
        );
        assert_eq!(
            h.lookup(ip("89.160.20.128")),
            asn(29518, Some("Bredband2 AB"))
        );
        assert_eq!(
            h.lookup(ip("2001::1")),
            asn(6939, Some("Hurricane Electric LLC"))
        );
    }

    #[test]
    fn asn_csv_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line) in [
            ("1.0.0.0,1.0.0.255,13335,ok\n1.0.1.0,1.0.1.255,x,bad\n", 2),
            (
                "1.0.0.0,1.0.0.255,13335,ok\n\n1.0.1.9,1.0.1.0,1,backwards\n",
                3,
            ),
            ("1.0.0.0,1.0.0.255,13335,ok\n1.0.1.0,2001::,1,mixed\n", 2),
            (
                "1.0.0.0,1.0.0.255,13335,ok\n1.0.1.0,1.0.1.255,1,\"open\n",
                2,
            ),
            ("1.0.0.0,1.0.0.255,13335,ok\n1.0.1.0\n", 2),
        ] {
            let path = write(dir.path(), "asn-ipv4.csv", text);
            let err = open_err(asn_cfg(PathList::from(&path)));
            assert!(
                matches!(err, GeoIpError::Csv { line: l, .. } if l == line),
                "{text:?}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("asn-ipv4.csv") && msg.contains(&format!("line {line}")),
                "{msg}"
            );
        }
        let path = write(dir.path(), "empty.csv", "\n# nothing\n");
        let err = open_err(asn_cfg(PathList::from(&path)));
        assert!(matches!(err, GeoIpError::EmptyCsv { .. }), "{err}");
        assert!(err.to_string().contains("empty.csv"), "{err}");
    }

    /// Replaces `dst` by writing a sibling file and renaming it over `dst`, the
    /// way databases must be replaced while seclake runs.
    fn replace(src: &Path, dst: &Path) {
        let tmp = dst.with_extension("tmp");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }

    #[test]
    fn reload_swaps_databases_and_keeps_old_ones_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        std::fs::copy(db("GeoLite2-City-Test.mmdb"), &path).unwrap();
        let geo = open(GeoIpConfig {
            city: Some(PathList::from(&path)),
            ..GeoIpConfig::default()
        });
        let mut h = geo.handle();
        let london = place("GB", "United Kingdom", Some("London"), 51.5142, -0.0931);
        assert_eq!(h.lookup(ip("81.2.69.142")), london);
        assert_eq!(h.lookup(ip("81.2.69.142")), london);
        assert_eq!(h.cache_hits(), 1);

        replace(&db("GeoLite2-Country-Test.mmdb"), &path);
        geo.reload().unwrap();
        assert_eq!(geo.generation(), 1);
        let gb = GeoInfo {
            country_iso: s("GB"),
            country_name: s("United Kingdom"),
            ..GeoInfo::default()
        };
        assert_eq!(
            h.lookup(ip("81.2.69.142")),
            gb,
            "cached answer dropped after reload"
        );
        assert_eq!(geo.handle().lookup(ip("81.2.69.142")), gb);

        for bad in std::fs::read_dir(data_dir().join("bad")).unwrap() {
            replace(&bad.unwrap().path(), &path);
            let err = geo
                .reload()
                .expect_err("corrupt file must not be swapped in");
            assert!(err.to_string().contains("geo.mmdb"), "{err}");
            assert_eq!(geo.generation(), 1);
            assert_eq!(
                h.lookup(ip("81.2.69.142")),
                gb,
                "old database still answers"
            );
            assert_eq!(h.lookup(ip("2001:218::1")).country_iso, s("JP"));
        }
        std::fs::remove_file(&path).unwrap();
        let err = geo.reload().expect_err("missing file");
        assert!(matches!(err, GeoIpError::Io { .. }), "{err}");
        assert_eq!(h.lookup(ip("81.2.69.142")), gb);
        assert_eq!(geo.decode_errors(), 0);
    }

    #[test]
    fn handles_work_across_threads_during_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        std::fs::copy(db("GeoLite2-City-Test.mmdb"), &path).unwrap();
        let geo = open(GeoIpConfig {
            city: Some(PathList::from(&path)),
            cache_size: Some(16),
            ..GeoIpConfig::default()
        });
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let mut h: GeoLookup = geo.handle();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let info = h.lookup(ip("81.2.69.142"));
                        assert_eq!(info.country_iso, s("GB"));
                        assert_eq!(h.lookup(ip("10.0.0.1")).ip_class, IpClass::Private);
                    }
                })
            })
            .collect();
        for _ in 0..5 {
            geo.reload().unwrap();
        }
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(geo.generation(), 5);
    }

    #[test]
    fn cache_can_be_disabled() {
        let mut cfg = city_cfg("GeoLite2-City-Test.mmdb");
        cfg.cache_size = Some(0);
        let mut h = open(cfg).handle();
        for _ in 0..3 {
            assert_eq!(h.lookup(ip("81.2.69.142")).city, s("London"));
        }
        assert_eq!((h.cache_hits(), h.cache_misses()), (0, 3));
    }
}
