//! The automatic response: addresses blocked in an AWS WAF IP set.
//!
//! [`ResponseConfig`] is the `[response]` section; [`IpSet`] changes the set
//! with `GetIPSet` → `UpdateIPSet` under its lock token, retrying the
//! conflicts another writer causes, within WAF's limits.

mod ip_set;

use std::net::IpAddr;

pub use ip_set::{Change, IpSet, IpSetError, IpSetState, IpVersion, MAX_ADDRESSES};
pub use ipnet::IpNet;
use serde::Deserialize;

use crate::SinkError;

/// `[response]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseConfig {
    /// The IP set's name.
    pub ip_set_name: String,
    /// The IP set's id (from `CreateIPSet` or the console).
    pub ip_set_id: String,
    /// `REGIONAL` (ALB, API Gateway, AppSync, Cognito) or `CLOUDFRONT`.
    #[serde(default)]
    pub scope: Scope,
    /// The set's region; CloudFront sets live in `us-east-1`. Default: the
    /// AWS chain's.
    pub region: Option<String>,
    /// Another WAFv2 endpoint (a stand-in, a VPC endpoint).
    pub endpoint: Option<String>,
    /// CIDRs that are never blocked: offices, health checkers, the load
    /// balancer, private ranges.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Decide and report, but never call `UpdateIPSet`.
    #[serde(default)]
    pub dry_run: bool,
}

/// Where the IP set is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Scope {
    /// A regional resource: ALB, API Gateway, AppSync, Cognito, App Runner.
    #[default]
    #[serde(rename = "REGIONAL")]
    Regional,
    /// A CloudFront distribution (the set is in `us-east-1`).
    #[serde(rename = "CLOUDFRONT")]
    Cloudfront,
}

impl ResponseConfig {
    /// Checks what serde cannot; errors name the key.
    pub fn check(&self) -> Result<(), SinkError> {
        let bad = |key: &'static str, why: String| SinkError::Config { key, why };
        let name_ok = |s: &str| {
            (1..=128).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !name_ok(&self.ip_set_name) {
            return Err(bad(
                "response.ip_set_name",
                format!(
                    "{:?}: WAF names are 1 to 128 letters, digits, '-' or '_'",
                    self.ip_set_name
                ),
            ));
        }
        let id_ok = (1..=36).contains(&self.ip_set_id.len())
            && self
                .ip_set_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !id_ok {
            return Err(bad(
                "response.ip_set_id",
                format!(
                    "{:?}: WAF ids are 1 to 36 letters, digits or '-'",
                    self.ip_set_id
                ),
            ));
        }
        if self.scope == Scope::Cloudfront
            && self.region.as_deref().is_some_and(|r| r != "us-east-1")
        {
            return Err(bad(
                "response.region",
                "CLOUDFRONT IP sets are managed in us-east-1".into(),
            ));
        }
        if let Some(endpoint) = &self.endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(bad(
                    "response.endpoint",
                    format!("{endpoint:?} is not an http(s) URL"),
                ));
            }
        }
        self.allow_list()?;
        Ok(())
    }

    /// `allow`, parsed; a bare address is its own /32 or /128.
    pub fn allow_list(&self) -> Result<AllowList, SinkError> {
        let nets = self
            .allow
            .iter()
            .map(|s| parse_net(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| SinkError::Config {
                key: "response.allow",
                why,
            })?;
        Ok(AllowList { nets })
    }
}

/// Addresses that are never blocked.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    nets: Vec<IpNet>,
}

impl AllowList {
    /// The allowed CIDR that holds `ip`, if any.
    pub fn holding(&self, ip: IpAddr) -> Option<IpNet> {
        self.nets.iter().copied().find(|n| n.contains(&ip))
    }

    /// The allowed CIDR that overlaps `net`, if any: blocking a range that
    /// holds an allowed address would block it too.
    pub fn overlapping(&self, net: IpNet) -> Option<IpNet> {
        self.nets
            .iter()
            .copied()
            .find(|a| a.contains(&net.network()) || net.contains(&a.network()))
    }
}

/// A CIDR (`203.0.113.0/24`, `2001:db8::/32`) or a bare address (its /32 or
/// /128), in its canonical form (host bits cleared), as WAF stores it.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{s:?} is neither an IP address nor a CIDR"))?,
    };
    Ok(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<ResponseConfig, String> {
        let text = format!("ip_set_name = \"seclake-blocked\"\nip_set_id = \"a1b2\"\n{extra}");
        toml::from_str(&text).map_err(|e| e.to_string())
    }

    #[test]
    fn the_issue_keys_parse_and_check() {
        let cfg = config(
            "scope = \"REGIONAL\"\nregion = \"ap-northeast-2\"\nendpoint = \"http://127.0.0.1:5000\"\n\
             allow = [\"10.0.0.0/8\", \"203.0.113.7/32\"]\ndry_run = false\n",
        )
        .expect("parses");
        cfg.check().expect("valid");
        assert_eq!(cfg.scope, Scope::Regional);
        let allow = cfg.allow_list().expect("allow list");
        assert!(allow.holding("10.20.30.40".parse().expect("ip")).is_some());
        assert!(allow.holding("203.0.113.8".parse().expect("ip")).is_none());
        assert!(
            allow
                .overlapping(parse_net("10.1.0.0/16").expect("net"))
                .is_some()
        );
        assert!(
            allow
                .overlapping(parse_net("0.0.0.0/0").expect("net"))
                .is_some()
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let key = |extra: &str| match config(extra).expect("parses").check() {
            Err(SinkError::Config { key, .. }) => key,
            other => panic!("{extra}: {other:?}"),
        };
        assert_eq!(key("allow = [\"10.0.0.300/8\"]"), "response.allow");
        assert_eq!(key("endpoint = \"127.0.0.1:5000\""), "response.endpoint");
        assert_eq!(
            key("scope = \"CLOUDFRONT\"\nregion = \"eu-west-1\""),
            "response.region"
        );
        let err = config("scope = \"GLOBAL\"").expect_err("unknown scope");
        assert!(err.contains("REGIONAL"), "{err}");
        let bad_name: ResponseConfig =
            toml::from_str("ip_set_name = \"a b\"\nip_set_id = \"x\"").expect("parses");
        assert!(matches!(
            bad_name.check(),
            Err(SinkError::Config {
                key: "response.ip_set_name",
                ..
            })
        ));
    }

    #[test]
    fn addresses_become_their_host_cidr_and_cidrs_are_canonical() {
        assert_eq!(
            parse_net("198.51.100.7").expect("v4").to_string(),
            "198.51.100.7/32"
        );
        assert_eq!(
            parse_net("2001:db8::1").expect("v6").to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            parse_net("198.51.100.7/24").expect("cidr").to_string(),
            "198.51.100.0/24"
        );
        assert!(parse_net("example.com").is_err());
    }
}
