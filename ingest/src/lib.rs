//! Sources for seclake and the types every stage meets.
//!
//! A source reads raw records of one [`Format`], groups them into a [`Batch`] and
//! hands it to the pipeline. Each batch carries an [`Ack`]: the pipeline gives a
//! clone to every sink that receives any of the batch's records, and each sink
//! drops its clone only once the records are durable (or durably diverted to the
//! dead-letter output). When the last clone is gone the source's [`AckWaiter`]
//! resolves, and only then may the source commit the batch's offsets.

mod ack;
pub mod file;
pub mod firehose;
pub mod generate;
pub mod kafka;
pub mod kinesis;
mod position;
pub mod source;

pub use ack::{Ack, AckStatus, AckWaiter};
pub use position::{BadSequenceNumber, Position, SequenceNumber};
pub use seclake_format::Format;
pub use source::{
    BatchSender, Finished, KeyError, Outstanding, ReadStats, Shutdown, Source, SourceConfig,
    SourceContext, SourceSpec,
};

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

/// One raw record inside a [`Batch`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Byte range of the record in [`Batch::data`].
    pub start: u32,
    /// End of the byte range (exclusive).
    pub end: u32,
    /// Source-specific number that, with the batch's [`Origin`], locates the
    /// record: the 1-based line for lines, the offset for Kafka, the index in
    /// the batch (Kinesis) or in the delivery (Firehose).
    pub seq: u64,
    /// Why the source already knows the record is bad (none for almost all).
    pub flaw: Option<Flaw>,
}

/// Why a source knows a record is bad before it is parsed. The record goes
/// to the dead letters as the source read it, with this as the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Flaw {
    /// Longer than the source's limit: the record holds only its first bytes.
    #[error("record longer than the source's max_record_bytes; its first bytes are kept")]
    Truncated,
    /// A Kinesis record whose payload could not be unpacked (a KPL aggregate,
    /// a CloudWatch Logs subscription payload); the record is the payload.
    #[error("{0}")]
    Payload(kinesis::aggregate::Flaw),
}

impl Record {
    fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Where a batch's records came from. With a record's [`Record::seq`] it
/// gives the record's [`Position`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file, `stdin` or a generator; `seq` is the 1-based line number.
    Lines(Arc<str>),
    /// One partition of a Kafka topic; `seq` is the offset.
    Kafka {
        /// The topic.
        topic: Arc<str>,
        /// The partition.
        partition: i32,
        /// Each record's key as a byte range in [`Batch::data`], by record index.
        keys: Vec<Option<(u32, u32)>>,
    },
    /// One shard of a Kinesis stream; `seq` is the record's index in the batch.
    Kinesis {
        /// The stream name.
        stream: Arc<str>,
        /// The shard id.
        shard_id: Arc<str>,
        /// Each record's sequence number and KPL sub-sequence, by record index.
        sequences: Vec<(SequenceNumber, Option<u32>)>,
    },
    /// One Firehose HTTP endpoint delivery; `seq` is the record's index in
    /// the delivery.
    Firehose {
        /// The delivery's request id.
        request_id: Arc<str>,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Lines(origin) => f.write_str(origin),
            Origin::Kafka {
                topic, partition, ..
            } => write!(f, "kafka:{topic}/{partition}"),
            Origin::Kinesis {
                stream, shard_id, ..
            } => write!(f, "kinesis:{stream}/{shard_id}"),
            Origin::Firehose { request_id } => write!(f, "firehose:{request_id}"),
        }
    }
}

/// Raw records of one format from one origin, sharing one buffer and one [`Ack`].
#[derive(Debug)]
pub struct Batch {
    /// The format every record in the batch is in.
    pub format: Format,
    /// Where the records came from: a file, stdin, a Kafka partition.
    pub origin: Origin,
    /// The bytes the records point into.
    pub data: Bytes,
    /// The records, in source order.
    pub records: Vec<Record>,
    /// Completes when every sink has made the batch durable.
    pub ack: Ack,
}

impl Batch {
    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Raw bytes of record `i`.
    pub fn record(&self, i: usize) -> &[u8] {
        &self.data[self.records[i].range()]
    }

    /// Raw bytes of record `i`, sharing the batch's buffer.
    pub fn record_bytes(&self, i: usize) -> Bytes {
        self.data.slice(self.records[i].range())
    }

    /// Where record `i` came from.
    pub fn position(&self, i: usize) -> Position {
        let seq = self.records[i].seq;
        match &self.origin {
            Origin::Lines(origin) => Position::Line {
                origin: Arc::clone(origin),
                line: seq,
            },
            Origin::Kafka {
                topic,
                partition,
                keys,
            } => Position::Kafka {
                topic: Arc::clone(topic),
                partition: *partition,
                offset: i64::try_from(seq).unwrap_or(i64::MAX),
                key: keys.get(i).copied().flatten().map(|(start, end)| {
                    String::from_utf8_lossy(&self.data[start as usize..end as usize]).into_owned()
                }),
            },
            Origin::Kinesis {
                stream,
                shard_id,
                sequences,
            } => {
                let (sequence_number, sub_sequence) = sequences[i].clone();
                Position::Kinesis {
                    stream: Arc::clone(stream),
                    shard_id: Arc::clone(shard_id),
                    sequence_number,
                    sub_sequence,
                }
            }
            Origin::Firehose { request_id } => Position::Firehose {
                request_id: Arc::clone(request_id),
                record_index: u32::try_from(seq).unwrap_or(u32::MAX),
            },
        }
    }

    /// Iterates over `(raw bytes, record)` pairs in source order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Record)> {
        self.records.iter().map(|r| (&self.data[r.range()], r))
    }
}

/// Errors a source reports; each names the input it was reading.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The configured path or glob matched nothing.
    #[error("no file matches {pattern:?}")]
    NoMatch {
        /// The configured path or glob.
        pattern: String,
    },
    /// The glob pattern itself is malformed.
    #[error("invalid glob {pattern:?}: {source}")]
    BadGlob {
        /// The configured pattern.
        pattern: String,
        /// What is wrong with it.
        source: glob::PatternError,
    },
    /// Reading an input failed.
    #[error("reading {origin}: {source}")]
    Io {
        /// The file (or `stdin`) being read.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pipeline stopped taking batches (it is shutting down).
    #[error("pipeline closed")]
    Closed,
    /// A Kinesis stream or its lease table can't be used.
    #[error("kinesis source {stream:?}: {message}")]
    Kinesis {
        /// The stream the source reads.
        stream: String,
        /// What the service said.
        message: String,
    },
    /// The Firehose endpoint can't listen or its buffer can't be used.
    #[error("firehose source on {listen}: {message}")]
    Firehose {
        /// The configured `listen` address.
        listen: String,
        /// What went wrong, naming the key or file.
        message: String,
    },
    /// A Kafka client could not be created or failed for good.
    #[error("kafka source {topic:?}: {message}")]
    Kafka {
        /// The topic the source reads.
        topic: String,
        /// What librdkafka said, and what to do.
        message: String,
    },
}
