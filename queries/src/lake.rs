//! The lake as DataFusion tables: `waf`, `falco`, `app`, `guardduty` and `response` (the
//! automatic response's audit events), one source each, partitioned by `dt`
//! and `hour`, and `events` (every source, partitioned by `source`, `dt` and
//! `hour`).
//!
//! Tables use the event schema of this build, not one inferred from the files:
//! a file written before a column was added reads with that column null, and
//! no file footers are read to plan a query. Filters on `dt` and `hour` prune
//! whole partitions before any file is opened.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;
use seclake_sink::store::{Location, S3Options};
use url::Url;

use crate::QueryError;

/// The sources, each a table of its own.
pub const SOURCES: [&str; 5] = ["waf", "falco", "app", "guardduty", "response"];

/// A lake opened for queries: a DataFusion session with its tables.
#[derive(Clone)]
pub struct Lake {
    ctx: SessionContext,
    url: String,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").field("url", &self.url).finish()
    }
}

impl Lake {
    /// Opens the lake at `url` (`file:///abs/dir`, `s3://bucket/prefix`, or
    /// a plain directory path) and registers its tables. A local lake that
    /// does not exist is an error; reading happens only when a query runs.
    pub async fn open(url: &str, s3: &S3Options) -> Result<Lake, QueryError> {
        let url = normalise(url)?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_target_partitions(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            );
        let ctx = SessionContext::new_with_config(config);
        let lake_err = |why: String| QueryError::Lake {
            url: url.clone(),
            why,
        };
        if let Some(path) = url.strip_prefix("file://") {
            let dir = std::path::Path::new(path);
            if !dir.is_dir() {
                return Err(lake_err("no such directory".into()));
            }
            std::fs::read_dir(dir).map_err(|e| lake_err(format!("cannot read: {e}")))?;
        } else {
            let location = Location::open("lake", &url, s3).map_err(|e| lake_err(e.to_string()))?;
            let parsed = Url::parse(&url).map_err(|e| lake_err(e.to_string()))?;
            let bucket = Url::parse(&format!("s3://{}", parsed.host_str().unwrap_or_default()))
                .map_err(|e| lake_err(e.to_string()))?;
            ctx.register_object_store(&bucket, Arc::clone(&location.store));
        }
        let root = url.trim_end_matches('/');
        let schema = table_schema();
        for source in SOURCES {
            let table = listing(
                &format!("{root}/source={source}/"),
                &schema,
                &["dt", "hour"],
            )
            .await
            .map_err(|e| lake_err(e.to_string()))?;
            ctx.register_table(source, table)
                .map_err(|e| lake_err(e.to_string()))?;
        }
        let events = listing(&format!("{root}/"), &schema, &["source", "dt", "hour"])
            .await
            .map_err(|e| lake_err(e.to_string()))?;
        ctx.register_table("events", events)
            .map_err(|e| lake_err(e.to_string()))?;
        Ok(Lake { ctx, url })
    }

    /// The DataFusion session, with the lake's tables registered.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The lake's URL, normalised (`file://` for a local directory).
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The schema of a source table: the event schema without `source` (a
/// partition column, not stored in the files).
fn table_schema() -> SchemaRef {
    let full = seclake_enrich::schema::event_schema();
    let fields: Vec<Arc<Field>> = full
        .fields()
        .iter()
        .filter(|f| f.name() != "source")
        .cloned()
        .collect();
    Arc::new(Schema::new(fields))
}

async fn listing(
    url: &str,
    schema: &SchemaRef,
    partitions: &[&str],
) -> datafusion::error::Result<Arc<ListingTable>> {
    let table_url = ListingTableUrl::parse(url)?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partitions
                .iter()
                .map(|p| ((*p).to_owned(), DataType::Utf8))
                .collect(),
        );
    let config = ListingTableConfig::new(table_url)
        .with_listing_options(options)
        .with_schema(Arc::clone(schema));
    Ok(Arc::new(ListingTable::try_new(config)?))
}

/// `file:///…` for a local path, the URL as given otherwise.
fn normalise(url: &str) -> Result<String, QueryError> {
    let bad = |why: String| QueryError::Config { key: "lake", why };
    if url.starts_with("s3://") {
        seclake_sink::store::check_url("lake", url).map_err(|e| bad(e.to_string()))?;
        return Ok(url.to_owned());
    }
    if let Some(rest) = url.strip_prefix("file://") {
        return Ok(format!("file://{}", rest.trim_end_matches('/')));
    }
    if url.contains("://") {
        return Err(bad(format!(
            "unsupported lake URL {url:?}: use a directory, file:///abs/dir or s3://bucket/prefix"
        )));
    }
    let path = std::path::absolute(url).map_err(|e| bad(format!("{url:?}: {e}")))?;
    Ok(format!("file://{}", path.display())
        .trim_end_matches('/')
        .to_owned())
}
