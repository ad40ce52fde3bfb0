//! Amazon Kinesis Data Streams: the parts of the source.
//!
//! - [`aggregate`]: a Kinesis record's payload to user records (KPL
//!   aggregates de-aggregated, CloudWatch Logs subscription payloads
//!   unpacked).
//! - [`lease`]: shard leases and checkpoints in a DynamoDB table, so that
//!   workers of one application share a stream's shards.
//! - [`config`]: the `[[source]] type = "kinesis"` keys.
//!
//! The source that reads the shards with them is not wired in yet.

pub mod aggregate;
pub mod config;
pub mod lease;
