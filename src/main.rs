//! The `seclake` command: run, validate, gen, replay (Kafka, Kinesis or Firehose), demo.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::NaiveDate;
use clap::error::ErrorKind;
use clap::{CommandFactory as _, Parser, Subcommand};
use seclake::config::Config;
use seclake::pipeline::{RunOptions, RunSummary};
use seclake::replay::{AwsOptions, FirehoseOptions, KinesisOptions, ReplayOptions};

// jemalloc: thread caches for the per-batch buffers that glibc's malloc
// serves from its slow path, and freed pages kept for reuse instead of being
// returned and faulted in again (see README, "Dependencies worth a word").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A build for x86-64-v3 (`.cargo/config.toml`) on an older CPU would die of
/// SIGILL somewhere in the first parse; say why instead. `is_x86_feature_detected!`
/// can't tell, as it answers from the build's own target features.
#[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
fn check_cpu() -> Result<(), &'static str> {
    use std::arch::x86_64::__cpuid_count;
    let (max_leaf, leaf7) = (__cpuid_count(0, 0).eax, __cpuid_count(7, 0));
    const AVX2: u32 = 1 << 5;
    const BMI2: u32 = 1 << 8;
    if max_leaf >= 7 && leaf7.ebx & (AVX2 | BMI2) == AVX2 | BMI2 {
        Ok(())
    } else {
        Err(
            "this seclake was built for x86-64-v3 (AVX2) and this CPU lacks it; \
             rebuild with RUSTFLAGS=\"-C target-cpu=x86-64\" and --features runtime-detection \
             (README, \"Building\")",
        )
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx2")))]
fn check_cpu() -> Result<(), &'static str> {
    Ok(())
}

/// Security-log pipeline: AWS WAF, Falco, app logs and GuardDuty findings into an enriched Parquet lake.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline until the sources end (or SIGTERM), then flush and exit.
    Run {
        /// The TOML config.
        #[arg(long, short)]
        config: PathBuf,
        /// Tail file sources instead of stopping at EOF.
        #[arg(long)]
        follow: bool,
        /// Also write the end-of-run summary as JSON here.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Stop Kafka sources once their partitions are read to the end
        /// (backfills); without it they run until SIGTERM.
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Send NDJSON files (e.g. `seclake gen` output) to a Kafka topic, a
    /// Kinesis stream or a Firehose delivery stream.
    Replay {
        /// Where to: `kafka` (`--topic`), `kinesis` (`--stream`) or `firehose`
        /// (`--delivery-stream`).
        #[arg(long, value_enum, default_value_t = ReplayTo::Kafka)]
        to: ReplayTo,
        /// Kafka: bootstrap brokers.
        #[arg(long, env = "SECLAKE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Kafka: the topic; created when missing.
        #[arg(long, required_if_eq("to", "kafka"))]
        topic: Option<String>,
        /// Kafka: partitions of the topic when this creates it.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
        /// Kafka: replication factor of the topic when this creates it.
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// Kafka: a librdkafka producer property, `key=value` (TLS, SASL, ...); repeatable.
        #[arg(long = "producer-option", short = 'X', value_parser = key_value)]
        producer_options: Vec<(String, String)>,
        /// Kinesis: the stream's name or ARN; it must exist.
        #[arg(long, required_if_eq("to", "kinesis"))]
        stream: Option<String>,
        /// Firehose: the delivery stream's name; it must exist.
        #[arg(long, required_if_eq("to", "firehose"))]
        delivery_stream: Option<String>,
        /// Kinesis/Firehose: the region; default from the AWS chain (`AWS_REGION`, profile).
        #[arg(long)]
        region: Option<String>,
        /// Kinesis/Firehose: another endpoint URL than AWS's (e.g. kinesis-local, moto).
        #[arg(long)]
        endpoint: Option<String>,
        /// Kinesis: pack the lines into KPL aggregated records (up to 500 or ~1 MiB each).
        #[arg(long)]
        aggregate: bool,
        /// Target rate, e.g. `50000/s` or `50k/s`; default as fast as possible.
        #[arg(long, value_parser = seclake::replay::parse_rate)]
        rate: Option<f64>,
        /// Also write the report as JSON here.
        #[arg(long)]
        report_json: Option<PathBuf>,
        /// NDJSON files, plain or `.gz`, sent line by line in this order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check a config (keys, files, URLs) without starting anything.
    Validate {
        /// The TOML config.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a realistic, deterministic day of WAF, Falco and app logs and GuardDuty findings.
    Gen {
        /// The day to generate (UTC), YYYY-MM-DD.
        #[arg(long)]
        date: NaiveDate,
        /// Volume: 1.0 = 100,000 WAF records, 10,000 Falco alerts, 50,000 app lines,
        /// 2,000 GuardDuty findings.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// Random seed; the same seed gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Write `.ndjson.gz` instead of `.ndjson`.
        #[arg(long)]
        gzip: bool,
    },
    /// Generate a day of logs, run the pipeline into a local lake, print a summary.
    Demo {
        /// Working directory for logs, lake and dead letters.
        #[arg(long, default_value = "seclake-demo")]
        out: PathBuf,
        /// Volume, as for `gen`.
        #[arg(long, default_value_t = 1.0)]
        scale: f64,
        /// The day to generate; default yesterday (UTC).
        #[arg(long)]
        date: Option<NaiveDate>,
    },
    /// Run SQL over the lake: tables `waf`, `falco`, `app` (partitioned by
    /// `dt` and `hour`) and `events` (all three, also by `source`).
    Query {
        /// The SQL, e.g. "SELECT action, count(*) FROM waf WHERE dt = '2026-11-29' GROUP BY 1".
        sql: String,
        #[command(flatten)]
        lake: seclake::query::LakeArgs,
        /// table, csv or json (one object per line).
        #[arg(long, default_value = "table")]
        format: seclake_queries::output::ResultFormat,
    },
    /// Print the event schema as a Markdown table.
    Schema,
    /// OpenSearch Dashboards saved objects: the seclake index pattern,
    /// visualizations and dashboard.
    Dashboards {
        #[command(subcommand)]
        command: seclake::dashboards::DashboardsCommand,
    },
    /// Re-index a day of the lake into a sink: `backfill opensearch --date D`.
    Backfill {
        #[command(subcommand)]
        command: seclake::backfill::BackfillCommand,
    },
    /// The WAF IP set of blocked addresses (`[response]`): list, add, remove.
    Blocks {
        #[command(subcommand)]
        command: seclake::blocks::BlocksCommand,
    },
}

fn main() -> ExitCode {
    if let Err(e) = check_cpu() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    check_replay_flags(&cli);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let progress = std::io::stderr().is_terminal();
    match cli.command {
        Command::Run {
            config,
            follow,
            summary_json,
            until_caught_up,
        } => {
            let cfg = Config::load(&config)?;
            let options = RunOptions {
                follow,
                progress,
                until_caught_up,
            };
            let summary = seclake::pipeline::run(&cfg, &options)?;
            print_summary(&summary);
            if let Some(path) = summary_json {
                let json = serde_json::to_vec_pretty(&summary)?;
                std::fs::write(&path, json)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Validate { config } => {
            let cfg = Config::load(&config)?;
            seclake_enrich::geoip::GeoIp::open(&cfg.geoip).context("[geoip]")?;
            seclake_enrich::threat::ThreatEngine::from_config(&cfg.threat).context("[threat]")?;
            for (i, source) in cfg.sources.iter().enumerate() {
                // Building opens what a source reads locally (files must
                // exist) and connects to nothing.
                source
                    .spec()
                    .build()
                    .with_context(|| format!("source[{i}]"))?;
            }
            println!("{}: ok ({} sources)", config.display(), cfg.sources.len());
        }
        Command::Gen {
            date,
            scale,
            seed,
            out,
            gzip,
        } => {
            let summary = seclake_fixtures::generate(&seclake_fixtures::GenConfig {
                date,
                scale,
                seed,
                out,
                gzip,
            })?;
            for f in summary.files {
                println!(
                    "{:<9} {:>10} lines {:>6} malformed {:>8.1} MB  {}",
                    f.format,
                    f.lines,
                    f.malformed,
                    f.bytes as f64 / 1e6,
                    f.path.display()
                );
            }
        }
        Command::Query { sql, lake, format } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            let batches = runtime.block_on(async {
                let lake = lake.open().await?;
                seclake_queries::report::query(lake.context(), "sql", sql)
                    .await
                    .context("running the query")
            })?;
            let mut out = std::io::stdout().lock();
            seclake_queries::output::write_results(&batches, format, &mut out)
                .context("printing the results")?;
        }
        Command::Demo { out, scale, date } => {
            let date = date
                .unwrap_or_else(|| (chrono::Utc::now() - chrono::Duration::days(1)).date_naive());
            let demo = seclake::demo::run(&out, date, scale, progress)?;
            print_summary(&demo.summary);
            println!();
            println!(
                "{}",
                seclake_queries::render::summary(&demo.report.report).trim_end()
            );
            println!();
            println!("lake:   {}/lake", out.display());
            println!(
                "config: {} (rerun with `seclake run --config …`)",
                demo.config.display()
            );
            for (_, path) in &demo.report.files {
                println!("report: {path}");
            }
        }
        Command::Replay {
            to,
            brokers,
            topic,
            partitions,
            replication_factor,
            producer_options,
            stream,
            delivery_stream,
            region,
            endpoint,
            aggregate,
            rate,
            report_json,
            files,
        } => {
            let report = match to {
                ReplayTo::Kafka => {
                    let options = ReplayOptions {
                        brokers,
                        topic: topic.context("--topic is required with --to kafka")?,
                        partitions,
                        replication: replication_factor,
                        rate,
                        files,
                        producer_options,
                        progress,
                    };
                    seclake::replay::replay(&options)?
                }
                ReplayTo::Kinesis | ReplayTo::Firehose => {
                    let aws = AwsOptions {
                        region,
                        endpoint,
                        rate,
                        files,
                        progress,
                    };
                    if to == ReplayTo::Kinesis {
                        let options = KinesisOptions {
                            stream: stream.context("--stream is required with --to kinesis")?,
                            aggregate,
                            aws,
                        };
                        seclake::replay::replay_kinesis(&options)?
                    } else {
                        let options = FirehoseOptions {
                            delivery_stream: delivery_stream
                                .context("--delivery-stream is required with --to firehose")?,
                            aws,
                        };
                        seclake::replay::replay_firehose(&options)?
                    }
                }
            };
            println!("{report}");
            if let Some(path) = report_json {
                std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if report.failed > 0 {
                anyhow::bail!("{} records were not accepted", report.failed);
            }
        }
        Command::Schema => print!("{}", seclake_enrich::schema::schema_markdown()),
        Command::Dashboards { command } => match command {
            seclake::dashboards::DashboardsCommand::Import(args) => {
                let summary = seclake::dashboards::import(&args)
                    .context("importing the saved objects into OpenSearch Dashboards")?;
                println!("{summary}");
            }
        },
        Command::Backfill { command } => match command {
            seclake::backfill::BackfillCommand::OpenSearch(args) => {
                let cfg = Config::load(&args.config)?;
                let context = || format!("backfilling {} into OpenSearch", args.date);
                let summary =
                    seclake::backfill::opensearch(&cfg, &args, progress).with_context(context)?;
                print!("{summary}");
                summary.into_result().with_context(context)?;
            }
        },
        Command::Blocks { command } => print!("{}", seclake::blocks::run(&command)?),
    }
    Ok(())
}

/// Where `seclake replay` sends.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReplayTo {
    /// A Kafka topic.
    Kafka,
    /// A Kinesis data stream.
    Kinesis,
    /// An Amazon Data Firehose delivery stream.
    Firehose,
}

/// Exits with a usage error (as clap's own) when `replay` lacks `--topic` for
/// the default `--to kafka`, which `required_if_eq` does not see, or has a
/// flag of another target.
fn check_replay_flags(cli: &Cli) {
    use ReplayTo::{Firehose, Kafka, Kinesis};
    let Command::Replay {
        to,
        topic,
        producer_options,
        stream,
        delivery_stream,
        region,
        endpoint,
        aggregate,
        ..
    } = &cli.command
    else {
        return;
    };
    // Each target's own flags: whether given, and the targets they apply to.
    let flags: [(&str, bool, &[ReplayTo]); 7] = [
        ("--topic", topic.is_some(), &[Kafka]),
        ("--producer-option", !producer_options.is_empty(), &[Kafka]),
        ("--stream", stream.is_some(), &[Kinesis]),
        ("--aggregate", *aggregate, &[Kinesis]),
        ("--delivery-stream", delivery_stream.is_some(), &[Firehose]),
        ("--region", region.is_some(), &[Kinesis, Firehose]),
        ("--endpoint", endpoint.is_some(), &[Kinesis, Firehose]),
    ];
    let target = clap::ValueEnum::to_possible_value(to)
        .map(|value| value.get_name().to_owned())
        .unwrap_or_default();
    let error = if *to == Kafka && topic.is_none() {
        Some((
            ErrorKind::MissingRequiredArgument,
            "the following required arguments were not provided:\n  --topic <TOPIC>".to_owned(),
        ))
    } else {
        let misplaced = flags
            .iter()
            .find(|(_, given, targets)| *given && !targets.contains(to));
        misplaced.map(|(flag, _, _)| {
            (
                ErrorKind::ArgumentConflict,
                format!("{flag} does not apply to --to {target}"),
            )
        })
    };
    if let Some((kind, message)) = error {
        let mut command = Cli::command();
        command.build();
        match command.find_subcommand_mut("replay") {
            Some(replay) => replay.error(kind, message).exit(),
            None => command.error(kind, message).exit(),
        }
    }
}

/// Parses `key=value`.
fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

fn print_summary(s: &RunSummary) {
    println!(
        "{:<10} {:>12} {:>12} {:>13} {:>10}",
        "format", "records", "events", "dead letters", "MB read"
    );
    for (name, c) in &s.formats {
        println!(
            "{:<10} {:>12} {:>12} {:>13} {:>10.1}",
            name,
            c.records,
            c.events,
            c.dead_letters,
            c.bytes as f64 / 1e6
        );
    }
    println!(
        "lake: {} rows in {} files ({:.1} MB); dead letters: {}; {:.1} s, {:.0} events/s, {:.1} MB/s",
        s.lake_rows,
        s.lake_files,
        s.lake_bytes as f64 / 1e6,
        s.dead_letters,
        s.seconds,
        s.events_per_second(),
        s.mb_per_second()
    );
}
