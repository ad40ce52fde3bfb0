//! `[[source]] type = "kinesis"`: the keys and what is checked before
//! anything is connected.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::Format;
use crate::source::KeyError;

/// One Kinesis data stream, its shards shared through a lease table with
/// every other worker of the same application.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KinesisConfig {
    /// Format of every record: `waf`, `falco`, `app` or `guardduty`.
    pub format: Format,
    /// The stream's name.
    pub stream: String,
    /// The stream's region (default: the AWS chain's).
    pub region: Option<String>,
    /// The Kinesis endpoint, for a local stand-in or a VPC endpoint.
    pub endpoint: Option<String>,
    /// The DynamoDB table of shard leases and checkpoints, created if
    /// missing; every worker of one application names the same table.
    pub lease_table: String,
    /// The DynamoDB endpoint of the lease table.
    pub lease_endpoint: Option<String>,
    /// Where a shard without a checkpoint starts (default `trim_horizon`).
    #[serde(default)]
    pub start: Start,
    /// With `start = "at_timestamp"`: the RFC 3339 time to start at.
    pub start_timestamp: Option<String>,
    /// A lease not renewed for this long is taken over (default 10 s).
    #[serde(default = "default_lease_timeout_secs")]
    pub lease_timeout_secs: u64,
    /// This worker's id in the lease table (default `<host>-<pid>-<random>`).
    pub worker_id: Option<String>,
    /// Longest record accepted (default 1 MiB); longer ones go to the
    /// dead-letter output holding their first `max_record_bytes`.
    #[serde(default = "crate::file::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

/// `start`: where a shard with no checkpoint begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// The oldest record the stream retains.
    #[default]
    TrimHorizon,
    /// Only records put from now on.
    Latest,
    /// Records from `start_timestamp` on.
    AtTimestamp,
}

fn default_lease_timeout_secs() -> u64 {
    10
}

impl KinesisConfig {
    /// Checks what serde cannot; connects to nothing.
    pub fn check(&self) -> Result<(), KeyError> {
        for (key, value) in [("stream", &self.stream), ("lease_table", &self.lease_table)] {
            if value.trim().is_empty() {
                return Err(KeyError::new(key, "must not be empty"));
            }
        }
        // The service's own limits on names.
        if self.stream.len() > 128 || !self.stream.bytes().all(name_byte) {
            return Err(KeyError::new(
                "stream",
                "a stream name is 1 to 128 of a-z, A-Z, 0-9, '_', '-' and '.'",
            ));
        }
        if !(3..=255).contains(&self.lease_table.len()) || !self.lease_table.bytes().all(name_byte)
        {
            return Err(KeyError::new(
                "lease_table",
                "a DynamoDB table name is 3 to 255 of a-z, A-Z, 0-9, '_', '-' and '.'",
            ));
        }
        for (key, value) in [
            ("region", &self.region),
            ("endpoint", &self.endpoint),
            ("lease_endpoint", &self.lease_endpoint),
            ("worker_id", &self.worker_id),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(KeyError::new(key, "must not be empty when set"));
            }
        }
        for (key, value) in [
            ("endpoint", &self.endpoint),
            ("lease_endpoint", &self.lease_endpoint),
        ] {
            if let Some(url) = value
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(KeyError::new(
                    key,
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        match (self.start, &self.start_timestamp) {
            (Start::AtTimestamp, None) => {
                return Err(KeyError::new(
                    "start_timestamp",
                    "start = \"at_timestamp\" needs the time, e.g. \"2026-11-24T00:00:00Z\"",
                ));
            }
            (Start::AtTimestamp, Some(_)) => {
                self.start_time()?;
            }
            (_, Some(_)) => {
                return Err(KeyError::new(
                    "start_timestamp",
                    "only read with start = \"at_timestamp\"",
                ));
            }
            (_, None) => {}
        }
        if self.lease_timeout_secs < 2 {
            return Err(KeyError::new(
                "lease_timeout_secs",
                "must be at least 2: leases are renewed three times per timeout",
            ));
        }
        if self.max_record_bytes == 0 {
            return Err(KeyError::new("max_record_bytes", "must be at least 1"));
        }
        Ok(())
    }

    /// `start_timestamp`, parsed.
    pub fn start_time(&self) -> Result<Option<DateTime<Utc>>, KeyError> {
        self.start_timestamp
            .as_deref()
            .map(|t| {
                DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        KeyError::new(
                            "start_timestamp",
                            format!("{t:?} is not an RFC 3339 time: {e}"),
                        )
                    })
            })
            .transpose()
    }
}

fn name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_EXAMPLE: &str = r#"
        format = "waf"
        stream = "waf-logs"
        region = "ap-northeast-2"
        endpoint = "http://127.0.0.1:4567"
        lease_table = "seclake-leases"
        lease_endpoint = "http://127.0.0.1:5000"
        # start = "trim_horizon"
        # lease_timeout_secs = 10
    "#;

    fn parsed(extra: &str) -> KinesisConfig {
        toml::from_str(&format!("{ISSUE_EXAMPLE}\n{extra}")).expect("config")
    }

    fn refused(extra: &str) -> String {
        parsed(extra).check().expect_err("refused").key
    }

    #[test]
    fn the_documented_keys_parse_with_their_defaults() {
        let cfg = parsed("");
        cfg.check().expect("valid");
        assert_eq!(cfg.format, Format::Waf);
        assert_eq!(cfg.stream, "waf-logs");
        assert_eq!(cfg.region.as_deref(), Some("ap-northeast-2"));
        assert_eq!(cfg.lease_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(cfg.start, Start::TrimHorizon);
        assert_eq!(cfg.lease_timeout_secs, 10);
        assert_eq!(cfg.max_record_bytes, 1 << 20);
        assert_eq!(parsed("start = \"latest\"").start, Start::Latest);
    }

    #[test]
    fn at_timestamp_needs_an_rfc3339_time_and_nothing_else_takes_one() {
        let cfg = parsed("start = \"at_timestamp\"\nstart_timestamp = \"2026-11-24T00:00:00Z\"");
        cfg.check().expect("valid");
        assert_eq!(
            cfg.start_time().expect("time").map(|t| t.timestamp()),
            Some(1_795_478_400)
        );
        assert_eq!(refused("start = \"at_timestamp\""), "start_timestamp");
        assert_eq!(
            refused("start = \"at_timestamp\"\nstart_timestamp = \"yesterday\""),
            "start_timestamp"
        );
        assert_eq!(
            refused("start_timestamp = \"2026-11-24T00:00:00Z\""),
            "start_timestamp"
        );
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        let mut cfg = parsed("");
        cfg.stream = "waf logs".into();
        assert_eq!(cfg.check().expect_err("refused").key, "stream");
        let mut cfg = parsed("");
        cfg.lease_table = "ab".into();
        assert_eq!(cfg.check().expect_err("refused").key, "lease_table");
        let mut cfg = parsed("");
        cfg.endpoint = Some("127.0.0.1:4567".into());
        assert_eq!(cfg.check().expect_err("refused").key, "endpoint");
        assert_eq!(refused("lease_timeout_secs = 1"), "lease_timeout_secs");
        assert_eq!(refused("worker_id = \" \""), "worker_id");
        assert_eq!(refused("max_record_bytes = 0"), "max_record_bytes");
    }

    #[test]
    fn unknown_keys_and_start_values_are_refused_by_serde() {
        let typo =
            toml::from_str::<KinesisConfig>(&format!("{ISSUE_EXAMPLE}\nlease_tabel = \"x\""));
        assert!(
            typo.expect_err("refused")
                .to_string()
                .contains("lease_tabel")
        );
        let start =
            toml::from_str::<KinesisConfig>(&format!("{ISSUE_EXAMPLE}\nstart = \"earliest\""));
        assert!(start.expect_err("refused").to_string().contains("earliest"));
    }
}
