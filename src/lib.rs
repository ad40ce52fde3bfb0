//! The `seclake` binary's library: config, pipeline wiring, metrics, signals.
//! Everything else lives in the workspace crates (`ingest`, `enrich`, `sink`,
//! `queries`).

pub mod backfill;
pub mod blocks;
pub mod config;
pub mod dashboards;
pub mod demo;
pub mod metrics;
pub mod pipeline;
pub mod query;
pub mod replay;
pub mod report;
pub mod signals;
