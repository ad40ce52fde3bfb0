use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// Where a record came from. It travels with every record that goes to the
/// dead-letter output, so an operator can find the original.
///
/// Each variant holds what its source needs to find one record again, and
/// nothing is narrowed: Kinesis sequence numbers are kept as the decimal
/// strings the service returns (up to 128 digits), not squeezed into an
/// integer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Position {
    /// A line of a file (or of stdin, whose origin is `stdin`), 1-based.
    Line {
        /// The file path, `stdin`, or the generator's description.
        origin: Arc<str>,
        /// The 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// The topic.
        topic: Arc<str>,
        /// The partition.
        partition: i32,
        /// The record's offset in the partition.
        offset: i64,
        /// The record's key, UTF-8 with invalid bytes replaced; none when unkeyed.
        key: Option<String>,
    },
    /// A Kinesis Data Streams record, or one user record inside a KPL
    /// aggregate.
    Kinesis {
        /// The stream name.
        stream: Arc<str>,
        /// The shard id, e.g. `shardId-000000000002`.
        shard_id: Arc<str>,
        /// The Kinesis record's sequence number.
        sequence_number: SequenceNumber,
        /// The user record's index inside a KPL aggregate; none when the
        /// Kinesis record is not aggregated.
        sub_sequence: Option<u32>,
    },
    /// A record of an Amazon Data Firehose HTTP endpoint delivery.
    Firehose {
        /// The delivery's `requestId` (also in the `X-Amz-Firehose-Request-Id` header).
        request_id: Arc<str>,
        /// The record's 0-based index in the delivery's `records` array.
        record_index: u32,
    },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line { origin, line } => write!(f, "{origin}:{line}"),
            Position::Kafka {
                topic,
                partition,
                offset,
                ..
            } => write!(f, "kafka:{topic}/{partition}@{offset}"),
            Position::Kinesis {
                stream,
                shard_id,
                sequence_number,
                sub_sequence,
            } => {
                write!(f, "kinesis:{stream}/{shard_id}@{sequence_number}")?;
                match sub_sequence {
                    Some(sub) => write!(f, "#{sub}"),
                    None => Ok(()),
                }
            }
            Position::Firehose {
                request_id,
                record_index,
            } => write!(f, "firehose:{request_id}#{record_index}"),
        }
    }
}

/// A Kinesis sequence number: 1 to 128 decimal digits, without leading
/// zeros. Compared as the number it is (a longer number is larger), which
/// is the order of records in a shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

/// A string that is not a Kinesis sequence number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Kinesis sequence number (1 to 128 decimal digits): {0:?}")]
pub struct BadSequenceNumber(pub String);

impl SequenceNumber {
    /// The longest sequence number the Kinesis API allows.
    pub const MAX_DIGITS: usize = 128;

    /// Checks and wraps a sequence number as Kinesis returns it.
    pub fn new(digits: &str) -> Result<SequenceNumber, BadSequenceNumber> {
        let valid = !digits.is_empty()
            && digits.len() <= Self::MAX_DIGITS
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if valid {
            Ok(SequenceNumber(digits.into()))
        } else {
            Err(BadSequenceNumber(digits.chars().take(140).collect()))
        }
    }

    /// The decimal digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // No leading zeros, so the longer number is the larger one.
        (self.0.len(), self.as_str()).cmp(&(other.0.len(), other.as_str()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for SequenceNumber {
    /// As a JSON string: no JSON reader keeps 128 digits as a number.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_of_128_digits_are_kept_and_ordered_as_numbers() {
        let longest = format!("4{}", "9".repeat(127));
        let big = SequenceNumber::new(&longest).unwrap();
        let small = SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")
            .unwrap();
        assert_eq!(big.as_str().len(), 128);
        assert!(small < big);
        assert!(SequenceNumber::new("9").unwrap() < SequenceNumber::new("10").unwrap());
        let position = Position::Kinesis {
            stream: "waf-logs".into(),
            shard_id: "shardId-000000000002".into(),
            sequence_number: big,
            sub_sequence: Some(3),
        };
        let json = serde_json::to_value(&position).unwrap();
        assert_eq!(json["kind"], "kinesis");
        assert_eq!(json["sequence_number"], longest.as_str());
        assert_eq!(json["sub_sequence"], 3);
        assert_eq!(
            position.to_string(),
            format!("kinesis:waf-logs/shardId-000000000002@{longest}#3")
        );
    }

    #[test]
    fn what_is_not_a_sequence_number_is_refused() {
        let too_long = "1".repeat(129);
        for bad in ["", "12a", "-1", "007", " 1", too_long.as_str()] {
            assert!(SequenceNumber::new(bad).is_err(), "{bad:?}");
        }
        assert!(SequenceNumber::new("0").is_ok());
    }

    #[test]
    fn firehose_positions_name_the_request_and_the_record() {
        let position = Position::Firehose {
            request_id: "ed4ff6c6-4d3c-4e5e-9bb6-1b1c9e4a0f8a".into(),
            record_index: 41,
        };
        let json = serde_json::to_value(&position).unwrap();
        assert_eq!(json["kind"], "firehose");
        assert_eq!(json["record_index"], 41);
        assert_eq!(
            position.to_string(),
            "firehose:ed4ff6c6-4d3c-4e5e-9bb6-1b1c9e4a0f8a#41"
        );
    }
}
