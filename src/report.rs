//! `report run`: the day's report over the lake, written as files and
//! optionally delivered.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use object_store::{ObjectStoreExt as _, PutPayload};
use seclake_queries::config::OutputFormat;
use seclake_queries::report::{Options, Timing};
use seclake_queries::{Lake, Report, ReportDay, render};
use seclake_sink::store::{Location, S3Options};

/// What `report run` does, resolved from flags and `[report]`.
#[derive(Debug, Clone)]
pub struct ReportJob {
    pub day: ReportDay,
    /// A directory or `s3://bucket/prefix`.
    pub out: String,
    pub formats: Vec<OutputFormat>,
    pub options: Options,
    /// S3 settings for an `s3://` `out`.
    pub s3: S3Options,
    /// Show a progress bar (a terminal, and not `--quiet`).
    pub progress: bool,
}

/// A written report.
#[derive(Debug)]
pub struct Written {
    pub report: Report,
    /// Where each file went (paths or `s3://` URLs), in `formats` order.
    pub files: Vec<(OutputFormat, String)>,
    /// The rendered files, for delivery.
    pub rendered: Vec<(OutputFormat, String, Vec<u8>)>,
    pub timings: Vec<Timing>,
}

/// The file name of a report in `format`.
pub fn file_name(day: &ReportDay, format: OutputFormat) -> String {
    format!("security-report-{}.{}", day.date, format.extension())
}

/// Builds the report over `lake` and writes its files.
pub async fn write(lake: &Lake, job: &ReportJob) -> Result<Written> {
    let bar = if job.progress {
        let bar = ProgressBar::new(seclake_queries::report::steps() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    bar.set_message(seclake_queries::sections::DAY_TABLES[0].name);
    let (report, timings) = seclake_queries::build(lake, &job.day, &job.options, |t| {
        bar.inc(1);
        bar.set_message(t.name);
    })
    .await
    .with_context(|| format!("building the report for {}", job.day.date))?;
    bar.finish_and_clear();

    let mut rendered = Vec::new();
    for &format in &job.formats {
        let text = match format {
            OutputFormat::Html => render::html(&report),
            OutputFormat::Md => render::markdown(&report),
            OutputFormat::Json => render::json(&report),
        };
        rendered.push((format, file_name(&job.day, format), text.into_bytes()));
    }
    let mut files = Vec::new();
    if job.out.starts_with("s3://") {
        let location = Location::open("report.out", &job.out, &job.s3)?;
        for (format, name, bytes) in &rendered {
            let path = location.child(name);
            location
                .store
                .put(&path, PutPayload::from(bytes.clone()))
                .await
                .with_context(|| format!("writing {}/{name}", job.out.trim_end_matches('/')))?;
            files.push((*format, format!("{}/{name}", job.out.trim_end_matches('/'))));
        }
    } else {
        let dir = PathBuf::from(job.out.strip_prefix("file://").unwrap_or(&job.out));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (format, name, bytes) in &rendered {
            let path = dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            files.push((*format, path.display().to_string()));
        }
    }
    Ok(Written {
        report,
        files,
        rendered,
        timings,
    })
}
