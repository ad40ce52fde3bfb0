//! Amazon Kinesis Data Streams: the parts of the source.
//!
//! - [`aggregate`]: a Kinesis record's payload to user records (KPL
//!   aggregates de-aggregated, CloudWatch Logs subscription payloads
//!   unpacked).
//! - [`lease`]: shard leases and checkpoints in a DynamoDB table, so that
//!   workers of one application share a stream's shards.
//! - [`config`]: the `[[source]] type = "kinesis"` keys.
//! - `source`: the worker that holds leases, polls its shards and
//!   checkpoints what the sinks acknowledged.

pub mod aggregate;
pub mod config;
pub mod lease;
mod source;

pub use config::KinesisConfig;
