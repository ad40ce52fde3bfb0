//! Sinks for seclake: the Parquet lake, the dead-letter output, OpenSearch,
//! the automatic response (AWS WAF IP set) and alerts (Slack, SNS), the
//! [`Sink`] contract they implement, and the [`Fanout`] that runs them.
//!
//! Every sink takes an [`seclake_ingest::Ack`] with the data it is given and
//! holds a clone until that data is durable; committing a file drops them.

pub mod alert;
mod columns;
mod contract;
pub mod dead_letter;
pub mod lake;
mod lanes;
pub mod opensearch;
pub mod response;
pub mod store;

use futures::StreamExt as _;
use object_store::ObjectStore as _;

pub use alert::{AlertOutputs, AlertRule, AlertSink, AlertSinkConfig};
pub use contract::{Lanes, Rejected, Sink, SinkBatch, SinkSpec, SinkStats, Takes};
pub use dead_letter::{DeadLetter, DeadLetterConfig, DeadLetterLine, DeadLetterWriter};
pub use lake::{LakeConfig, LakeStats, LakeWriter};
pub use lanes::{Fanout, FanoutError};
pub use opensearch::{OpenSearchConfig, OpenSearchSink};
pub use response::{ResponseConfig, ResponseSink};
pub use store::Location;

/// Errors from the sinks; each names the config key or the object involved.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A config value is unusable.
    #[error("config key `{key}`: {why}")]
    Config {
        /// The key, e.g. `lake.url`.
        key: &'static str,
        /// What is wrong and what to do.
        why: String,
    },
    /// A config value in a list entry is unusable.
    #[error("config key `{key}`: {why}")]
    ConfigEntry {
        /// The key with the entry's index, e.g. `alert[0].min_severity`.
        key: String,
        /// What is wrong and what to do.
        why: String,
    },
    /// The store could not be reached (missing bucket, no credentials, …).
    #[error("config key `{key}`: cannot reach {url}: {source}")]
    Unreachable {
        /// The key naming the store.
        key: &'static str,
        /// The store's URL.
        url: String,
        /// What the store said.
        source: object_store::Error,
    },
    /// Writing an object failed.
    #[error("writing {path}: {source}")]
    Store {
        /// The object path.
        path: String,
        /// What the store said.
        source: object_store::Error,
    },
    /// Encoding or uploading a Parquet file failed.
    #[error("writing Parquet file {path}: {source}")]
    Parquet {
        /// The object path.
        path: String,
        /// The encoder's or the upload's error.
        source: parquet::errors::ParquetError,
    },
    /// An Arrow operation on a batch failed.
    #[error("arrow: {0}")]
    Arrow(arrow::error::ArrowError),
    /// Serialising a dead letter failed.
    #[error("json: {0}")]
    Json(serde_json::Error),
    /// A batch does not have the event schema's shape (a bug).
    #[error("batch does not match the event schema: {0}")]
    Schema(&'static str),
    /// An OpenSearch request failed.
    #[error("opensearch: {0}")]
    OpenSearch(String),
    /// The automatic response could not do its work.
    #[error("response: {0}")]
    Response(String),
    /// A sink's background task failed (a bug).
    #[error("a sink task failed: {0}")]
    Task(String),
}

/// Lists one entry under the location's prefix, so a missing bucket or
/// missing credentials show at startup, not at the first file roll.
async fn check_reachable(location: &Location, key: &'static str) -> Result<(), SinkError> {
    let mut listing = location.store.list(Some(&location.prefix));
    match listing.next().await {
        Some(Err(source)) => Err(SinkError::Unreachable {
            key,
            url: location.url.clone(),
            source,
        }),
        _ => Ok(()),
    }
}
