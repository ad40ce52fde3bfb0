//! The flat record layout of the npm ip-location-db `.mmdb` packages
//! (`{country_code, state1, state2, city, postcode, latitude, longitude,
//! timezone}` with `float` coordinates, separate IPv4 and IPv6 files), on
//! tiny databases written here by a minimal MaxMind DB writer.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use seclake_enrich::geoip::{GeoInfo, GeoIp, GeoIpConfig, GeoIpError, IpClass, PathList};

/// A MaxMind DB data-section value.
enum Val {
    Str(&'static str),
    F32(f32),
    U16(u16),
    U32(u32),
    U64(u64),
    Map(Vec<(&'static str, Val)>),
    Array(Vec<Val>),
}

fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29 + 256, "writer handles short values only");
    let (low, extra) = if size < 29 {
        (size as u8, None)
    } else {
        (29, Some((size - 29) as u8))
    };
    if kind <= 7 {
        out.push((kind << 5) | low);
    } else {
        out.push(low);
        out.push(kind - 7);
    }
    out.extend(extra);
}

fn uint(out: &mut Vec<u8>, kind: u8, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}

fn encode(v: &Val, out: &mut Vec<u8>) {
    match v {
        Val::Str(s) => {
            control(out, 2, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        Val::U16(n) => uint(out, 5, u64::from(*n)),
        Val::U32(n) => uint(out, 6, u64::from(*n)),
        Val::U64(n) => uint(out, 9, *n),
        Val::F32(x) => {
            control(out, 15, 4);
            out.extend_from_slice(&x.to_be_bytes());
        }
        Val::Map(entries) => {
            control(out, 7, entries.len());
            for (k, v) in entries {
                encode(&Val::Str(k), out);
                encode(v, out);
            }
        }
        Val::Array(items) => {
            control(out, 11, items.len());
            for v in items {
                encode(v, out);
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Child {
    Empty,
    Node(usize),
    Data(usize),
}

/// Writes a record-size-24 database holding `networks` (address, prefix
/// length, record); `bits` is 32 for an IPv4 file and 128 for IPv6.
fn write_mmdb(
    path: &Path,
    database_type: &'static str,
    bits: u32,
    networks: Vec<(u128, u32, Val)>,
) {
    let mut data = Vec::new();
    let mut nodes: Vec<[Child; 2]> = vec![[Child::Empty; 2]];
    for (addr, len, record) in networks {
        let offset = data.len();
        encode(&record, &mut data);
        let mut node = 0;
        for depth in 0..len {
            let bit = ((addr >> (bits - 1 - depth)) & 1) as usize;
            if depth == len - 1 {
                nodes[node][bit] = Child::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Child::Node(next) => next,
                    Child::Empty => {
                        nodes.push([Child::Empty; 2]);
                        nodes[node][bit] = Child::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                    Child::Data(_) => panic!("overlapping test networks"),
                };
            }
        }
    }
    let count = nodes.len();
    let mut file = Vec::new();
    for node in &nodes {
        for child in node {
            let value = match *child {
                Child::Empty => count,
                Child::Node(n) => n,
                Child::Data(offset) => count + 16 + offset,
            };
            assert!(value < 1 << 24);
            file.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    file.extend_from_slice(&[0; 16]);
    file.extend_from_slice(&data);
    file.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    let metadata = Val::Map(vec![
        ("binary_format_major_version", Val::U16(2)),
        ("binary_format_minor_version", Val::U16(0)),
        ("build_epoch", Val::U64(1_750_000_000)),
        ("database_type", Val::Str(database_type)),
        ("description", Val::Map(Vec::new())),
        ("ip_version", Val::U16(if bits == 32 { 4 } else { 6 })),
        ("languages", Val::Array(Vec::new())),
        ("node_count", Val::U32(count as u32)),
        ("record_size", Val::U16(24)),
    ]);
    encode(&metadata, &mut file);
    std::fs::write(path, file).unwrap();
}

fn flat_city(code: &'static str, city: &'static str, lat: f32, lon: f32, tz: &'static str) -> Val {
    Val::Map(vec![
        ("city", Val::Str(city)),
        ("country_code", Val::Str(code)),
        ("latitude", Val::F32(lat)),
        ("longitude", Val::F32(lon)),
        ("postcode", Val::Str("")),
        ("state1", Val::Str("")),
        ("state2", Val::Str("")),
        ("timezone", Val::Str(tz)),
    ])
}

fn v4(s: &str) -> u128 {
    u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()))
}

fn v6(s: &str) -> u128 {
    u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn s(v: &str) -> Option<Arc<str>> {
    Some(Arc::from(v))
}

fn city_files(dir: &Path) -> (PathBuf, PathBuf) {
    let ipv4 = dir.join("geolite2-city-ipv4.mmdb");
    write_mmdb(
        &ipv4,
        "city ipv4",
        32,
        vec![
            (
                v4("81.2.69.128"),
                25,
                flat_city("GB", "Bracknell", 51.4036, -0.7618, "Europe/London"),
            ),
            (
                v4("8.8.8.0"),
                24,
                flat_city("US", "", 37.751, -97.822, "America/Chicago"),
            ),
        ],
    );
    let ipv6 = dir.join("geolite2-city-ipv6.mmdb");
    write_mmdb(
        &ipv6,
        "city ipv6",
        128,
        vec![(
            v6("2001:218::"),
            35,
            flat_city("JP", "", 35.69, 139.69, "Asia/Tokyo"),
        )],
    );
    (ipv4, ipv6)
}

// Inside a module so that `cargo test geoip` selects every test here.
mod geoip_flat {
    use super::*;

    #[test]
    fn flat_city_records_v4_and_v6() {
        let dir = tempfile::tempdir().unwrap();
        let (ipv4, ipv6) = city_files(dir.path());
        let cfg = GeoIpConfig {
            city: Some(PathList::from_iter([ipv4, ipv6])),
            ..GeoIpConfig::default()
        };
        let geo = Arc::new(GeoIp::open(&cfg).unwrap().unwrap());
        let mut h = geo.handle();
        let bracknell = GeoInfo {
            ip_class: IpClass::Public,
            country_iso: s("GB"),
            country_name: s("United Kingdom"),
            city: s("Bracknell"),
            lat: Some(51.4036),
            lon: Some(-0.7618),
            asn: None,
            as_org: None,
        };
        assert_eq!(h.lookup(ip("81.2.69.142")), bracknell);
        assert_eq!(h.lookup(ip("81.2.69.128")), bracknell);
        assert_eq!(h.lookup(ip("81.2.69.255")), bracknell);
        assert_eq!(h.lookup(ip("::ffff:81.2.69.142")), bracknell);
        assert_eq!(h.lookup(ip("81.2.69.127")), GeoInfo::default());
        let google = GeoInfo {
            country_iso: s("US"),
            country_name: s("United States"),
            lat: Some(37.751),
            lon: Some(-97.822),
            ..GeoInfo::default()
        };
        assert_eq!(
            h.lookup(ip("8.8.8.8")),
            google,
            "empty city string reads as None"
        );
        let jp = GeoInfo {
            country_iso: s("JP"),
            country_name: s("Japan"),
            lat: Some(35.69),
            lon: Some(139.69),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("2001:218::1")), jp);
        assert_eq!(h.lookup(ip("2001:218:1fff:ffff::1")), jp);
        assert_eq!(h.lookup(ip("2001:218:2000::")), GeoInfo::default());
        assert_eq!(h.lookup(ip("1.1.1.1")), GeoInfo::default());
        assert_eq!(geo.decode_errors(), 0);
    }

    #[test]
    fn flat_asn_mmdb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("asn-ipv4.mmdb");
        write_mmdb(
            &path,
            "asn ipv4",
            32,
            vec![(
                v4("1.0.0.0"),
                24,
                Val::Map(vec![
                    ("autonomous_system_number", Val::U32(13335)),
                    (
                        "autonomous_system_organization",
                        Val::Str("Cloudflare, Inc."),
                    ),
                ]),
            )],
        );
        let cfg = GeoIpConfig {
            asn: Some(PathList::from(&path)),
            ..GeoIpConfig::default()
        };
        let mut h = Arc::new(GeoIp::open(&cfg).unwrap().unwrap()).handle();
        let want = GeoInfo {
            asn: Some(13335),
            as_org: s("Cloudflare, Inc."),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("1.0.0.1")), want);
        assert_eq!(h.lookup(ip("1.0.1.1")), GeoInfo::default());
        assert_eq!(
            h.lookup(ip("2001::1")),
            GeoInfo::default(),
            "IPv6 in an IPv4-only file"
        );
    }

    #[test]
    fn records_of_an_unknown_shape_fail_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.mmdb");
        write_mmdb(
            &path,
            "odd",
            32,
            vec![(
                v4("1.0.0.0"),
                8,
                Val::Map(vec![("country", Val::Str("GB"))]),
            )],
        );
        let cfg = GeoIpConfig {
            city: Some(PathList::from(&path)),
            ..GeoIpConfig::default()
        };
        let err = GeoIp::open(&cfg).unwrap_err();
        assert!(matches!(err, GeoIpError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("odd.mmdb"), "{err}");
    }

    #[test]
    fn fields_of_unexpected_scalar_types_read_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lenient.mmdb");
        write_mmdb(
            &path,
            "lenient",
            32,
            vec![(
                v4("1.0.0.0"),
                8,
                Val::Map(vec![
                    ("city", Val::U32(5)),
                    ("country_code", Val::Str("DE")),
                    ("latitude", Val::Str("52.5")),
                    ("longitude", Val::Array(vec![Val::U16(1)])),
                ]),
            )],
        );
        let cfg = GeoIpConfig {
            city: Some(PathList::from(&path)),
            ..GeoIpConfig::default()
        };
        let mut h = Arc::new(GeoIp::open(&cfg).unwrap().unwrap()).handle();
        let want = GeoInfo {
            country_iso: s("DE"),
            country_name: s("Germany"),
            ..GeoInfo::default()
        };
        assert_eq!(h.lookup(ip("1.2.3.4")), want);
    }
}
