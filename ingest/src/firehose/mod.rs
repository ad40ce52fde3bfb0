//! Amazon Data Firehose HTTP endpoint deliveries: the parts of the source.
//!
//! - [`config`]: the `[[source]] type = "firehose"` keys.
//! - [`buffer`]: the fsynced on-disk buffer each delivery is stored in
//!   before the endpoint answers 200.
//! - `endpoint`: the HTTP(S) server that follows AWS's delivery request and
//!   response specification.
//! - `source`: drains the buffer into the pipeline and deletes each
//!   delivery once the sinks acknowledged it.

pub mod buffer;
pub mod config;
mod endpoint;
mod source;

pub use config::FirehoseConfig;
