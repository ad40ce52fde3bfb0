//! The sink contract: what the lake, the dead letters and every sink to
//! come (OpenSearch, the WAF IP-set response) implement.
//!
//! # Writing a sink
//!
//! A sink is a config section (a serde struct owned by its module) that
//! implements [`SinkSpec`], and a running value that implements [`Sink`].
//! Adding one is a module in `sink/src/` and a config field; the pipeline
//! hands every sink the same [`SinkBatch`]es through [`Fanout`](crate::Fanout).
//!
//! Each sink runs on **its own thread** (one per format with
//! [`Lanes::PerFormat`], so the lake encodes formats in parallel), fed by a
//! bounded queue, its async calls run on the pipeline's I/O runtime. What an
//! implementor may assume and must do:
//!
//! - **Calls.** [`Sink::write`] for every batch that has something the sink
//!   [`Takes`], in the order the pipeline produced them;
//!   [`Sink::roll_due`] after each write and about twice a second when idle;
//!   [`Sink::close`] once at the end. No call overlaps another.
//! - **The Ack.** A sink that takes part in acknowledgement
//!   ([`SinkSpec::acknowledges`], the default) keeps a clone of
//!   `batch.ack` until what it took from the batch is durable (a file
//!   committed, a bulk request answered), and drops it then. When it cannot
//!   make the data durable it calls [`Ack::fail`] before dropping: the
//!   source then never commits the batch and reads it again after a
//!   restart. Diverting data durably (to the dead letters, an S3 backup)
//!   counts as durable. Dropping a clone early is the one way to lose data.
//! - **Not taking part.** A sink whose [`SinkSpec::acknowledges`] is false
//!   (the WAF response acts on events; it must never hold the lake's commit)
//!   gets a batch whose Ack is detached: holding or failing it changes
//!   nothing. Its queue is never waited on: when it is full the batch is
//!   skipped for that sink and counted
//!   (`seclake_sink_skipped_batches_total`), so a slow or stuck sink of this
//!   kind never slows the pipeline or delays a commit.
//! - **Backpressure.** An acknowledging sink's queue is bounded; when it is
//!   full the pipeline waits, and so, in turn, do the sources.
//! - **Errors.** An error from any call stops the sink: the pipeline fails
//!   the Acks of everything it gets afterwards, stops the sources and exits
//!   non-zero once the rest is flushed.

use std::sync::Arc;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use bytes::Bytes;
use seclake_ingest::{Ack, Format, Position};

use crate::SinkError;

/// One batch on its way to the sinks: the scored events and the records
/// that could not become events, with the source batch's [`Ack`]. Cloning
/// it is cheap (shared buffers), so every sink gets its own.
#[derive(Debug, Clone)]
pub struct SinkBatch {
    /// The format of every record in it.
    pub format: Format,
    /// The events, in the event schema, in source order.
    pub events: RecordBatch,
    /// The records that could not be parsed or were refused, in source order.
    pub dead_letters: Arc<[Rejected]>,
    /// Held by every sink that takes part in acknowledgement until its share
    /// is durable.
    pub ack: Ack,
}

/// A record on its way to the dead-letter output.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// Where it came from.
    pub position: Position,
    /// Why it was rejected.
    pub reason: String,
    /// Its bytes, exactly as read (shares the source batch's buffer).
    pub raw: Bytes,
}

/// What a sink takes from each [`SinkBatch`]; batches with none of it are
/// not sent to the sink at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// The events (the lake, OpenSearch, the response).
    Events,
    /// The rejected records (the dead-letter output).
    DeadLetters,
}

/// How many instances of a sink run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// One instance and thread per format, each getting only its format's
    /// batches: the formats encode in parallel (the lake).
    PerFormat,
    /// One instance for every format.
    One,
}

/// What a sink made durable so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Rows (events or dead letters) made durable in the sink itself.
    pub rows: u64,
    /// Files, objects or requests that carried them.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Row attempts after the first (a sink that retries rows one by one).
    #[serde(skip_serializing_if = "is_zero")]
    pub retried: u64,
    /// Rows the sink refused for good and sent to the dead letters.
    #[serde(skip_serializing_if = "is_zero")]
    pub dead_lettered: u64,
    /// Rows the sink could not deliver in time and wrote to its backup.
    #[serde(skip_serializing_if = "is_zero")]
    pub backed_up: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl std::ops::AddAssign for SinkStats {
    fn add_assign(&mut self, other: SinkStats) {
        self.rows += other.rows;
        self.files += other.files;
        self.bytes += other.bytes;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
        self.backed_up += other.backed_up;
    }
}

/// A running sink. See the [module docs](self) for the contract.
#[async_trait]
pub trait Sink: Send {
    /// Takes what the sink [`Takes`] from `batch`; holds `batch.ack` until
    /// that is durable.
    async fn write(&mut self, batch: &SinkBatch) -> Result<(), SinkError>;

    /// Makes durable what is due (a file's age or size), if anything.
    async fn roll_due(&mut self) -> Result<(), SinkError>;

    /// Makes everything durable; the last call.
    async fn close(&mut self) -> Result<(), SinkError>;

    /// What it made durable so far.
    fn stats(&self) -> SinkStats;

    /// Files or requests under way, for the `seclake_sink_open_files` gauge.
    fn open_files(&self) -> usize {
        0
    }
}

/// A sink's config section: names the sink and opens it.
#[async_trait]
pub trait SinkSpec: Send + Sync {
    /// The sink's name: its config section (`lake`, `dlq`), its metric label
    /// and its key in the run summary.
    fn name(&self) -> &'static str;

    /// What it takes from each batch.
    fn takes(&self) -> Takes;

    /// How many instances run.
    fn lanes(&self) -> Lanes {
        Lanes::One
    }

    /// False for a sink that acts on events but must never hold a commit.
    fn acknowledges(&self) -> bool {
        true
    }

    /// Checks the config without connecting; the error names the key.
    fn check(&self) -> Result<(), SinkError>;

    /// Opens the sink (and checks its store is reachable).
    async fn open(&self) -> Result<Box<dyn Sink>, SinkError>;
}
