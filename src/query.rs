//! Opening the lake for queries from the command line: `--lake`, or the
//! `[lake]` section of a config file, with S3 settings from either.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use seclake_queries::Lake;
use seclake_queries::config::ReportConfig;
use seclake_sink::store::S3Options;
use serde::Deserialize;

use crate::config::{ConfigError, expanded_table, section};

/// Where the lake is: flags shared by `seclake query` and `report`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LakeArgs {
    /// The lake: a directory, file:///abs/dir or s3://bucket/prefix
    /// (default: `[lake] url` of --config).
    #[arg(long)]
    pub lake: Option<String>,
    /// A seclake config; its `[lake]` (and `[report]`) sections are used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// S3 endpoint for an S3-compatible store (MinIO, moto).
    #[arg(long, env = "SECLAKE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket's region (default from the AWS environment).
    #[arg(long)]
    pub region: Option<String>,
}

/// The parts of a config file queries use; other sections are ignored
/// here (`seclake validate` checks them).
#[derive(Debug, Default, Deserialize)]
struct QueryView {
    lake: Option<LakeView>,
    #[serde(default)]
    report: Option<ReportConfig>,
}

#[derive(Debug, Deserialize)]
struct LakeView {
    url: String,
    endpoint: Option<String>,
    region: Option<String>,
}

/// Reads the `[lake]` and `[report]` sections of a config file.
fn read_view(path: &Path) -> Result<QueryView, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let table = expanded_table(&text, &shown)?;
    section(&table, &shown)
}

impl LakeArgs {
    /// The `[report]` section of --config, if any.
    pub fn report_config(&self) -> Result<ReportConfig> {
        match &self.config {
            Some(path) => Ok(read_view(path)?.report.unwrap_or_default()),
            None => Ok(ReportConfig::default()),
        }
    }

    /// The lake URL and S3 options: flags first, then the config.
    pub fn resolve(&self) -> Result<(String, S3Options)> {
        let view = match &self.config {
            Some(path) => read_view(path)?,
            None => QueryView::default(),
        };
        let from_config = view.lake;
        let url = match (&self.lake, &from_config) {
            (Some(url), _) => url.clone(),
            (None, Some(lake)) => lake.url.clone(),
            (None, None) => bail!(
                "no lake: pass --lake DIR|s3://bucket/prefix, or --config with a [lake] section"
            ),
        };
        let s3 = S3Options {
            endpoint: self
                .s3_endpoint
                .clone()
                .or_else(|| from_config.as_ref().and_then(|l| l.endpoint.clone())),
            region: self
                .region
                .clone()
                .or_else(|| from_config.as_ref().and_then(|l| l.region.clone())),
        };
        Ok((url, s3))
    }

    /// Opens the lake for queries.
    pub async fn open(&self) -> Result<Lake> {
        let (url, s3) = self.resolve()?;
        Lake::open(&url, &s3)
            .await
            .with_context(|| format!("opening the lake {url}"))
    }
}
