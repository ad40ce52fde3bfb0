//! `report run --date YYYY-MM-DD`: the daily security report over the lake.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use seclake::query::LakeArgs;
use seclake::report::{ReportJob, write};
use seclake_queries::ReportDay;
use seclake_queries::config::OutputFormat;
use seclake_queries::deliver::{
    self, DeliveryConfig, EmailTarget, ReportFile, S3Target, SlackTarget,
};
use seclake_queries::report::Options;

/// The daily security report over the seclake lake.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the report of one day and write it (HTML, Markdown, JSON).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// The day: YYYY-MM-DD, `today` or `yesterday` (in --tz).
    #[arg(long)]
    date: String,
    #[command(flatten)]
    lake: LakeArgs,
    /// Where to write: a directory or s3://bucket/prefix (default: `[report]
    /// out`, else `reports`).
    #[arg(long)]
    out: Option<String>,
    /// Comma-separated formats: html, md, json (default all).
    #[arg(long, value_delimiter = ',')]
    format: Vec<OutputFormat>,
    /// IANA time zone of the day and the timeline, e.g. Asia/Seoul (default
    /// `[report] tz`, else UTC).
    #[arg(long)]
    tz: Option<String>,
    /// Rows in the top-N sections (default `[report] top`, else 10).
    #[arg(long)]
    top: Option<usize>,
    /// No progress bar (none without a terminal either).
    #[arg(long, short)]
    quiet: bool,
    /// Print how long each query took.
    #[arg(long)]
    timings: bool,
    /// Also upload the files to this S3 prefix (under
    /// `reports/dt=YYYY-MM-DD/`); default `[report.deliver.s3] url`.
    #[arg(long, value_name = "S3_URL")]
    upload: Option<String>,
    /// Email the report to these addresses through SES (comma-separated);
    /// default `[report.deliver.email] to`.
    #[arg(long, value_delimiter = ',', value_name = "ADDRESS")]
    email_to: Vec<String>,
    /// The verified SES sender; default `[report.deliver.email] from`.
    #[arg(long, value_name = "ADDRESS")]
    email_from: Option<String>,
    /// A Slack incoming-webhook URL for the summary; default
    /// `[report.deliver.slack] webhook_url`.
    #[arg(
        long,
        env = "SECLAKE_SLACK_WEBHOOK",
        hide_env_values = true,
        value_name = "URL"
    )]
    slack_webhook: Option<String>,
}

/// Exit status when the report was written but a delivery failed.
const DELIVERY_FAILED: u8 = 3;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Run(args) = Cli::parse().command;
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = args.lake.report_config()?;
    let tz = args
        .tz
        .clone()
        .or(config.tz.clone())
        .unwrap_or_else(|| "UTC".to_owned());
    let day = ReportDay::parse(&args.date, &tz, chrono::Utc::now())?;
    let formats = if !args.format.is_empty() {
        args.format.clone()
    } else {
        config
            .formats
            .clone()
            .unwrap_or_else(|| OutputFormat::ALL.to_vec())
    };
    if formats.is_empty() {
        bail!("--format: name at least one of html, md, json");
    }
    let top = args.top.or(config.top).unwrap_or(10);
    if top == 0 {
        bail!("--top: must be at least 1");
    }
    let (_, s3) = args.lake.resolve()?;
    let deliver = delivery(&args, config.deliver.clone(), &s3)?;
    let job = ReportJob {
        day,
        out: args
            .out
            .clone()
            .or(config.out.clone())
            .unwrap_or_else(|| "reports".to_owned()),
        formats,
        options: Options {
            top,
            ..Options::default()
        },
        s3,
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let lake = args.lake.open().await?;
        let written = write(&lake, &job).await?;
        println!(
            "{}",
            seclake_queries::render::summary(&written.report).trim_end()
        );
        for (_, path) in &written.files {
            println!("wrote {path}");
        }
        if args.timings {
            for t in &written.timings {
                eprintln!(
                    "{:<20} {:>10} rows {:>9.3} s",
                    t.name,
                    t.rows,
                    t.elapsed.as_secs_f64()
                );
            }
        }
        if deliver.is_empty() {
            return Ok(ExitCode::SUCCESS);
        }
        let files: Vec<ReportFile> = written
            .rendered
            .iter()
            .map(|(format, name, bytes)| ReportFile {
                name: name.clone(),
                content_type: format.content_type(),
                bytes: bytes.clone(),
            })
            .collect();
        let subject = format!("seclake security report {}", job.day.date);
        let summary = seclake_queries::render::summary(&written.report);
        let mut failed = false;
        for (channel, outcome) in
            deliver::deliver(job.day.date, &files, &subject, &summary, &deliver).await
        {
            match outcome {
                Ok(done) => println!("delivered: {done}"),
                Err(e) => {
                    failed = true;
                    eprintln!("error: delivery by {channel} failed: {e}");
                }
            }
        }
        Ok(if failed {
            ExitCode::from(DELIVERY_FAILED)
        } else {
            ExitCode::SUCCESS
        })
    })
}

/// `[report.deliver]` with the flags laid over it, checked.
fn delivery(
    args: &RunArgs,
    mut config: DeliveryConfig,
    lake_s3: &seclake_sink::store::S3Options,
) -> Result<DeliveryConfig> {
    if let Some(url) = &args.upload {
        config.s3 = Some(S3Target {
            url: url.clone(),
            endpoint: lake_s3.endpoint.clone(),
            region: lake_s3.region.clone(),
        });
    }
    if !args.email_to.is_empty() || args.email_from.is_some() {
        let mut email = config.email.take().unwrap_or_else(|| EmailTarget {
            from: String::new(),
            to: Vec::new(),
            region: lake_s3.region.clone(),
            endpoint: None,
            subject_prefix: None,
        });
        if !args.email_to.is_empty() {
            email.to = args.email_to.clone();
        }
        if let Some(from) = &args.email_from {
            email.from = from.clone();
        }
        config.email = Some(email);
    }
    if let Some(url) = &args.slack_webhook {
        config.slack = Some(SlackTarget {
            webhook_url: url.clone(),
        });
    }
    config.check()?;
    Ok(config)
}
