//! `seclake-bench e2e`: end-to-end throughput of the real `seclake` binary
//! against the one-core JSON parse floor, with a correctness check;
//! `seclake-bench report`: the daily report's SQL against DuckDB on the same
//! lake (`seclake-bench/report.rs`); `seclake-bench opensearch`: the
//! OpenSearch sink against a raw `_bulk` loader, end to end, and freshness
//! (`seclake-bench/opensearch.rs`).
//!
//! ```sh
//! cargo build --release -p seclake
//! cargo run --release -p seclake-benches --bin seclake-bench -- e2e --scale 10
//! ```
//!
//! Steps: generate the fixture day once into a cache directory (reused while
//! its `manifest.json` matches); measure the floor (one thread, every line of
//! the selected files parsed into a `sonic_rs::Value`, streamed); run
//! `seclake run` as a child process into a fresh lake and dead-letter
//! directory; read the child's peak RSS with `wait4`; check every record came
//! out exactly once (events in the lake, malformed lines in the dead
//! letters); print the figures. Exits non-zero when a check fails.
//!
//! With `--kafka BROKERS` (and `--kinesis ENDPOINT`), the same records are
//! also replayed into topics (streams) once and every run reads them from
//! Kafka (Kinesis) too, so the sources are compared on the same input, in the
//! same invocation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Parser, Subcommand};
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use parquet::file::statistics::Statistics;
use seclake_benches::{
    FloorStats, Format, SEED, bench_date, env_paths, floor_parse_reader, format_by_name,
    workspace_dir,
};
use seclake_fixtures::services::unique_name;
use serde::{Deserialize, Serialize};

// Beside this file, not in `src/bin/`, where Cargo would take it for a binary.
#[path = "seclake-bench/firehose.rs"]
mod firehose;
#[path = "seclake-bench/kinesis.rs"]
mod kinesis;
#[path = "seclake-bench/opensearch.rs"]
mod opensearch;
#[path = "seclake-bench/report.rs"]
mod report;
#[path = "seclake-bench/response.rs"]
mod response;

/// seclake's end-to-end benchmark.
#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// File → parse → enrich → Parquet lake with the release `seclake`
    /// binary, against the one-core sonic-rs parse floor of the same input.
    E2e(E2eArgs),
    /// Kafka → lake on S3 (a moto server of the bench's own) with the S3
    /// server frozen (SIGSTOP) for a while mid-run: the pipeline's memory
    /// while its sink is stalled, and that every record arrives after.
    Stall(StallArgs),
    /// The daily report (`seclake_queries::build`, in process) beside DuckDB
    /// running the same SQL over the same Parquet lake, step by step.
    Report(report::ReportArgs),
    /// The OpenSearch sink: indexing rate against a raw `_bulk` loader of
    /// the same documents, lake + OpenSearch against lake alone, and the
    /// freshness of a steady Kafka stream (produced → searchable).
    Opensearch(opensearch::OpenSearchArgs),
    /// The Firehose source: deliveries from this process into `seclake
    /// run`'s endpoint → lake, against file → lake on the same records,
    /// and the endpoint's answer latency at that load.
    Firehose(firehose::FirehoseArgs),
    /// The automatic response: from an attacking record entering Kafka to
    /// its address in the WAF IP set (moto), under steady other traffic.
    Response(response::ResponseArgs),
}

#[derive(Args)]
struct StallArgs {
    /// Volume of WAF records: 1 = 100,000.
    #[arg(long, default_value_t = 2.0)]
    scale: f64,
    /// Kafka brokers.
    #[arg(long, env = "SECLAKE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 6)]
    partitions: u32,
    /// How long the S3 server stays frozen.
    #[arg(long, default_value_t = 15)]
    stall_secs: u64,
    /// The moto server executable [default: the one `scripts/services` installs].
    #[arg(long)]
    moto_server: Option<PathBuf>,
    /// The seclake binary [default: `seclake` beside this program].
    #[arg(long, env = "SECLAKE_BIN")]
    seclake: Option<PathBuf>,
}

#[derive(Args)]
struct E2eArgs {
    /// Volume: 1 = 100,000 WAF, 10,000 Falco and 50,000 app lines.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Formats to read, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "waf,falco,app", value_parser = parse_format)]
    formats: Vec<Format>,
    /// Parse/enrich worker threads (`[pipeline] workers`); default: seclake's (all cores).
    #[arg(long)]
    workers: Option<usize>,
    /// Where the fixture logs are generated and reused
    /// [default: $HOME/.cache/seclake/bench-data/scale-<N>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Run the pipeline (and the floor) this many times; report the median.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Enrich with GeoIP: MaxMind's test City and ASN databases from
    /// fixtures/geoip/, or the files in SECLAKE_GEOIP_CITY / SECLAKE_GEOIP_ASN
    /// (comma-separated) when set.
    #[arg(long)]
    geoip: bool,
    /// The seclake binary [default: `seclake` beside this program].
    #[arg(long, env = "SECLAKE_BIN")]
    seclake: Option<PathBuf>,
    /// Keep each run's config, logs, lake and dead letters.
    #[arg(long)]
    keep: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also run Kafka → lake on the same records: they are replayed once into
    /// fresh topics on these brokers (`seclake replay`, not timed), then each
    /// run reads them with a new consumer group (`--until-caught-up`).
    #[arg(long, value_name = "BROKERS")]
    kafka: Option<String>,
    /// Partitions of each topic `--kafka` creates.
    #[arg(long, default_value_t = 6)]
    kafka_partitions: u32,
    /// Also run Kinesis → lake on the same records: they are replayed once
    /// as KPL aggregates into fresh streams at this endpoint (kinesalite's
    /// URL; `seclake replay --to kinesis --aggregate`, not timed), then each
    /// run reads them with a new lease table (`--until-caught-up`).
    #[arg(long, value_name = "ENDPOINT")]
    kinesis: Option<String>,
    /// Shards of each stream `--kinesis` creates.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    kinesis_shards: i32,
    /// The region of `--kinesis` and of the lease tables.
    #[arg(long, default_value = "us-east-1")]
    kinesis_region: String,
    /// The DynamoDB endpoint of the lease tables (moto's).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    kinesis_lease_endpoint: String,
    /// `[lake] open_hours` for every run (seclake's default when unset).
    #[arg(long)]
    open_hours: Option<u32>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    format_by_name(s.trim())
        .ok_or_else(|| format!("unknown format {s:?}: use waf, falco, app or guardduty"))
}

fn main() -> ExitCode {
    let outcome = match Cli::parse().command {
        Cmd::E2e(args) => e2e(&args),
        Cmd::Stall(args) => stall(&args),
        Cmd::Report(args) => report::report(&args),
        Cmd::Opensearch(args) => opensearch::opensearch(&args),
        Cmd::Firehose(args) => firehose::firehose(&args),
        Cmd::Response(args) => response::response(&args),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `manifest.json` as `seclake_fixtures::generate` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    date: String,
    seed: u64,
    scale: f64,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ManifestFile {
    format: String,
    path: String,
    lines: u64,
    malformed: u64,
    bytes: u64,
}

/// `seclake run --summary-json` output (the fields checked here).
#[derive(Debug, Clone, Deserialize)]
struct Summary {
    /// Per format (`sources` before the source/sink contracts, so the bench
    /// reads binaries of either age).
    #[serde(alias = "sources")]
    formats: BTreeMap<String, FormatCounts>,
    lake_rows: u64,
    lake_files: u64,
    lake_bytes: u64,
    dead_letters: u64,
    undelivered_batches: u64,
    seconds: f64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct FormatCounts {
    records: u64,
    events: u64,
    dead_letters: u64,
}

/// The error of a `seclake run` that exited with `status`: its run
/// directory kept, and the last lines of its stderr.
fn run_failed(
    status: std::process::ExitStatus,
    run_dir: tempfile::TempDir,
    stderr: &Path,
) -> anyhow::Error {
    let tail = last_lines(stderr, 20);
    let kept = run_dir.keep();
    anyhow::anyhow!(
        "seclake run failed ({status}); run directory kept at {}; last lines of its stderr:\n{}",
        kept.display(),
        tail
    )
}

/// A JSON file a run wrote (its `--summary-json`).
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_slice(&fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("parsing {}", path.display()))
}

/// The last `n` lines of a log file (empty when it can't be read).
fn last_lines(path: &Path, n: usize) -> String {
    let log = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One input file of the selected formats.
struct Input {
    format: Format,
    path: PathBuf,
    lines: u64,
    malformed: u64,
    bytes: u64,
}

impl Input {
    fn events(&self) -> u64 {
        self.lines - self.malformed
    }
}

/// What one pipeline run did and cost.
struct E2eRun {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
    summary: Summary,
    /// What is on disk, read back independently of the summary.
    lake: LakeScan,
    /// CPU time of the server the run read from (a broker or stand-in on
    /// this machine), over the run.
    server_cpu: Option<Duration>,
}

#[derive(Debug, Default)]
struct LakeScan {
    files: u64,
    bytes: u64,
    rows: BTreeMap<String, u64>,
    dead_letters: BTreeMap<String, u64>,
    stray: Vec<PathBuf>,
    /// Files whose event times (`ts` statistics) fall outside their
    /// `dt=…/hour=…` partition, with the first offending time.
    misplaced: Vec<(PathBuf, i64)>,
}

fn e2e(args: &E2eArgs) -> Result<bool> {
    if !args.scale.is_finite() || args.scale <= 0.0 {
        bail!("--scale must be a positive number, not {}", args.scale);
    }
    let mut formats = args.formats.clone();
    formats.sort_by_key(|f| Format::ALL.iter().position(|a| a == f));
    formats.dedup();
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_root()?.join(format!("scale-{}", args.scale)),
    };
    let (data_dir, manifest, reused) = ensure_fixtures(&data_dir, args.scale)?;
    let inputs: Vec<Input> = formats
        .iter()
        .map(|&format| {
            let f = manifest
                .files
                .iter()
                .find(|f| f.format == format.as_str())
                .with_context(|| format!("manifest has no {} file", format.as_str()))?;
            Ok(Input {
                format,
                path: data_dir.join(&f.path),
                lines: f.lines,
                malformed: f.malformed,
                bytes: f.bytes,
            })
        })
        .collect::<Result<_>>()?;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let names: Vec<&str> = formats.iter().map(|f| f.as_str()).collect();
    println!(
        "seclake-bench e2e: scale {}, formats {}, workers {}, {} cores, GeoIP {}, repeat {}",
        args.scale,
        names.join(","),
        args.workers
            .map_or_else(|| "default".to_owned(), |w| w.to_string()),
        cores,
        if args.geoip { "on" } else { "off" },
        args.repeat
    );
    println!(
        "data:   {} ({})",
        data_dir.display(),
        if reused { "reused" } else { "generated" }
    );
    println!("binary: {}", seclake.display());

    // Both sides must read from the page cache: a freshly generated or
    // evicted file would make the first floor pass a disk benchmark.
    for input in &inputs {
        let mut file =
            File::open(&input.path).with_context(|| format!("opening {}", input.path.display()))?;
        std::io::copy(&mut file, &mut std::io::sink())
            .with_context(|| format!("reading {}", input.path.display()))?;
    }

    let mut peers = Vec::new();
    if let Some(brokers) = &args.kafka {
        let topics = replay_inputs(&seclake, brokers, args.kafka_partitions, &inputs)?;
        peers.push(Peer::new(
            "kafka",
            PeerSource::Kafka {
                brokers: brokers.clone(),
                topics,
            },
            brokers.split(',').next().unwrap_or_default(),
        ));
    }
    if let Some(endpoint) = &args.kinesis {
        let setup = kinesis::KinesisSetup {
            endpoint,
            lease_endpoint: &args.kinesis_lease_endpoint,
            region: &args.kinesis_region,
            shards: args.kinesis_shards,
        };
        let streams = kinesis::KinesisStreams::replay(&seclake, &setup, &inputs, &data_dir)?;
        peers.push(Peer::new("kinesis", PeerSource::Kinesis(streams), endpoint));
    }
    let file_sources = file_sources(&inputs);
    let mut floors: Vec<Vec<FloorStats>> = Vec::new();
    let mut runs: Vec<E2eRun> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for i in 0..args.repeat {
        let floor = inputs
            .iter()
            .map(|input| {
                let file = File::open(&input.path)
                    .with_context(|| format!("opening {}", input.path.display()))?;
                floor_parse_reader(file)
                    .with_context(|| format!("reading {}", input.path.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let run = run_pipeline(args, &seclake, &data_dir, &file_sources, &[], &[])?;
        let floor_s = total(&floor).elapsed.as_secs_f64();
        let e2e_s = run.wall.as_secs_f64();
        if args.repeat > 1 {
            println!(
                "run {}/{}: floor {floor_s:.3} s, e2e {e2e_s:.3} s, ratio {:.3}, peak RSS {:.1} MiB",
                i + 1,
                args.repeat,
                floor_s / e2e_s,
                run.max_rss_kib as f64 / 1024.0
            );
        }
        failures.extend(
            verify(&inputs, &run)
                .into_iter()
                .map(|f| format!("run {}: {f}", i + 1)),
        );
        for peer in &mut peers {
            let sources = peer.sources();
            let server_before = peer.server.and_then(process_cpu);
            let mut other = run_pipeline(
                args,
                &seclake,
                &data_dir,
                &sources,
                &["--until-caught-up"],
                peer.env(),
            )?;
            other.server_cpu = peer
                .server
                .and_then(process_cpu)
                .zip(server_before)
                .and_then(|(after, before)| after.checked_sub(before));
            println!(
                "run {}/{}: {} {}",
                i + 1,
                args.repeat,
                peer.name,
                versus_file(&inputs, &other, &run)
            );
            failures.extend(
                verify(&inputs, &other)
                    .into_iter()
                    .map(|f| format!("run {} ({}): {f}", i + 1, peer.name)),
            );
            peer.runs.push(other);
            if let PeerSource::Kinesis(streams) = &peer.source {
                let read = streams.read_alone()?;
                let ceiling = run.wall.as_secs_f64() / read.seconds.max(1e-9);
                println!(
                    "run {}/{}: kinesis server alone: {} records, {:.1} MB of GetRecords answers in {:.3} s, so Kinesis → lake can reach at most {ceiling:.3} of the file run here",
                    i + 1,
                    args.repeat,
                    read.records,
                    read.answer_bytes as f64 / 1e6,
                    read.seconds
                );
                peer.alone.push((read, ceiling));
            }
        }
        floors.push(floor);
        runs.push(run);
    }

    // Medians: the floor pass and the pipeline run with the median time.
    let floor = median_by(&floors, |f| total(f).elapsed);
    let run = median_by(&runs, |r| r.wall);
    let report = Report::new(&inputs, floor, run);
    print!("{}", report.table(args.repeat));
    let medians: Vec<(&str, &E2eRun)> = peers
        .iter()
        .map(|p| (p.name, median_by(&p.runs, |r| r.wall)))
        .collect();
    if !medians.is_empty() {
        print!("{}", report.sources_table(&medians));
    }
    let alone: Vec<&(kinesis::ServerRead, f64)> = peers.iter().flat_map(|p| &p.alone).collect();
    if !alone.is_empty() {
        let (read, ceiling) = median_by(&alone, |(r, _)| Duration::from_secs_f64(r.seconds));
        println!(
            "kinesis server alone (median): {:.3} s to answer every record, ceiling of Kinesis → lake / file → lake here {ceiling:.3}",
            read.seconds
        );
    }
    if let Some(path) = &args.json {
        let mut json = report.json(args, &formats, &data_dir, &medians);
        if let Some(object) = json.as_object_mut()
            && !alone.is_empty()
        {
            let rounds: Vec<serde_json::Value> = alone
                .iter()
                .map(|(read, ceiling)| serde_json::json!({ "read": read, "ceiling": ceiling }))
                .collect();
            object.insert("kinesis_server_alone".into(), rounds.into());
        }
        fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if failures.is_empty() {
        println!(
            "checks: ok — per format, lake rows = events = lines − malformed, dead letters = malformed"
        );
        Ok(true)
    } else {
        println!("checks: FAILED");
        for f in &failures {
            println!("  {f}");
        }
        Ok(false)
    }
}

fn total(stats: &[FloorStats]) -> FloorStats {
    let mut t = FloorStats::default();
    for s in stats {
        t.add(s);
    }
    t
}

/// The element with the median key (the lower middle for an even count).
fn median_by<T, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> &T {
    let mut order: Vec<&T> = items.iter().collect();
    order.sort_by_key(|t| key(t));
    order[(order.len() - 1) / 2]
}

/// The release `seclake` binary: `--seclake`, else beside this program.
fn seclake_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe().context("locating this program")?;
            exe.parent()
                .context("this program has no directory")?
                .join(format!("seclake{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !path.is_file() {
        bail!(
            "the seclake binary is not at {}; build it first with `cargo build --release -p seclake` \
             (same CARGO_TARGET_DIR as this bench), or pass --seclake PATH",
            path.display()
        );
    }
    Ok(path)
}

fn default_data_root() -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("HOME is not set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".cache/seclake/bench-data"))
}

/// Returns the fixture directory (absolute), its manifest, and whether it was reused.
fn ensure_fixtures(dir: &Path, scale: f64) -> Result<(PathBuf, Manifest, bool)> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    if let Some(m) = matching_manifest(&dir, scale) {
        return Ok((dir, m, true));
    }
    let manifest_path = dir.join("manifest.json");
    // A stale manifest must not survive a generation that stops half way.
    if manifest_path.exists() {
        fs::remove_file(&manifest_path)
            .with_context(|| format!("removing {}", manifest_path.display()))?;
    }
    eprintln!(
        "generating fixture logs at scale {scale} into {} …",
        dir.display()
    );
    let started = Instant::now();
    seclake_fixtures::generate(&seclake_fixtures::GenConfig::new(
        bench_date(),
        scale,
        SEED,
        dir.clone(),
    ))
    .context("generating fixture logs")?;
    eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    let m = matching_manifest(&dir, scale).with_context(|| {
        format!(
            "{} does not match what was just generated",
            manifest_path.display()
        )
    })?;
    Ok((dir, m, false))
}

/// The directory's manifest, if it describes this bench's day at `scale` and
/// every file is there with its recorded size.
fn matching_manifest(dir: &Path, scale: f64) -> Option<Manifest> {
    let text = fs::read(dir.join("manifest.json")).ok()?;
    let m: Manifest = serde_json::from_slice(&text).ok()?;
    let date = bench_date().format("%Y-%m-%d").to_string();
    let complete = m.date == date
        && m.seed == SEED
        && m.scale == scale
        && Format::ALL.iter().all(|f| {
            m.files.iter().any(|mf| {
                mf.format == f.as_str()
                    && mf.lines == seclake_fixtures::lines_for_scale(*f, scale)
                    && fs::metadata(dir.join(&mf.path)).is_ok_and(|md| md.len() == mf.bytes)
            })
        });
    complete.then_some(m)
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_paths(paths: &[PathBuf]) -> String {
    let items: Vec<String> = paths
        .iter()
        .map(|p| toml_str(&p.to_string_lossy()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// `[[source]]` tables reading the inputs from their files.
fn file_sources(inputs: &[Input]) -> String {
    let mut text = String::new();
    for input in inputs {
        let _ = write!(
            text,
            "[[source]]\ntype = \"file\"\nformat = \"{}\"\npath = {}\n\n",
            input.format.as_str(),
            toml_str(&input.path.to_string_lossy())
        );
    }
    text
}

/// `[[source]]` tables reading `(format, topic)`s with a consumer group.
fn kafka_sources(brokers: &str, topics: &[(Format, String)], group: &str) -> String {
    let mut text = String::new();
    for (format, topic) in topics {
        let _ = write!(
            text,
            "[[source]]\ntype = \"kafka\"\nformat = \"{}\"\nbrokers = {}\ntopic = {}\ngroup = {}\n\n",
            format.as_str(),
            toml_str(brokers),
            toml_str(topic),
            toml_str(group)
        );
    }
    text
}

/// A source run beside file → lake on the same records each round.
struct Peer {
    /// `kafka` or `kinesis`.
    name: &'static str,
    source: PeerSource,
    /// The server's process, when it runs on this machine.
    server: Option<u32>,
    runs: Vec<E2eRun>,
    /// Kinesis: the server alone each round, and the ratio it allows.
    alone: Vec<(kinesis::ServerRead, f64)>,
}

/// Where a [`Peer`] reads the replayed records.
enum PeerSource {
    Kafka {
        brokers: String,
        topics: Vec<(Format, String)>,
    },
    Kinesis(kinesis::KinesisStreams),
}

impl Peer {
    /// `address` is the server's `host:port` or URL.
    fn new(name: &'static str, source: PeerSource, address: &str) -> Peer {
        Peer {
            name,
            source,
            server: local_listener(address),
            runs: Vec::new(),
            alone: Vec::new(),
        }
    }

    /// The `[[source]]` tables of one run: a new consumer group or new lease
    /// tables, so each run reads everything from the start.
    fn sources(&mut self) -> String {
        match &mut self.source {
            PeerSource::Kafka { brokers, topics } => {
                kafka_sources(brokers, topics, &unique_name("seclake-bench"))
            }
            PeerSource::Kinesis(streams) => streams.sources(),
        }
    }

    /// The environment `seclake run` needs for this source.
    fn env(&self) -> &'static [(&'static str, &'static str)] {
        match self.source {
            PeerSource::Kafka { .. } => &[],
            PeerSource::Kinesis(_) => &kinesis::CREDENTIALS,
        }
    }
}

/// The process listening on `address` (`host:port` or a URL), when the host
/// is this machine's loopback and /proc shows the process.
fn local_listener(address: &str) -> Option<u32> {
    let authority = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = authority.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
        return None;
    }
    // Listening sockets on the port: `local_address` is HEXADDR:HEXPORT,
    // state 0A is LISTEN, the tenth field the socket's inode.
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let on_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                == Some(port);
            if on_port && fields.get(3) == Some(&"0A") {
                sockets.extend(fields.get(9).map(|inode| format!("socket:[{inode}]")));
            }
        }
    }
    if sockets.is_empty() {
        return None;
    }
    fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let fds = fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .filter_map(|fd| fs::read_link(fd.path()).ok())
            .any(|link| sockets.iter().any(|s| link.as_os_str() == s.as_str()))
            .then_some(pid)
    })
}

/// CPU time (user + system) process `pid` has used so far, from its CPU clock.
fn process_cpu(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes only the clock id.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only `now`.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// One round of another source against the file run of the same round.
fn versus_file(inputs: &[Input], other: &E2eRun, file: &E2eRun) -> String {
    let events: u64 = inputs.iter().map(Input::events).sum();
    let mb = inputs.iter().map(|i| i.bytes).sum::<u64>() as f64 / 1e6;
    let server = other.server_cpu.map_or(String::new(), |c| {
        format!(", server CPU {:.2} s", c.as_secs_f64())
    });
    format!(
        "→ lake {:.3} s, {} events/s, {:.1} MB/s, CPU {:.2} s ({:.2} cores busy){server}, ratio to the file run {:.3}, peak RSS {:.1} MiB",
        other.wall.as_secs_f64(),
        thousands(per_sec(events as f64, other.wall)),
        per_sec(mb, other.wall),
        other.cpu.as_secs_f64(),
        other.cpu.as_secs_f64() / other.wall.as_secs_f64().max(1e-9),
        file.wall.as_secs_f64() / other.wall.as_secs_f64().max(1e-9),
        other.max_rss_kib as f64 / 1024.0
    )
}

/// Replays every input into a fresh topic with `seclake replay`; returns
/// `(format, topic)`s.
fn replay_inputs(
    seclake: &Path,
    brokers: &str,
    partitions: u32,
    inputs: &[Input],
) -> Result<Vec<(Format, String)>> {
    let mut topics = Vec::new();
    for input in inputs {
        let topic = unique_name(&format!("seclake-bench-{}", input.format.as_str()));
        let started = Instant::now();
        let status = Command::new(seclake)
            .args(["replay", "--brokers", brokers, "--topic", &topic])
            .args(["--partitions", &partitions.to_string()])
            .arg(&input.path)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running {} replay", seclake.display()))?;
        if !status.success() {
            bail!("seclake replay into {topic} failed ({status})");
        }
        println!(
            "kafka:  {} lines of {} replayed into {topic} ({partitions} partitions) in {:.1} s",
            input.lines,
            input.format.as_str(),
            started.elapsed().as_secs_f64()
        );
        topics.push((input.format, topic));
    }
    Ok(topics)
}

fn pipeline_config(args: &E2eArgs, sources: &str, run_dir: &Path) -> String {
    let mut text = sources.to_owned();
    if args.geoip {
        let fixtures = workspace_dir().join("fixtures").join("geoip");
        let or = |env: Vec<PathBuf>, file: &str| {
            if env.is_empty() {
                vec![fixtures.join(file)]
            } else {
                env
            }
        };
        let city = or(env_paths("SECLAKE_GEOIP_CITY"), "GeoLite2-City-Test.mmdb");
        let asn = or(env_paths("SECLAKE_GEOIP_ASN"), "GeoLite2-ASN-Test.mmdb");
        let _ = write!(
            text,
            "[geoip]\ncity = {}\nasn = {}\n\n",
            toml_paths(&city),
            toml_paths(&asn)
        );
    }
    for (section, dir) in [("lake", "lake"), ("dlq", "dlq")] {
        let url = format!("file://{}", run_dir.join(dir).to_string_lossy());
        let _ = write!(text, "[{section}]\nurl = {}\n", toml_str(&url));
        if let (Some(hours), "lake") = (args.open_hours, section) {
            let _ = writeln!(text, "open_hours = {hours}");
        }
        text.push('\n');
    }
    if let Some(workers) = args.workers {
        let _ = write!(text, "[pipeline]\nworkers = {workers}\n");
    }
    text
}

/// Runs `seclake run` once into a fresh lake under `data_dir`, with
/// `extra_args` and `env` added.
fn run_pipeline(
    args: &E2eArgs,
    seclake: &Path,
    data_dir: &Path,
    sources: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Result<E2eRun> {
    let run_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(data_dir)
        .with_context(|| format!("creating a run directory in {}", data_dir.display()))?;
    let dir = run_dir.path();
    for sub in ["lake", "dlq"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let config = dir.join("seclake.toml");
    fs::write(&config, pipeline_config(args, sources, dir))?;
    let summary_path = dir.join("summary.json");
    let stdout = dir.join("stdout.log");
    let stderr = dir.join("stderr.log");

    let mut cmd = Command::new(seclake);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary_path)
        .args(extra_args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?);
    let (status, wall, usage) =
        spawn_and_wait(&mut cmd).with_context(|| format!("running {}", seclake.display()))?;
    if !status.success() {
        return Err(run_failed(status, run_dir, &stderr));
    }
    let summary: Summary = read_json(&summary_path)?;
    let lake = scan_outputs(&dir.join("lake"), &dir.join("dlq"))?;
    if args.keep {
        let kept = run_dir.keep();
        println!("kept:   {}", kept.display());
    }
    Ok(E2eRun {
        wall,
        cpu: usage.cpu,
        max_rss_kib: usage.max_rss_kib,
        summary,
        lake,
        server_cpu: None,
    })
}

struct Usage {
    cpu: Duration,
    max_rss_kib: u64,
}

/// Spawns `cmd` and reaps it with `wait4`, which returns the child's own
/// resource usage (peak RSS, CPU time), not that of every child so far.
fn spawn_and_wait(cmd: &mut Command) -> Result<(ExitStatus, Duration, Usage)> {
    let started = Instant::now();
    let (status, usage) = reap(Killed(cmd.spawn()?))?;
    Ok((status, started.elapsed(), usage))
}

/// Waits for a child with `wait4`, which returns its own resource usage.
fn reap(child: Killed) -> Result<(ExitStatus, Usage)> {
    let pid = libc::pid_t::try_from(child.0.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both out-pointers are valid
        // for writes for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    // Reaped above: nothing left to kill or wait for.
    std::mem::forget(child);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok((
        ExitStatus::from_raw(status),
        Usage {
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            // Linux reports ru_maxrss in KiB.
            max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        },
    ))
}

/// Reads back what the run left on disk: Parquet footers' row counts per
/// `source=` partition, and dead-letter lines per source.
fn scan_outputs(lake: &Path, dlq: &Path) -> Result<LakeScan> {
    let mut scan = LakeScan::default();
    for path in files_under(lake)? {
        if path.extension().is_some_and(|e| e == "parquet") {
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            scan.bytes += file.metadata()?.len();
            let reader = SerializedFileReader::new(file)
                .with_context(|| format!("reading the footer of {}", path.display()))?;
            let rows = u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
            *scan.rows.entry(partition_source(&path)).or_default() += rows;
            scan.files += 1;
            if let Some(bad) = ts_outside_partition(&path, &reader) {
                scan.misplaced.push((path, bad));
            }
        } else {
            scan.stray.push(path);
        }
    }
    for path in files_under(dlq)? {
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let lines = memchr::memchr_iter(b'\n', &data).count() as u64;
        *scan
            .dead_letters
            .entry(partition_source(&path))
            .or_default() += lines;
    }
    Ok(scan)
}

fn files_under(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    Ok(out)
}

/// The lake partitions by event time: a file under `dt=D/hour=H` holds only
/// `ts` in that hour. Returns a `ts` (µs) from the footer's statistics that is
/// outside it, or the partition start when the path has no valid partition.
fn ts_outside_partition(path: &Path, reader: &SerializedFileReader<File>) -> Option<i64> {
    const HOUR_US: i64 = 3_600_000_000;
    let key = |prefix: &str| {
        path.components().find_map(|c| {
            c.as_os_str()
                .to_str()?
                .strip_prefix(prefix)
                .map(str::to_owned)
        })
    };
    let start = key("dt=")
        .and_then(|d| chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        .zip(key("hour=").and_then(|h| h.parse::<u32>().ok()))
        .and_then(|(d, h)| d.and_hms_opt(h, 0, 0))
        .map(|t| t.and_utc().timestamp_micros());
    let Some(start) = start else {
        return Some(0);
    };
    for rg in reader.metadata().row_groups() {
        let ts = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "ts");
        if let Some(Statistics::Int64(s)) = ts.and_then(|c| c.statistics()) {
            for t in [s.min_opt(), s.max_opt()].into_iter().flatten() {
                if !(start..start + HOUR_US).contains(t) {
                    return Some(*t);
                }
            }
        }
    }
    None
}

/// `waf` from `…/source=waf/dt=…/…`.
fn partition_source(path: &Path) -> String {
    path.components()
        .filter_map(|c| {
            c.as_os_str()
                .to_str()?
                .strip_prefix("source=")
                .map(str::to_owned)
        })
        .next()
        .unwrap_or_else(|| "?".to_owned())
}

/// Every record exactly once: per format, events = lines − malformed and
/// dead letters = malformed, in the summary and on disk.
fn verify(inputs: &[Input], run: &E2eRun) -> Vec<String> {
    let mut failures = Vec::new();
    let s = &run.summary;
    for input in inputs {
        let name = input.format.as_str();
        let want_events = input.events();
        let c = s.formats.get(name).copied().unwrap_or_default();
        if c.events != want_events {
            failures.push(format!(
                "{name}: summary has {} events, expected {want_events} ({} lines − {} malformed)",
                c.events, input.lines, input.malformed
            ));
        }
        if c.dead_letters != input.malformed {
            failures.push(format!(
                "{name}: summary has {} dead letters, expected {} (malformed lines)",
                c.dead_letters, input.malformed
            ));
        }
        let rows = run.lake.rows.get(name).copied().unwrap_or(0);
        if rows != want_events {
            failures.push(format!(
                "{name}: the lake's Parquet footers hold {rows} rows, expected {want_events}"
            ));
        }
        let dead = run.lake.dead_letters.get(name).copied().unwrap_or(0);
        if dead != input.malformed {
            failures.push(format!(
                "{name}: the dead-letter files hold {dead} lines, expected {}",
                input.malformed
            ));
        }
    }
    for name in s.formats.keys() {
        if !inputs.iter().any(|i| i.format.as_str() == name) {
            failures.push(format!(
                "summary has a source {name} that was not configured"
            ));
        }
    }
    let want_rows: u64 = inputs.iter().map(Input::events).sum();
    if s.lake_rows != want_rows {
        failures.push(format!("summary lake_rows {} ≠ {want_rows}", s.lake_rows));
    }
    let want_dead: u64 = inputs.iter().map(|i| i.malformed).sum();
    if s.dead_letters != want_dead {
        failures.push(format!(
            "summary dead_letters {} ≠ {want_dead}",
            s.dead_letters
        ));
    }
    if s.undelivered_batches != 0 {
        failures.push(format!("{} undelivered batches", s.undelivered_batches));
    }
    if s.lake_files != run.lake.files || s.lake_bytes != run.lake.bytes {
        failures.push(format!(
            "summary says {} lake files / {} bytes, the disk holds {} / {}",
            s.lake_files, s.lake_bytes, run.lake.files, run.lake.bytes
        ));
    }
    if let Some((path, ts)) = run.lake.misplaced.first() {
        let when = chrono::DateTime::from_timestamp_micros(*ts)
            .map_or_else(|| ts.to_string(), |t| t.to_rfc3339());
        failures.push(format!(
            "{} of {} lake files hold events outside their dt=/hour= partition, e.g. {} has ts {when} \
             (the lake must partition by event time)",
            run.lake.misplaced.len(),
            run.lake.files,
            path.display()
        ));
    }
    if !run.lake.stray.is_empty() {
        failures.push(format!(
            "non-Parquet files left in the lake, e.g. {}",
            run.lake.stray[0].display()
        ));
    }
    failures
}

/// The figures of the median floor pass and the median pipeline run.
struct Report<'a> {
    inputs: &'a [Input],
    floor: &'a [FloorStats],
    run: &'a E2eRun,
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl<'a> Report<'a> {
    fn new(inputs: &'a [Input], floor: &'a [FloorStats], run: &'a E2eRun) -> Self {
        Report { inputs, floor, run }
    }

    fn events(&self) -> u64 {
        self.inputs.iter().map(Input::events).sum()
    }

    fn bytes(&self) -> u64 {
        self.inputs.iter().map(|i| i.bytes).sum()
    }

    fn floor_time(&self) -> Duration {
        total(self.floor).elapsed
    }

    /// e2e / floor on the same input: floor time over pipeline time.
    fn ratio(&self) -> f64 {
        self.floor_time().as_secs_f64() / self.run.wall.as_secs_f64().max(1e-9)
    }

    fn table(&self, repeat: u32) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nfloor: 1 thread, sonic_rs::from_slice::<Value> per line, streamed from the file"
        );
        let _ = writeln!(
            t,
            "{:<7} {:>11} {:>11} {:>10} {:>9} {:>12} {:>9}",
            "format", "lines", "events", "input MB", "seconds", "events/s", "MB/s"
        );
        for (input, f) in self.inputs.iter().zip(self.floor) {
            let _ = writeln!(
                t,
                "{:<7} {:>11} {:>11} {:>10.1} {:>9.3} {:>12} {:>9.1}",
                input.format.as_str(),
                input.lines,
                input.events(),
                input.bytes as f64 / 1e6,
                f.elapsed.as_secs_f64(),
                thousands(per_sec(input.events() as f64, f.elapsed)),
                per_sec(input.bytes as f64 / 1e6, f.elapsed),
            );
        }
        let (events, mb) = (self.events() as f64, self.bytes() as f64 / 1e6);
        let run = self.run;
        let median = if repeat > 1 {
            format!("median of {repeat} runs")
        } else {
            "1 run".to_owned()
        };
        let _ = writeln!(
            t,
            "\nend to end: `seclake run`, files → lake on local disk, wall time of the process ({median}; the pipeline's own clock: {:.3} s)",
            run.summary.seconds
        );
        let _ = writeln!(
            t,
            "{:>11} {:>9} {:>11} {:>10} {:>11} {:>8} {:>9} {:>9} {:>9} {:>7} {:>9} {:>6}",
            "events",
            "input MB",
            "floor ev/s",
            "floor MB/s",
            "e2e ev/s",
            "e2e MB/s",
            "e2e/floor",
            "e2e s",
            "RSS MiB",
            "CPU s",
            "lake MB",
            "files"
        );
        let _ = writeln!(
            t,
            "{:>11} {:>9.1} {:>11} {:>10.1} {:>11} {:>8.1} {:>9.3} {:>9.3} {:>9.1} {:>7.2} {:>9.2} {:>6}",
            self.events(),
            mb,
            thousands(per_sec(events, self.floor_time())),
            per_sec(mb, self.floor_time()),
            thousands(per_sec(events, run.wall)),
            per_sec(mb, run.wall),
            self.ratio(),
            run.wall.as_secs_f64(),
            run.max_rss_kib as f64 / 1024.0,
            run.cpu.as_secs_f64(),
            run.lake.bytes as f64 / 1e6,
            run.lake.files,
        );
        if self.inputs.len() == 1 && self.inputs[0].format == Format::Waf {
            let met = if self.ratio() >= 0.5 {
                "met"
            } else {
                "NOT met"
            };
            let _ = writeln!(t, "goal e2e/floor ≥ 0.5 on WAF: {met}");
        }
        t
    }

    /// Other sources (Kafka, Kinesis) → lake beside file → lake and the
    /// floor, on the same records.
    fn sources_table(&self, others: &[(&str, &E2eRun)]) -> String {
        let mut t = String::new();
        let (events, mb) = (self.events() as f64, self.bytes() as f64 / 1e6);
        let _ = writeln!(
            t,
            "\nsource comparison (median runs; wall time of the process, Kafka's group join and Kinesis's lease taking included)"
        );
        let _ = writeln!(
            t,
            "{:<16} {:>11} {:>8} {:>10} {:>9} {:>7} {:>12} {:>9} {:>14}",
            "source",
            "events/s",
            "MB/s",
            "vs floor",
            "wall s",
            "CPU s",
            "cores busy",
            "RSS MiB",
            "server CPU s"
        );
        for (name, run) in [("file", self.run)]
            .into_iter()
            .chain(others.iter().copied())
        {
            let _ = writeln!(
                t,
                "{:<16} {:>11} {:>8.1} {:>10.3} {:>9.3} {:>7.2} {:>12.2} {:>9.1} {:>14}",
                format!("{name} → lake"),
                thousands(per_sec(events, run.wall)),
                per_sec(mb, run.wall),
                self.floor_time().as_secs_f64() / run.wall.as_secs_f64().max(1e-9),
                run.wall.as_secs_f64(),
                run.cpu.as_secs_f64(),
                run.cpu.as_secs_f64() / run.wall.as_secs_f64().max(1e-9),
                run.max_rss_kib as f64 / 1024.0,
                run.server_cpu
                    .map_or_else(|| "-".to_owned(), |c| format!("{:.2}", c.as_secs_f64())),
            );
        }
        for (name, run) in others {
            let ratio = self.run.wall.as_secs_f64() / run.wall.as_secs_f64().max(1e-9);
            let met = if ratio >= 0.7 { "met" } else { "NOT met" };
            let cpu = self.run.cpu.as_secs_f64() / run.cpu.as_secs_f64().max(1e-9);
            let _ = writeln!(
                t,
                "{name} → lake / file → lake: {ratio:.3} (goal ≥ 0.7: {met}); by seclake's CPU time {cpu:.3}"
            );
        }
        t
    }

    fn json(
        &self,
        args: &E2eArgs,
        formats: &[Format],
        data_dir: &Path,
        others: &[(&str, &E2eRun)],
    ) -> serde_json::Value {
        let floor: Vec<serde_json::Value> = self
            .inputs
            .iter()
            .zip(self.floor)
            .map(|(i, f)| {
                serde_json::json!({
                    "format": i.format.as_str(),
                    "lines": i.lines,
                    "events": i.events(),
                    "bytes": i.bytes,
                    "seconds": f.elapsed.as_secs_f64(),
                    "events_per_second": per_sec(i.events() as f64, f.elapsed),
                    "mb_per_second": per_sec(i.bytes as f64 / 1e6, f.elapsed),
                })
            })
            .collect();
        let run = self.run;
        let sources: serde_json::Map<String, serde_json::Value> = others
            .iter()
            .map(|(name, other)| {
                let figures = serde_json::json!({
                    "seconds": other.wall.as_secs_f64(),
                    "events_per_second": per_sec(self.events() as f64, other.wall),
                    "mb_per_second": per_sec(self.bytes() as f64 / 1e6, other.wall),
                    "ratio_to_file": run.wall.as_secs_f64() / other.wall.as_secs_f64().max(1e-9),
                    "cpu_ratio_to_file": run.cpu.as_secs_f64() / other.cpu.as_secs_f64().max(1e-9),
                    "peak_rss_kib": other.max_rss_kib,
                    "cpu_seconds": other.cpu.as_secs_f64(),
                    "server_cpu_seconds": other.server_cpu.map(|c| c.as_secs_f64()),
                });
                ((*name).to_owned(), figures)
            })
            .collect();
        serde_json::json!({
            "scale": args.scale,
            "formats": formats.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            "workers": args.workers,
            "geoip": args.geoip,
            "repeat": args.repeat,
            "data_dir": data_dir,
            "events": self.events(),
            "input_bytes": self.bytes(),
            "floor": floor,
            "floor_seconds": self.floor_time().as_secs_f64(),
            "e2e_seconds": run.wall.as_secs_f64(),
            "e2e_pipeline_seconds": run.summary.seconds,
            "e2e_events_per_second": per_sec(self.events() as f64, run.wall),
            "e2e_mb_per_second": per_sec(self.bytes() as f64 / 1e6, run.wall),
            "ratio_e2e_to_floor": self.ratio(),
            "peak_rss_kib": run.max_rss_kib,
            "cpu_seconds": run.cpu.as_secs_f64(),
            "lake_bytes": run.lake.bytes,
            "lake_files": run.lake.files,
            "records": run.summary.formats.values().map(|c| c.records).sum::<u64>(),
            "sources": sources,
        })
    }
}

/// A process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn send_signal(pid: u32, signal: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("pid out of range")?;
    // SAFETY: kill(2) takes no pointers; `pid` is a child of ours.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error()).context("kill");
    }
    Ok(())
}

/// A plain HTTP/1.1 request to 127.0.0.1; the whole response.
fn http(port: u16, request: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).ok()?;
    Some(out)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The resident set of `pid` in KiB, from /proc.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn stall(args: &StallArgs) -> Result<bool> {
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let moto_server = match &args.moto_server {
        Some(p) => p.clone(),
        None => {
            let home = std::env::var_os("SECLAKE_SERVICES_HOME").map_or_else(
                || default_data_root().map(|d| d.with_file_name("services")),
                |h| Ok(PathBuf::from(h)),
            )?;
            home.join("moto/venv/bin/moto_server")
        }
    };
    if !moto_server.is_file() {
        bail!(
            "no moto server at {}: run `scripts/services up moto` or pass --moto-server",
            moto_server.display()
        );
    }
    let data_dir = default_data_root()?.join(format!("scale-{}", args.scale));
    let (data_dir, manifest, _) = ensure_fixtures(&data_dir, args.scale)?;
    let waf = manifest
        .files
        .iter()
        .find(|f| f.format == "waf")
        .context("manifest has no waf file")?;
    let input = Input {
        format: Format::Waf,
        path: data_dir.join(&waf.path),
        lines: waf.lines,
        malformed: waf.malformed,
        bytes: waf.bytes,
    };
    let topics = replay_inputs(
        &seclake,
        &args.brokers,
        args.partitions,
        std::slice::from_ref(&input),
    )?;

    let s3_port = free_port()?;
    let moto = Killed(
        Command::new(&moto_server)
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", moto_server.display()))?,
    );
    let create = format!(
        "PUT /bench HTTP/1.1\r\nHost: 127.0.0.1:{s3_port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !http(s3_port, &create).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        if Instant::now() > deadline {
            bail!("the moto server on port {s3_port} never created the bucket");
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let run_dir = tempfile::Builder::new()
        .prefix("stall-")
        .tempdir_in(&data_dir)?;
    let metrics_port = free_port()?;
    let group = unique_name("seclake-bench-stall");
    let mut config = kafka_sources(&args.brokers, &topics, &group);
    let _ = write!(
        config,
        "[lake]\nurl = \"s3://bench/lake\"\nendpoint = \"http://127.0.0.1:{s3_port}\"\nregion = \"us-east-1\"\n\n\
         [dlq]\nurl = {}\n\n[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n",
        toml_str(&format!(
            "file://{}",
            run_dir.path().join("dlq").to_string_lossy()
        ))
    );
    let config_path = run_dir.path().join("seclake.toml");
    fs::write(&config_path, config)?;
    let summary_path = run_dir.path().join("summary.json");
    let stderr = run_dir.path().join("stderr.log");
    let mut cmd = Command::new(&seclake);
    cmd.args(["run", "--until-caught-up", "--config"])
        .arg(&config_path)
        .arg("--summary-json")
        .arg(&summary_path)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr)?);

    println!(
        "seclake-bench stall: {} WAF records from Kafka into S3 (moto on port {s3_port}), S3 frozen for {} s",
        input.lines, args.stall_secs
    );
    let started = Instant::now();
    let child = cmd.spawn().context("starting seclake")?;
    let pid = child.id();
    let scrape = |name: &str| -> f64 {
        let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        http(metrics_port, request)
            .map(|m| {
                m.lines()
                    .filter(|l| l.starts_with(name))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    // Freeze S3 once the pipeline is under way.
    while scrape("seclake_kafka_records_total") < 1.0 && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let frozen_at = started.elapsed();
    send_signal(moto.0.id(), libc::SIGSTOP)?;
    let mut stalled_peak = 0u64;
    let mut paused_max = 0f64;
    let mut read_at_freeze = None;
    let stall_end = Instant::now() + Duration::from_secs(args.stall_secs);
    while Instant::now() < stall_end {
        stalled_peak = stalled_peak.max(rss_kib(pid).unwrap_or(0));
        paused_max = paused_max.max(scrape("seclake_kafka_paused_partitions"));
        read_at_freeze.get_or_insert_with(|| scrape("seclake_kafka_records_total"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let read_during = scrape("seclake_kafka_records_total") - read_at_freeze.unwrap_or(0.0);
    let rss_at_thaw = rss_kib(pid).unwrap_or(0);
    send_signal(moto.0.id(), libc::SIGCONT)?;
    let mut child = child;
    let status = child.wait()?;
    let wall = started.elapsed();
    if !status.success() {
        let log = fs::read_to_string(&stderr).unwrap_or_default();
        bail!(
            "seclake run failed ({status}): {}",
            log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    let summary: Summary = serde_json::from_slice(&fs::read(&summary_path)?)?;
    println!(
        "froze S3 after {:.1} s; while frozen: peak RSS {:.1} MiB, RSS at thaw {:.1} MiB, \
         up to {paused_max} partitions paused, {read_during:.0} records read (librdkafka's prefetch and the queues)",
        frozen_at.as_secs_f64(),
        stalled_peak as f64 / 1024.0,
        rss_at_thaw as f64 / 1024.0
    );
    println!(
        "run: {:.1} s wall; lake rows {} (expected {}), dead letters {} (expected {})",
        wall.as_secs_f64(),
        summary.lake_rows,
        input.events(),
        summary.dead_letters,
        input.malformed
    );
    let ok = summary.lake_rows == input.events()
        && summary.dead_letters == input.malformed
        && summary.undelivered_batches == 0;
    println!("checks: {}", if ok { "ok" } else { "FAILED" });
    Ok(ok)
}
