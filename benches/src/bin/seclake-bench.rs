//! `seclake-bench e2e`: end-to-end throughput of the real `seclake` binary
//! against the one-core JSON parse floor, with a correctness check.
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
use serde::{Deserialize, Serialize};

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
}

fn parse_format(s: &str) -> Result<Format, String> {
    format_by_name(s.trim()).ok_or_else(|| format!("unknown format {s:?}: use waf, falco or app"))
}

fn main() -> ExitCode {
    let Cmd::E2e(args) = Cli::parse().command;
    match e2e(&args) {
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
    sources: BTreeMap<String, FormatCounts>,
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
        let run = run_pipeline(args, &seclake, &data_dir, &inputs)?;
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
        floors.push(floor);
        runs.push(run);
    }

    // Medians: the floor pass and the pipeline run with the median time.
    let floor = median_by(&floors, |f| total(f).elapsed);
    let run = median_by(&runs, |r| r.wall);
    let report = Report::new(&inputs, floor, run);
    print!("{}", report.table(args.repeat));
    if let Some(path) = &args.json {
        let json = report.json(args, &formats, &data_dir);
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

fn pipeline_config(args: &E2eArgs, inputs: &[Input], run_dir: &Path) -> String {
    let mut text = String::new();
    for input in inputs {
        let _ = write!(
            text,
            "[[source]]\ntype = \"file\"\nformat = \"{}\"\npath = {}\n\n",
            input.format.as_str(),
            toml_str(&input.path.to_string_lossy())
        );
    }
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
        let _ = write!(text, "[{section}]\nurl = {}\n\n", toml_str(&url));
    }
    if let Some(workers) = args.workers {
        let _ = write!(text, "[pipeline]\nworkers = {workers}\n");
    }
    text
}

/// Runs `seclake run` once into a fresh lake under `data_dir`.
fn run_pipeline(
    args: &E2eArgs,
    seclake: &Path,
    data_dir: &Path,
    inputs: &[Input],
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
    fs::write(&config, pipeline_config(args, inputs, dir))?;
    let summary_path = dir.join("summary.json");
    let stdout = dir.join("stdout.log");
    let stderr = dir.join("stderr.log");

    let mut cmd = Command::new(seclake);
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--summary-json")
        .arg(&summary_path)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout)?)
        .stderr(File::create(&stderr)?);
    let (status, wall, usage) =
        spawn_and_wait(&mut cmd).with_context(|| format!("running {}", seclake.display()))?;
    if !status.success() {
        let log = fs::read_to_string(&stderr).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let kept = run_dir.keep();
        bail!(
            "seclake run failed ({status}); run directory kept at {}; last lines of its stderr:\n{}",
            kept.display(),
            tail.join("\n")
        );
    }
    let summary: Summary = serde_json::from_slice(
        &fs::read(&summary_path).with_context(|| format!("reading {}", summary_path.display()))?,
    )
    .with_context(|| format!("parsing {}", summary_path.display()))?;
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
    let child = cmd.spawn()?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
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
    let wall = started.elapsed();
    // Reaped above: dropping `child` neither waits nor kills.
    drop(child);
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    Ok((
        ExitStatus::from_raw(status),
        wall,
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
        let c = s.sources.get(name).copied().unwrap_or_default();
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
    for name in s.sources.keys() {
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

    fn json(&self, args: &E2eArgs, formats: &[Format], data_dir: &Path) -> serde_json::Value {
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
            "records": run.summary.sources.values().map(|c| c.records).sum::<u64>(),
        })
    }
}
