//! SQL over the seclake lake with DataFusion, and the daily security report.
//!
//! [`Lake`] registers the Hive-partitioned Parquet lake as the tables `waf`,
//! `falco`, `app` and `events`; [`ReportDay`] turns a date and a time zone into
//! the parameters of the SQL files in `queries/sql/`; [`build`] runs them and
//! returns a [`Report`], which [`render`] turns into HTML, Markdown and JSON.

pub mod config;
pub mod day;
pub mod deliver;
pub mod lake;
pub mod output;
pub mod render;
pub mod report;
pub mod sections;

pub use day::ReportDay;
pub use lake::Lake;
pub use report::{Report, build};

/// What can go wrong reading the lake or running a query.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The lake URL or its store is unusable.
    #[error("lake {url}: {why}")]
    Lake { url: String, why: String },
    /// A bad argument or config value; names the key.
    #[error("{key}: {why}")]
    Config { key: &'static str, why: String },
    /// DataFusion failed planning or running a query.
    #[error("query {name}: {source}")]
    DataFusion {
        name: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    /// Reading the lake panicked inside DataFusion or the Parquet reader,
    /// e.g. on a file that is not Parquet; the process goes on.
    #[error("query {name}: reading the lake failed (a corrupt or non-Parquet file?): {message}")]
    Panicked { name: String, message: String },
    /// A result did not have the shape the report expects.
    #[error("query {name}: unexpected result: {why}")]
    Shape { name: String, why: String },
}
