//! The `[report]` config section.

use serde::Deserialize;

/// `[report]`: defaults for `report run`; flags override each key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Where the files are written: a directory or `s3://bucket/prefix`
    /// (default `reports`).
    pub out: Option<String>,
    /// Which files: `html`, `md`, `json` (default all three).
    pub formats: Option<Vec<OutputFormat>>,
    /// The IANA time zone of the report day (default `UTC`).
    pub tz: Option<String>,
    /// Rows of the top-N sections (default 10).
    pub top: Option<usize>,
    /// `[report.deliver]`: S3, email and Slack, each optional.
    #[serde(default)]
    pub deliver: crate::deliver::DeliveryConfig,
}

/// A report file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Html,
    Md,
    Json,
}

impl OutputFormat {
    /// Every format, in the order files are written.
    pub const ALL: [OutputFormat; 3] = [OutputFormat::Html, OutputFormat::Md, OutputFormat::Json];

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Html => "html",
            OutputFormat::Md => "md",
            OutputFormat::Json => "json",
        }
    }

    /// The MIME type, for uploads and email parts.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Html => "text/html; charset=utf-8",
            OutputFormat::Md => "text/markdown; charset=utf-8",
            OutputFormat::Json => "application/json",
        }
    }
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<OutputFormat, String> {
        match s.trim() {
            "html" => Ok(OutputFormat::Html),
            "md" | "markdown" => Ok(OutputFormat::Md),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("{other:?} is not a report format (html, md, json)")),
        }
    }
}
