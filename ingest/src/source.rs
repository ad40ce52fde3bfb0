//! The source contract: what every source (file, stdin, Kafka, the
//! generator, Kinesis, Firehose) implements, and the one config
//! enum that names them.
//!
//! # Writing a source
//!
//! A source is a config struct (one `[[source]]` entry, deserialised with
//! serde, `deny_unknown_fields`) that implements [`SourceSpec`], and a
//! running value that implements [`Source`]. Adding one is a module in
//! `ingest/src/` and a variant of [`SourceConfig`]; the pipeline spawns every
//! source the same way and never matches on the kind.
//!
//! The pipeline gives each source **its own thread** and calls
//! [`Source::run`] on it once. What an implementor may assume and must do:
//!
//! - **Blocking or async.** A blocking reader (a file, stdin, librdkafka's
//!   poll loop) just runs on that thread. An async one (an SDK poller, an
//!   HTTP server) runs its future there with
//!   `ctx.runtime.block_on(...)`; tasks it spawns run on the pipeline's
//!   I/O runtime. Either way `run` returns only when the source is done.
//! - **Batches.** Records go out as [`Batch`]es of one [`Format`], in source
//!   order per ordering unit (a file, a Kafka partition, a Kinesis shard),
//!   through [`SourceContext::out`]. Every batch carries a fresh [`Ack`]
//!   whose [`AckWaiter`] the source keeps.
//! - **Backpressure.** The channel is bounded. Sending blocks while the
//!   pipeline is full; that is how a slow sink slows the source. A source
//!   that must stay responsive meanwhile (Kafka keeps polling so the group
//!   sees it alive, an HTTP server keeps answering) uses
//!   [`BatchSender::send_timeout`] and pauses its input instead of
//!   buffering without bound.
//! - **Commit only after the Ack.** A source commits an offset, writes a
//!   checkpoint or answers HTTP 200 for a batch only when its waiter
//!   resolves [`AckStatus::Delivered`](crate::AckStatus::Delivered), and per
//!   ordering unit in order: position N is committed only once every batch
//!   before N is delivered too. A batch that resolves `Failed` is never
//!   committed past; it is read again after a restart (at least once).
//! - **Shutdown.** When [`SourceContext::shutdown`] is set (SIGTERM, or
//!   another part of the pipeline failed), stop reading, hand over what was
//!   already read (it is in no sink yet, so dropping it silently would lose
//!   nothing but cost a re-read; handing it over is cheaper), and return.
//!   Unbounded sources also return once caught up when
//!   [`SourceContext::until_caught_up`] is set.
//! - **What is still owed.** `run` returns its [`ReadStats`] and an
//!   [`Outstanding`]: the commits still to make for batches in flight. The
//!   pipeline calls [`Outstanding::settle`] once every sink has closed, so
//!   every waiter has resolved by then; a source that commits nothing
//!   (files) only counts what was not delivered.
//! - **Errors.** A source returns [`SourceError`] for what stops it for
//!   good (a missing topic, an unreadable file) and the pipeline stops the
//!   other sources too. Bad records are not errors: they travel in the
//!   batch and become dead letters downstream.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender};
use serde::Deserialize;

use crate::file::{FileConfig, StdinConfig};
use crate::firehose::FirehoseConfig;
use crate::generate::GenerateConfig;
use crate::kafka::KafkaConfig;
use crate::kinesis::KinesisConfig;
use crate::{Batch, Format, SourceError};

/// A configured source, ready to run on its own thread.
pub trait Source: Send {
    /// Reads until the input ends, [`SourceContext::shutdown`] is set, or
    /// (unbounded sources with [`SourceContext::until_caught_up`]) it has
    /// caught up. See the [module docs](self) for the contract.
    fn run(self: Box<Self>, ctx: &SourceContext) -> Result<Finished, SourceError>;
}

/// What a source's [`Source::run`] hands back.
pub struct Finished {
    /// What it read.
    pub stats: ReadStats,
    /// What it still has to commit once the sinks have finished.
    pub outstanding: Box<dyn Outstanding>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A stopped source's batches still in the pipeline.
pub trait Outstanding: Send {
    /// Waits for every batch the source handed out, commits what its
    /// source commits (offsets, checkpoints) and returns how many batches
    /// were not delivered. Called once, after every sink has closed.
    fn settle(self: Box<Self>) -> u64;
}

/// Everything a running source gets from the pipeline.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Where batches go; bounded.
    pub out: BatchSender,
    /// Set when the source should stop.
    pub shutdown: Shutdown,
    /// The pipeline's I/O runtime, for async sources.
    pub runtime: tokio::runtime::Handle,
    /// Unbounded sources (Kafka, Kinesis, a generator without `count`)
    /// stop once every partition or shard they own is read to its end.
    pub until_caught_up: bool,
    /// Sources with an end (files) keep reading as it grows instead.
    pub follow: bool,
}

impl SourceContext {
    /// A context sending to `out`, with no stop asked for, reading to the
    /// end once (no follow, no stop when caught up).
    pub fn new(out: BatchSender, runtime: tokio::runtime::Handle) -> SourceContext {
        SourceContext {
            out,
            shutdown: Shutdown::new(),
            runtime,
            until_caught_up: false,
            follow: false,
        }
    }
}

/// The sending end of the pipeline's bounded batch queue.
#[derive(Debug, Clone)]
pub struct BatchSender(Sender<Batch>);

impl BatchSender {
    /// Wraps the pipeline's queue.
    pub fn new(tx: Sender<Batch>) -> BatchSender {
        BatchSender(tx)
    }

    /// Sends a batch, waiting while the pipeline is full.
    pub fn send(&self, batch: Batch) -> Result<(), SourceError> {
        self.0.send(batch).map_err(|_| SourceError::Closed)
    }

    /// Sends a batch, waiting at most `timeout` for room; gives the batch
    /// back when there was none.
    pub fn send_timeout(
        &self,
        batch: Batch,
        timeout: Duration,
    ) -> Result<Option<Batch>, SourceError> {
        match self.0.send_timeout(batch, timeout) {
            Ok(()) => Ok(None),
            Err(SendTimeoutError::Timeout(batch)) => Ok(Some(batch)),
            Err(SendTimeoutError::Disconnected(_)) => Err(SourceError::Closed),
        }
    }
}

/// The pipeline's stop flag, shared by every stage.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks every source to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// True once a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a source read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Records handed to the pipeline.
    pub records: u64,
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Batches handed to the pipeline.
    pub batches: u64,
}

impl std::ops::AddAssign for ReadStats {
    fn add_assign(&mut self, other: ReadStats) {
        self.records += other.records;
        self.bytes += other.bytes;
        self.batches += other.batches;
    }
}

/// What every source's config can do; one `[[source]]` entry.
pub trait SourceSpec: std::fmt::Debug + Send + Sync {
    /// The format of every record it delivers.
    fn format(&self) -> Format;

    /// Checks what serde cannot, without connecting to anything. The error
    /// names the key below the `[[source]]` entry (e.g. `path`).
    fn check(&self) -> Result<(), KeyError>;

    /// Builds the running source; may open files or clients, must not read
    /// records yet.
    fn build(&self) -> Result<Box<dyn Source>, SourceError>;

    /// A resource only one source of a config may use (stdin, a Kafka
    /// static member id).
    fn exclusive(&self) -> Option<Claim> {
        None
    }
}

/// A resource one source holds alone, and the key that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The key below the `[[source]]` entry that chose it, e.g. `instance_id`.
    pub key: &'static str,
    /// What it is, as an error names it, e.g. `stdin`.
    pub resource: String,
}

/// A config problem: the key below the `[[source]]` entry and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The key, relative to the `[[source]]` entry, e.g. `kafka_options."group.id"`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl KeyError {
    /// An error for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> KeyError {
        KeyError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// One `[[source]]`, chosen by its `type`.
///
/// A new source is a module with its config struct and one variant here,
/// with its arm in [`SourceConfig::spec`] and [`SourceConfig::locate_error`].
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// NDJSON files or a glob, plain or `.gz`.
    File(FileConfig),
    /// NDJSON on standard input.
    Stdin(StdinConfig),
    /// A Kafka topic, through a consumer group.
    Kafka(KafkaConfig),
    /// Generated fixture logs: load tests, benches and demos without files.
    Generate(GenerateConfig),
    /// A Kinesis data stream, its shards leased in DynamoDB.
    Kinesis(KinesisConfig),
    /// Amazon Data Firehose deliveries to an HTTP(S) endpoint seclake serves.
    Firehose(FirehoseConfig),
}

impl SourceConfig {
    /// The entry's config, as the contract every source shares.
    pub fn spec(&self) -> &dyn SourceSpec {
        match self {
            SourceConfig::File(c) => c,
            SourceConfig::Stdin(c) => c,
            SourceConfig::Kafka(c) => c,
            SourceConfig::Generate(c) => c,
            SourceConfig::Kinesis(c) => c,
            SourceConfig::Firehose(c) => c,
        }
    }

    /// The format the source's records are in.
    pub fn format(&self) -> Format {
        self.spec().format()
    }

    /// serde reports an error inside an entry chosen by its `type` only as
    /// `source[N]`; this reads the entry (without `type`) again as that type
    /// to name the key within it, e.g. `start`, with serde's message.
    pub fn locate_error(kind: &str, entry: toml::Value) -> Option<(String, String)> {
        fn locate<T: serde::de::DeserializeOwned>(entry: toml::Value) -> Option<(String, String)> {
            serde_path_to_error::deserialize::<_, T>(entry)
                .err()
                .map(|e| (e.path().to_string(), e.inner().to_string()))
        }
        match kind {
            "file" => locate::<FileConfig>(entry),
            "stdin" => locate::<StdinConfig>(entry),
            "kafka" => locate::<KafkaConfig>(entry),
            "generate" => locate::<GenerateConfig>(entry),
            "kinesis" => locate::<KinesisConfig>(entry),
            "firehose" => locate::<FirehoseConfig>(entry),
            _ => None,
        }
    }
}
