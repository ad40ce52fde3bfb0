use std::fmt;
use std::sync::Arc;

use serde::Serialize;

/// Where a record came from. It travels with every record that goes to the
/// dead-letter output, so an operator can find the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Position {
    /// A line of a file (or of stdin, whose origin is `stdin`), 1-based.
    Line {
        /// The file path, or `stdin`.
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
        }
    }
}
