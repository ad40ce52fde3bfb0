//! `seclake demo`: the embedded default. Generates a day of fixture logs,
//! runs the pipeline into a local lake, writes the day's report and prints
//! the summary; no server needed.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::config::Config;
use crate::pipeline::{RunOptions, RunSummary};

/// MaxMind's test databases, so the demo has GeoIP without a download.
const CITY_DB: &[u8] = include_bytes!("../fixtures/geoip/GeoLite2-City-Test.mmdb");
const ASN_DB: &[u8] = include_bytes!("../fixtures/geoip/GeoLite2-ASN-Test.mmdb");

/// What the demo produced, for the caller to print.
pub struct DemoRun {
    /// The config file written for the run (reusable with `seclake run`).
    pub config: PathBuf,
    /// The pipeline's summary.
    pub summary: RunSummary,
    /// The day's report, written under `reports/`.
    pub report: crate::report::Written,
}

/// Generates logs for `date` at `scale` under `out`, writes a config and runs it.
pub fn run(out: &Path, date: chrono::NaiveDate, scale: f64, progress: bool) -> Result<DemoRun> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let out = out
        .canonicalize()
        .with_context(|| format!("resolving {}", out.display()))?;
    let logs = out.join("logs");
    seclake_fixtures::generate(&seclake_fixtures::GenConfig {
        date,
        scale,
        seed: 42,
        out: logs.clone(),
        gzip: false,
    })
    .context("generating fixture logs")?;
    let geoip = out.join("geoip");
    std::fs::create_dir_all(&geoip)?;
    std::fs::write(geoip.join("GeoLite2-City-Test.mmdb"), CITY_DB)?;
    std::fs::write(geoip.join("GeoLite2-ASN-Test.mmdb"), ASN_DB)?;
    for dir in ["lake", "dlq", "reports"] {
        let path = out.join(dir);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("clearing the previous demo's {}", path.display()))?;
        }
    }
    let config_path = out.join("seclake.toml");
    let text = demo_config(&out);
    std::fs::write(&config_path, &text)?;
    let config = Config::parse(&text, &config_path.display().to_string())?;
    let summary = crate::pipeline::run(
        &config,
        &RunOptions {
            progress,
            ..RunOptions::default()
        },
    )?;
    let job = crate::report::ReportJob {
        day: seclake_queries::ReportDay::new(date, "UTC")?,
        out: out.join("reports").display().to_string(),
        formats: seclake_queries::config::OutputFormat::ALL.to_vec(),
        options: seclake_queries::report::Options::default(),
        s3: Default::default(),
        progress,
    };
    let report = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(async {
            let lake = seclake_queries::Lake::open(
                &format!("file://{}/lake", out.display()),
                &Default::default(),
            )
            .await?;
            crate::report::write(&lake, &job).await
        })?;
    Ok(DemoRun {
        config: config_path,
        summary,
        report,
    })
}

fn demo_config(out: &Path) -> String {
    let o = out.display();
    let mut text = String::new();
    for format in seclake_ingest::Format::ALL {
        text.push_str(&format!(
            "[[source]]\ntype = \"file\"\nformat = \"{format}\"\npath = \"{o}/logs/{format}.ndjson\"\n\n"
        ));
    }
    text.push_str(&format!(
        "[geoip]\ncity = \"{o}/geoip/GeoLite2-City-Test.mmdb\"\nasn = \"{o}/geoip/GeoLite2-ASN-Test.mmdb\"\n\n\
         [lake]\nurl = \"file://{o}/lake\"\n\n[dlq]\nurl = \"file://{o}/dlq\"\n\n\
         [report]\nout = \"{o}/reports\"\n"
    ));
    text
}
