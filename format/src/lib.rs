//! The log formats seclake understands.
//!
//! A *format* is what a record is (an AWS WAF log, a Falco alert, an app
//! access-log line, a GuardDuty finding); a *source* is where records come
//! from (a file, Kafka, Kinesis). Every crate names formats with this one
//! enum: ingest tags batches with it, enrich picks its parser and rules by
//! it, the lake partitions by it and the fixtures generate it.

pub mod app_log;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One log format; each source delivers records of exactly one.
///
/// The discriminants seed the event id (`seclake_enrich::parse::event_id`),
/// so they are part of the lake's contract: never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// AWS WAF v2 web ACL traffic logs, one JSON object per record.
    Waf = 0,
    /// Falco alerts: Falco's JSON output or falcosidekick payloads.
    Falco = 1,
    /// The commerce API's JSON access log.
    App = 2,
    /// Amazon GuardDuty findings: EventBridge "GuardDuty Finding" events, or
    /// bare findings as GuardDuty exports them to S3.
    GuardDuty = 3,
}

impl Format {
    /// Every format, in a fixed order (counters, partitions, manifests).
    pub const ALL: [Format; 4] = [Format::Waf, Format::Falco, Format::App, Format::GuardDuty];

    /// The lowercase name used in config, partitions, metric labels and the
    /// lake's `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Waf => "waf",
            Format::Falco => "falco",
            Format::App => "app",
            Format::GuardDuty => "guardduty",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownFormat(pub String);

impl fmt::Display for UnknownFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown format {:?}: expected waf, falco, app or guardduty",
            self.0
        )
    }
}

impl std::error::Error for UnknownFormat {}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_discriminants_are_the_event_id_seeds() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert_eq!(
            Format::ALL.map(|f| f as u64),
            [0, 1, 2, 3],
            "event ids depend on these"
        );
        assert!(
            "waff"
                .parse::<Format>()
                .unwrap_err()
                .to_string()
                .contains("waff")
        );
    }
}
