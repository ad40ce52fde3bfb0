//! Tagging of private, reserved and other non-public address ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address an IP is; only [`IpClass::Public`] addresses are
/// looked up in the GeoIP databases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum IpClass {
    /// Globally routable unicast address.
    #[default]
    Public,
    /// RFC 1918 IPv4 (10/8, 172.16/12, 192.168/16), IPv6 unique local
    /// (fc00::/7), deprecated IPv6 site-local (fec0::/10) and NAT64
    /// local-use (64:ff9b:1::/48).
    Private,
    /// 127.0.0.0/8 and ::1.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT shared space, 100.64.0.0/10.
    Cgnat,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// Documentation ranges: 192.0.2/24, 198.51.100/24, 203.0.113/24,
    /// 2001:db8::/32 and 3fff::/20.
    Documentation,
    /// Other special-purpose space: 0/8, 192.0.0/24, 192.88.99/24 (6to4
    /// relay), 198.18/15 (benchmarking), 240/4 (including the broadcast
    /// address), IPv6 outside 2000::/3 not listed above, 2001:2::/48 and
    /// 2001:10::/28.
    Reserved,
    /// 0.0.0.0 and ::.
    Unspecified,
}

impl IpClass {
    /// Stable lower-case name, as written to the lake: `"public"`,
    /// `"private"`, `"loopback"`, `"link_local"`, `"cgnat"`, `"multicast"`,
    /// `"documentation"`, `"reserved"` or `"unspecified"`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpClass::Public => "public",
            IpClass::Private => "private",
            IpClass::Loopback => "loopback",
            IpClass::LinkLocal => "link_local",
            IpClass::Cgnat => "cgnat",
            IpClass::Multicast => "multicast",
            IpClass::Documentation => "documentation",
            IpClass::Reserved => "reserved",
            IpClass::Unspecified => "unspecified",
        }
    }
}

impl fmt::Display for IpClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classifies an address without any database. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`) are classified as the IPv4 address they carry.
pub fn classify(ip: IpAddr) -> IpClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> IpClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() => IpClass::Unspecified,
        (0, _, _) => IpClass::Reserved,
        (10, _, _) => IpClass::Private,
        (100, 64..=127, _) => IpClass::Cgnat,
        (127, _, _) => IpClass::Loopback,
        (169, 254, _) => IpClass::LinkLocal,
        (172, 16..=31, _) => IpClass::Private,
        (192, 0, 0) => IpClass::Reserved,
        (192, 0, 2) => IpClass::Documentation,
        (192, 88, 99) => IpClass::Reserved,
        (192, 168, _) => IpClass::Private,
        (198, 18..=19, _) => IpClass::Reserved,
        (198, 51, 100) => IpClass::Documentation,
        (203, 0, 113) => IpClass::Documentation,
        (224..=239, _, _) => IpClass::Multicast,
        (240..=255, _, _) => IpClass::Reserved,
        _ => IpClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> IpClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        IpClass::Unspecified
    } else if ip.is_loopback() {
        IpClass::Loopback
    } else if s[0] & 0xfe00 == 0xfc00 {
        IpClass::Private
    } else if s[0] & 0xffc0 == 0xfe80 {
        IpClass::LinkLocal
    } else if s[0] & 0xffc0 == 0xfec0 {
        IpClass::Private
    } else if s[0] & 0xff00 == 0xff00 {
        IpClass::Multicast
    } else if (s[0] == 0x2001 && s[1] == 0x0db8) || (s[0] == 0x3fff && s[1] < 0x1000) {
        IpClass::Documentation
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
        IpClass::Private
    } else if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix: a translated public IPv4 address.
        IpClass::Public
    } else if s[0] & 0xe000 != 0x2000
        || (s[0] == 0x2001 && s[1] == 0x0002 && s[2] == 0)
        || (s[0] == 0x2001 && s[1] & 0xfff0 == 0x0010)
    {
        IpClass::Reserved
    } else {
        IpClass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> IpClass {
        classify(s.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges() {
        assert_eq!(c("0.0.0.0"), IpClass::Unspecified);
        assert_eq!(c("0.1.2.3"), IpClass::Reserved);
        assert_eq!(c("9.255.255.255"), IpClass::Public);
        assert_eq!(c("10.0.0.1"), IpClass::Private);
        assert_eq!(c("11.0.0.0"), IpClass::Public);
        assert_eq!(c("100.63.255.255"), IpClass::Public);
        assert_eq!(c("100.64.0.0"), IpClass::Cgnat);
        assert_eq!(c("100.127.255.255"), IpClass::Cgnat);
        assert_eq!(c("100.128.0.0"), IpClass::Public);
        assert_eq!(c("127.0.0.1"), IpClass::Loopback);
        assert_eq!(c("169.254.1.1"), IpClass::LinkLocal);
        assert_eq!(c("172.15.255.255"), IpClass::Public);
        assert_eq!(c("172.16.0.0"), IpClass::Private);
        assert_eq!(c("172.31.255.255"), IpClass::Private);
        assert_eq!(c("172.32.0.0"), IpClass::Public);
        assert_eq!(c("192.0.0.8"), IpClass::Reserved);
        assert_eq!(c("192.0.2.7"), IpClass::Documentation);
        assert_eq!(c("192.0.3.1"), IpClass::Public);
        assert_eq!(c("192.88.99.1"), IpClass::Reserved);
        assert_eq!(c("192.168.1.1"), IpClass::Private);
        assert_eq!(c("198.17.255.255"), IpClass::Public);
        assert_eq!(c("198.18.0.1"), IpClass::Reserved);
        assert_eq!(c("198.19.255.255"), IpClass::Reserved);
        assert_eq!(c("198.51.100.9"), IpClass::Documentation);
        assert_eq!(c("203.0.113.200"), IpClass::Documentation);
        assert_eq!(c("224.0.0.1"), IpClass::Multicast);
        assert_eq!(c("239.255.255.255"), IpClass::Multicast);
        assert_eq!(c("240.0.0.1"), IpClass::Reserved);
        assert_eq!(c("255.255.255.255"), IpClass::Reserved);
        assert_eq!(c("8.8.8.8"), IpClass::Public);
        assert_eq!(c("223.255.255.255"), IpClass::Public);
    }

    #[test]
    fn ipv6_ranges() {
        assert_eq!(c("::"), IpClass::Unspecified);
        assert_eq!(c("::1"), IpClass::Loopback);
        assert_eq!(c("::2"), IpClass::Reserved);
        assert_eq!(c("::ffff:10.1.2.3"), IpClass::Private);
        assert_eq!(c("::ffff:8.8.8.8"), IpClass::Public);
        assert_eq!(c("::ffff:127.0.0.1"), IpClass::Loopback);
        assert_eq!(c("64:ff9b::808:808"), IpClass::Public);
        assert_eq!(c("64:ff9b:1::1"), IpClass::Private);
        assert_eq!(c("100::1"), IpClass::Reserved);
        assert_eq!(c("2001::1"), IpClass::Public);
        assert_eq!(c("2001:2::1"), IpClass::Reserved);
        assert_eq!(c("2001:10::1"), IpClass::Reserved);
        assert_eq!(c("2001:20::1"), IpClass::Public);
        assert_eq!(c("2001:db8::1"), IpClass::Documentation);
        assert_eq!(c("2001:db9::1"), IpClass::Public);
        assert_eq!(c("3fff::1"), IpClass::Documentation);
        assert_eq!(c("3fff:fff::1"), IpClass::Documentation);
        assert_eq!(c("3fff:1000::1"), IpClass::Public);
        assert_eq!(c("2a00:1450::1"), IpClass::Public);
        assert_eq!(c("4000::1"), IpClass::Reserved);
        assert_eq!(c("fc00::1"), IpClass::Private);
        assert_eq!(c("fdff::1"), IpClass::Private);
        assert_eq!(c("fe80::1"), IpClass::LinkLocal);
        assert_eq!(c("febf::1"), IpClass::LinkLocal);
        assert_eq!(c("fec0::1"), IpClass::Private);
        assert_eq!(c("ff02::1"), IpClass::Multicast);
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(IpClass::default().as_str(), "public");
        assert_eq!(IpClass::LinkLocal.to_string(), "link_local");
        assert_eq!(IpClass::Cgnat.as_str(), "cgnat");
    }
}
