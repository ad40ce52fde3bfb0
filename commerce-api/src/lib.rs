//! commerce-api: an order API (axum, SQLite) whose access log, one JSON line
//! per request in seclake's app log schema, goes to stdout and to Kafka for
//! the pipeline to read.
//!
//! [`server::serve`] runs it; [`config::Config`] says how.

pub mod access_log;
pub mod config;
pub mod order;
pub mod problem;
pub mod routes;
pub mod server;
pub mod store;

pub use config::Config;
pub use server::{Stopped, serve};
