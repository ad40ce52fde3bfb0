//! The automatic response: addresses blocked in an AWS WAF IP set.
//!
//! [`ResponseConfig`] is the `[response]` section and the sink's spec;
//! [`Decider`] decides blocks from the scored events; [`IpSet`] changes the
//! set with `GetIPSet` → `UpdateIPSet` under its lock token, retrying the
//! conflicts another writer causes, within WAF's limits; [`BlockTable`]
//! keeps who is blocked until when across restarts; [`ResponseSink`] runs
//! them in the pipeline, and every decision is audited in the lake.

pub mod audit;
mod decide;
mod ip_set;
mod keys;
mod sink;
mod state;

use std::net::IpAddr;
use std::time::Duration;

pub use decide::{Block, BlockPolicy, Decider, Observed, Trigger, Verdict};
pub use ip_set::{Change, IpSet, IpSetError, IpSetState, IpVersion, MAX_ADDRESSES};
pub use ipnet::IpNet;
pub use keys::{AccessKeys, KeyError, KeyMode, KeyOutcome, access_keys};
use seclake_enrich::threat::ThreatLevel;
use seclake_enrich::time_window::config::duration;
use serde::Deserialize;
pub use sink::ResponseSink;
pub use state::{BlockTable, StateError, StoredBlock};

use crate::{LakeConfig, SinkError};

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
    /// The DynamoDB table that keeps who is blocked, why and until when
    /// (hash key `net`, a string; created by the operator).
    pub state_table: Option<String>,
    /// Another DynamoDB endpoint for it (a stand-in, a VPC endpoint).
    pub state_endpoint: Option<String>,
    /// An event at this level blocks its address at once (`critical`).
    pub block_level: Option<String>,
    /// Events at this level or above count towards a sustained block (`high`).
    pub sustained_level: Option<String>,
    /// This many of them within `sustained_window` block the address (5).
    pub sustained_events: Option<usize>,
    /// In event time (`"1m"`).
    #[serde(default, deserialize_with = "duration")]
    pub sustained_window: Option<Duration>,
    /// How long a block lasts (`"24h"`).
    #[serde(default, deserialize_with = "duration")]
    pub block_ttl: Option<Duration>,
    /// New blocks per minute at most (60); past it, addresses wait.
    pub max_blocks_per_minute: Option<u32>,
    /// A GuardDuty finding of this severity or above (`high`) blocks its
    /// remote address at once.
    pub guardduty_severity: Option<String>,
    /// Least time between two `UpdateIPSet` calls (`"1s"`: WAF allows one
    /// per second per account and region); blocks decided meanwhile share
    /// the next call.
    #[serde(default, deserialize_with = "duration")]
    pub update_interval: Option<Duration>,
    /// Addresses the set may hold (10,000, WAF's limit); lower it when the
    /// set is shared with another tool. Past it, this deployment's blocks
    /// are evicted, expired ones first, then the lowest scores.
    pub max_addresses: Option<usize>,
    /// The formats whose client addresses are blocked (default: every one
    /// but `falco`, whose `fd.rip` may be either end of a connection).
    pub block_formats: Option<Vec<seclake_ingest::Format>>,
    /// What to do about an AWS access key id found leaked in the logs or
    /// named by a GuardDuty finding: `off` (default), `dry_run` or `disable`
    /// (IAM `UpdateAccessKey` to `Inactive`).
    #[serde(default)]
    pub leaked_keys: KeyMode,
    /// IAM users whose keys are never deactivated (break-glass admins).
    #[serde(default)]
    pub protected_users: Vec<String>,
    /// Another IAM endpoint (a stand-in).
    pub iam_endpoint: Option<String>,
    /// The alert outputs and rules (`[alerts]`, `[[alert]]`); the rules with
    /// `format = "response"` alert on decisions. Filled in by the config
    /// loader.
    #[serde(skip)]
    pub alerts: Option<crate::alert::AlertSinkConfig>,
    /// The lake the audit events go to: the `[lake]` section, filled in by
    /// the config loader.
    #[serde(skip)]
    pub lake: Option<LakeConfig>,
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
        for (key, endpoint) in [
            ("response.endpoint", &self.endpoint),
            ("response.state_endpoint", &self.state_endpoint),
            ("response.iam_endpoint", &self.iam_endpoint),
        ] {
            let Some(endpoint) = endpoint else { continue };
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(bad(key, format!("{endpoint:?} is not an http(s) URL")));
            }
        }
        if let Some(table) = &self.state_table {
            let ok = (3..=255).contains(&table.len())
                && table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(bad(
                    "response.state_table",
                    format!(
                        "{table:?}: DynamoDB table names are 3 to 255 letters, digits, '_', '-' or '.'"
                    ),
                ));
            }
        }
        if self
            .update_interval
            .is_some_and(|i| i < Duration::from_millis(100))
        {
            return Err(bad(
                "response.update_interval",
                "must be at least 100ms".into(),
            ));
        }
        if self
            .max_addresses
            .is_some_and(|m| m == 0 || m > MAX_ADDRESSES)
        {
            return Err(bad(
                "response.max_addresses",
                format!("must be from 1 to {MAX_ADDRESSES}, WAF's limit per IP set"),
            ));
        }
        self.allow_list()?;
        self.policy()?;
        Ok(())
    }

    /// `update_interval` or its default, one second.
    pub fn update_interval(&self) -> Duration {
        self.update_interval.unwrap_or(Duration::from_secs(1))
    }

    /// `block_formats` or its default.
    pub fn block_formats(&self) -> Vec<seclake_ingest::Format> {
        self.block_formats.clone().unwrap_or_else(|| {
            seclake_ingest::Format::ALL
                .into_iter()
                .filter(|f| *f != seclake_ingest::Format::Falco)
                .collect()
        })
    }

    /// `max_addresses` or WAF's limit.
    pub fn max_addresses(&self) -> usize {
        self.max_addresses.unwrap_or(MAX_ADDRESSES)
    }

    /// When addresses are blocked: the policy keys over their defaults.
    pub fn policy(&self) -> Result<BlockPolicy, SinkError> {
        let bad = |key: &'static str, why: String| SinkError::Config { key, why };
        let level = |key: &'static str, value: &Option<String>, default: ThreatLevel| match value {
            None => Ok(default),
            Some(name) => ThreatLevel::from_name(name)
                .ok_or_else(|| bad(key, format!("{name:?}: use low, medium, high or critical"))),
        };
        let defaults = BlockPolicy::default();
        let policy = BlockPolicy {
            block_level: level(
                "response.block_level",
                &self.block_level,
                defaults.block_level,
            )?,
            sustained_level: level(
                "response.sustained_level",
                &self.sustained_level,
                defaults.sustained_level,
            )?,
            sustained_events: self.sustained_events.unwrap_or(defaults.sustained_events),
            sustained_window: self.sustained_window.unwrap_or(defaults.sustained_window),
            ttl: self.block_ttl.unwrap_or(defaults.ttl),
            max_per_minute: self
                .max_blocks_per_minute
                .unwrap_or(defaults.max_per_minute),
            finding_level: level(
                "response.guardduty_severity",
                &self.guardduty_severity,
                defaults.finding_level,
            )?,
        };
        if policy.sustained_level > policy.block_level {
            return Err(bad(
                "response.sustained_level",
                format!(
                    "{} is above block_level {}: events that block at once cannot count towards a sustained block",
                    policy.sustained_level, policy.block_level
                ),
            ));
        }
        if policy.sustained_events == 0 {
            return Err(bad(
                "response.sustained_events",
                "must be at least 1".into(),
            ));
        }
        if policy.sustained_window < Duration::from_secs(1) {
            return Err(bad(
                "response.sustained_window",
                "must be at least 1s".into(),
            ));
        }
        if policy.ttl < Duration::from_secs(60) {
            return Err(bad("response.block_ttl", "must be at least 1m".into()));
        }
        if policy.max_per_minute == 0 {
            return Err(bad(
                "response.max_blocks_per_minute",
                "must be at least 1".into(),
            ));
        }
        Ok(policy)
    }

    /// Credentials and region from the AWS chain, the region overridden by
    /// `region`: loaded once for the IP set and the block table.
    pub async fn aws(&self) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        loader.load().await
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

#[async_trait::async_trait]
impl crate::SinkSpec for ResponseConfig {
    fn name(&self) -> &'static str {
        "response"
    }

    fn takes(&self) -> crate::Takes {
        crate::Takes::Events
    }

    /// It acts on events; the lake never waits for WAF.
    fn acknowledges(&self) -> bool {
        false
    }

    fn check(&self) -> Result<(), SinkError> {
        ResponseConfig::check(self)
    }

    async fn open(&self) -> Result<Box<dyn crate::Sink>, SinkError> {
        Ok(Box::new(ResponseSink::open(self).await?))
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
            key("state_endpoint = \"dynamo\""),
            "response.state_endpoint"
        );
        assert_eq!(key("state_table = \"a b\""), "response.state_table");
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
    fn the_policy_keys_override_their_defaults_and_bad_ones_are_named() {
        let cfg = config(
            "block_level = \"high\"\nsustained_level = \"medium\"\nsustained_events = 3\n\
             sustained_window = \"30s\"\nblock_ttl = \"1h\"\nmax_blocks_per_minute = 10\n",
        )
        .expect("parses");
        let policy = cfg.policy().expect("valid");
        assert_eq!(policy.block_level, ThreatLevel::High);
        assert_eq!(policy.sustained_level, ThreatLevel::Medium);
        assert_eq!(policy.sustained_events, 3);
        assert_eq!(policy.sustained_window, Duration::from_secs(30));
        assert_eq!(policy.ttl, Duration::from_secs(3600));
        assert_eq!(policy.max_per_minute, 10);
        assert_eq!(
            config("").expect("parses").policy().expect("defaults"),
            BlockPolicy::default()
        );
        let key = |extra: &str| match config(extra).expect("parses").check() {
            Err(SinkError::Config { key, .. }) => key,
            other => panic!("{extra}: {other:?}"),
        };
        assert_eq!(key("block_level = \"severe\""), "response.block_level");
        assert_eq!(
            key("block_level = \"high\"\nsustained_level = \"critical\""),
            "response.sustained_level"
        );
        assert_eq!(key("sustained_events = 0"), "response.sustained_events");
        assert_eq!(key("block_ttl = \"10s\""), "response.block_ttl");
        assert_eq!(
            key("max_blocks_per_minute = 0"),
            "response.max_blocks_per_minute"
        );
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
