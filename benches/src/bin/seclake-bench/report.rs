//! `seclake-bench report`: the daily report's SQL in seclake (DataFusion, in
//! process, through `seclake_queries::build` as `seclake report run` runs it)
//! beside DuckDB (its Python package, `benches/report_duckdb.py`) over the
//! same Parquet lake, in the same run, step by step.
//!
//! The lake is built once with the release `seclake gen` and `seclake run`
//! (the report day, plus [`HISTORY_DAYS`] smaller days before it for the "new
//! attackers" section) and reused while its `manifest.json` matches. seclake
//! binds the SQL parameters; DuckDB gets the bound text, so both engines run
//! the very same statements. Exits non-zero when the engines disagree on a
//! step's row count or on the traffic summary.

use super::last_lines;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, Result, bail, ensure};
use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{NaiveDate, TimeDelta};
use clap::Args;
use parquet::file::reader::{FileReader as _, SerializedFileReader};
use seclake_benches::{Format, SEED, workspace_dir};
use seclake_queries::day::HISTORY_DAYS;
use seclake_queries::report::{Options, Traffic};
use seclake_queries::sections::{self, DAY_TABLES, SECTIONS};
use seclake_queries::{Lake, ReportDay};
use seclake_sink::store::S3Options;
use serde::{Deserialize, Serialize};

use super::{
    Manifest, Summary, default_data_root, files_under, seclake_binary, spawn_and_wait, thousands,
    toml_paths, toml_str,
};

#[derive(Args)]
pub(crate) struct ReportArgs {
    /// Events of the report day in the lake, at least (WAF, Falco and app
    /// lines in the fixtures' 10:1:5 mix).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// The report day: the UTC day the logs are generated for.
    #[arg(long, default_value = "2026-11-25")]
    date: NaiveDate,
    /// The report's IANA time zone.
    #[arg(long, default_value = "UTC")]
    tz: String,
    /// Run both engines this many times (interleaved); report the medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Where the lake is built and reused, in `report-lake-<events>/`
    /// [default: $HOME/.cache/seclake/bench-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// After the timed runs, print `EXPLAIN ANALYZE` of these steps (day
    /// tables or sections, comma-separated) in both engines.
    #[arg(long, value_delimiter = ',')]
    explain: Vec<String>,
    /// The seclake binary that builds the lake [default: `seclake` beside this program].
    #[arg(long, env = "SECLAKE_BIN")]
    seclake: Option<PathBuf>,
    /// A Python with `duckdb` and `pyarrow` [default: the virtualenv in
    /// $SECLAKE_PYENV or $HOME/.cache/seclake/pyenv, created when missing].
    #[arg(long)]
    python: Option<PathBuf>,
}

/// Fixture lines per unit of `seclake gen --scale`, all formats.
fn lines_per_scale() -> u64 {
    Format::ALL
        .iter()
        .map(|&f| seclake_fixtures::per_scale(f))
        .sum()
}

/// What the bench's lake is generated from; a lake is reused only while its
/// manifest records the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LakeSpec {
    /// Oldest first; the report day last.
    days: Vec<GenDay>,
    /// The GeoIP databases the pipeline enriched with (file names).
    geoip: Vec<String>,
}

/// One `seclake gen` day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct GenDay {
    date: NaiveDate,
    scale: f64,
    seed: u64,
}

impl LakeSpec {
    /// The report day at the smallest scale (in hundredths) whose events
    /// reach `events`, and each of the [`HISTORY_DAYS`] days before it at
    /// 1/[`HISTORY_DAYS`] of that (so the history is about one more day's
    /// worth), with seeds of their own: other attackers than the report
    /// day's, so "new attackers" has some to find.
    fn new(date: NaiveDate, events: u64, geoip: &GeoIpFiles) -> Result<LakeSpec> {
        // The fixtures make one line in 1,000 malformed; 0.2% covers it.
        let lines = events + events.div_ceil(500);
        let centi = (lines * 100).div_ceil(lines_per_scale()).max(1);
        let history_days = u64::try_from(HISTORY_DAYS).context("HISTORY_DAYS")?;
        let history_centi = centi.div_ceil(history_days).max(1);
        let mut days = Vec::new();
        for back in (1..=HISTORY_DAYS).rev() {
            let day = date
                .checked_sub_signed(TimeDelta::days(back))
                .context("--date is too early")?;
            days.push(GenDay {
                date: day,
                scale: history_centi as f64 / 100.0,
                seed: SEED + back as u64,
            });
        }
        days.push(GenDay {
            date,
            scale: centi as f64 / 100.0,
            seed: SEED,
        });
        Ok(LakeSpec {
            days,
            geoip: geoip.names(),
        })
    }

    fn report_day(&self) -> &GenDay {
        &self.days[self.days.len() - 1]
    }

    fn history(&self) -> &[GenDay] {
        &self.days[..self.days.len() - 1]
    }
}

/// `manifest.json` beside the lake.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LakeManifest {
    spec: LakeSpec,
    contents: Contents,
    /// `seclake run`'s wall time building it.
    build_seconds: f64,
}

/// The lake's Parquet files, from their footers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Contents {
    files: u64,
    bytes: u64,
    /// Per source, then per `dt`.
    parts: BTreeMap<String, BTreeMap<String, Part>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Part {
    rows: u64,
    bytes: u64,
}

impl Contents {
    fn scan(lake: &Path) -> Result<Contents> {
        let mut contents = Contents::default();
        for path in files_under(lake)? {
            let key = |prefix: &str| {
                path.components().find_map(|c| {
                    c.as_os_str()
                        .to_str()?
                        .strip_prefix(prefix)
                        .map(str::to_owned)
                })
            };
            let (Some(source), Some(dt), true) = (
                key("source="),
                key("dt="),
                path.extension().is_some_and(|e| e == "parquet"),
            ) else {
                bail!("{} is not a lake file", path.display());
            };
            let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
            let bytes = file.metadata()?.len();
            let reader = SerializedFileReader::new(file)
                .with_context(|| format!("reading the footer of {}", path.display()))?;
            let part = contents
                .parts
                .entry(source)
                .or_default()
                .entry(dt)
                .or_default();
            part.rows += u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0);
            part.bytes += bytes;
            contents.files += 1;
            contents.bytes += bytes;
        }
        Ok(contents)
    }

    /// Rows and bytes of `source` in the `dt`s `keep` accepts.
    fn sum(&self, source: &str, keep: impl Fn(&str) -> bool) -> Part {
        let mut total = Part::default();
        for (dt, part) in self.parts.get(source).into_iter().flatten() {
            if keep(dt) {
                total.rows += part.rows;
                total.bytes += part.bytes;
            }
        }
        total
    }
}

/// One engine's run of every step.
#[derive(Debug, Clone, Deserialize)]
struct EngineRun {
    /// Wall time of the whole run: opening the lake, every step.
    seconds: f64,
    steps: Vec<StepTiming>,
    /// `traffic_summary`'s counts.
    #[serde(rename = "traffic_summary", default)]
    traffic: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize)]
struct StepTiming {
    name: String,
    rows: u64,
    seconds: f64,
}

/// What `report_duckdb.py` prints (run with `--repeat 1`), and the peak RSS
/// of its process.
#[derive(Debug, Deserialize)]
struct DuckdbOutput {
    version: String,
    threads: usize,
    #[serde(deserialize_with = "only_run", rename = "runs")]
    run: EngineRun,
    #[serde(default)]
    explain: BTreeMap<String, String>,
    #[serde(skip)]
    peak_rss_kib: u64,
}

fn only_run<'de, D: serde::Deserializer<'de>>(d: D) -> Result<EngineRun, D::Error> {
    let runs = Vec::<EngineRun>::deserialize(d)?;
    let count = runs.len();
    let mut runs = runs.into_iter();
    match (runs.next(), runs.next()) {
        (Some(run), None) => Ok(run),
        _ => Err(serde::de::Error::invalid_length(count, &"one run")),
    }
}

/// The day tables and sections with their parameters bound, as
/// `report_duckdb.py` reads them.
#[derive(Serialize)]
struct BoundStep {
    name: &'static str,
    table: bool,
    sql: String,
}

pub(crate) fn report(args: &ReportArgs) -> Result<bool> {
    ensure!(args.events > 0, "--events must be positive");
    for name in &args.explain {
        ensure!(
            sections::find(name).is_some(),
            "--explain {name}: not a day table or section of queries/sql"
        );
    }
    let day = ReportDay::new(args.date, &args.tz)?;
    let options = Options::default();
    let params = day.params(options.top, options.critical_limit);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let python = duckdb_python(args.python.as_deref())?;
    let data_root = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_root()?,
    };
    let root = data_root.join(format!("report-lake-{}", args.events));
    let geoip = GeoIpFiles::test_databases();
    let spec = LakeSpec::new(args.date, args.events, &geoip)?;
    let (root, manifest, reused) = ensure_lake(&seclake, &root, &spec, &geoip)?;
    let lake = root.join("lake");

    println!(
        "seclake-bench report: {} ({}), {cores} cores; seclake (DataFusion, in process) and DuckDB \
         (Python) with {cores} threads each, {} run{} each, interleaved",
        args.date,
        args.tz,
        args.repeat,
        if args.repeat == 1 { "" } else { "s" },
    );
    print!("{}", lake_table(&lake, &manifest, reused, &day));

    let steps: Vec<BoundStep> = DAY_TABLES
        .iter()
        .map(|s| (s, true))
        .chain(SECTIONS.iter().map(|s| (s, false)))
        .map(|(s, table)| BoundStep {
            name: s.name,
            table,
            sql: params.bind(s.text),
        })
        .collect();
    let work = tempfile::Builder::new()
        .prefix("report-")
        .tempdir_in(&root)
        .with_context(|| format!("creating a work directory in {}", root.display()))?;
    let steps_path = work.path().join("steps.json");
    fs::write(&steps_path, serde_json::to_vec_pretty(&steps)?)?;
    let duckdb = Duckdb {
        python,
        script: workspace_dir().join("benches").join("report_duckdb.py"),
        lake: lake.clone(),
        steps: steps_path,
        out: work.path().join("duckdb.json"),
        threads: cores,
    };
    let engine = SeclakeEngine::new(&lake, day.clone(), options, cores)?;

    // Both engines read from the page cache, not the disk.
    for path in files_under(&lake)? {
        let mut file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        io::copy(&mut file, &mut io::sink())
            .with_context(|| format!("reading {}", path.display()))?;
    }

    let mut ours: Vec<EngineRun> = Vec::new();
    let mut theirs: Vec<DuckdbOutput> = Vec::new();
    for i in 0..args.repeat {
        // Alternate which engine goes first, so that neither always runs
        // on a machine the other has just warmed or heated.
        if i % 2 == 0 {
            ours.push(engine.run()?);
            theirs.push(duckdb.run(&[])?);
        } else {
            theirs.push(duckdb.run(&[])?);
            ours.push(engine.run()?);
        }
        if args.repeat > 1 {
            let (a, b) = (
                ours[ours.len() - 1].seconds,
                theirs[theirs.len() - 1].run.seconds,
            );
            println!(
                "run {}/{}: seclake {a:.3} s, duckdb {b:.3} s, ratio {:.2}",
                i + 1,
                args.repeat,
                a / b.max(1e-9)
            );
        }
    }

    let duckdb_runs: Vec<EngineRun> = theirs.iter().map(|o| o.run.clone()).collect();
    let failures = compare(&ours, &duckdb_runs);
    let comparison = Comparison {
        duckdb_version: theirs.last().map(|o| o.version.clone()).unwrap_or_default(),
        threads: cores,
        read_bytes: read_bytes(&manifest.contents, &day),
        seclake_rss_kib: self_peak_rss_kib(),
        duckdb_rss_kib: theirs.iter().map(|o| o.peak_rss_kib).max().unwrap_or(0),
        ..Comparison::new(&ours, &duckdb_runs)
    };
    print!("{}", comparison.table(args.repeat));

    if !args.explain.is_empty() {
        let plans = engine
            .explain(&args.explain)
            .context("seclake EXPLAIN ANALYZE")?;
        let out = duckdb.run(&args.explain)?;
        for (name, plan) in plans {
            println!("\nEXPLAIN ANALYZE {name}: seclake (DataFusion)\n{plan}");
            if let Some(theirs) = out.explain.get(&name) {
                println!("EXPLAIN ANALYZE {name}: DuckDB {}\n{theirs}", out.version);
            }
        }
    }

    if let Some(path) = &args.json {
        let json = comparison.json(args, &lake, &manifest, &failures);
        fs::write(path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if failures.is_empty() {
        println!(
            "checks: ok — both engines give every step the same row count, and traffic_summary the same numbers"
        );
    } else {
        println!("checks: FAILED — the engines disagree:");
        for f in &failures {
            println!("  {f}");
        }
    }
    println!("{}", comparison.closing_note());
    Ok(failures.is_empty())
}

/// The GeoIP databases the lake is enriched with.
struct GeoIpFiles {
    city: PathBuf,
    asn: PathBuf,
}

impl GeoIpFiles {
    /// MaxMind's test City and ASN databases, as `seclake demo` uses: they
    /// fill country and AS of the fixtures' MaxMind test addresses (~2% of
    /// WAF requests).
    fn test_databases() -> GeoIpFiles {
        let dir = workspace_dir().join("fixtures").join("geoip");
        GeoIpFiles {
            city: dir.join("GeoLite2-City-Test.mmdb"),
            asn: dir.join("GeoLite2-ASN-Test.mmdb"),
        }
    }

    fn names(&self) -> Vec<String> {
        [&self.city, &self.asn]
            .into_iter()
            .map(|p| {
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// The lake under `root` (absolute), its manifest, and whether it was reused.
fn ensure_lake(
    seclake: &Path,
    root: &Path,
    spec: &LakeSpec,
    geoip: &GeoIpFiles,
) -> Result<(PathBuf, LakeManifest, bool)> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let manifest_path = root.join("manifest.json");
    if let Some(manifest) = matching_lake(&root, spec) {
        return Ok((root, manifest, true));
    }
    // Whatever is there is stale or half built.
    for entry in fs::read_dir(&root).with_context(|| format!("listing {}", root.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        }
        .with_context(|| format!("removing {}", path.display()))?;
    }

    let raw = root.join("raw");
    let mut events = 0u64;
    let mut malformed = 0u64;
    for day in &spec.days {
        let out = raw.join(day.date.to_string());
        eprintln!(
            "generating {} at scale {} (seed {}) into {} …",
            day.date,
            day.scale,
            day.seed,
            out.display()
        );
        let started = Instant::now();
        let status = Command::new(seclake)
            .arg("gen")
            .args(["--date", &day.date.to_string()])
            .args(["--scale", &day.scale.to_string()])
            .args(["--seed", &day.seed.to_string()])
            .arg("--gzip")
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("running {} gen", seclake.display()))?;
        ensure!(
            status.success(),
            "seclake gen for {} failed ({status})",
            day.date
        );
        let path = out.join("manifest.json");
        let generated: Manifest = serde_json::from_slice(
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        for f in &generated.files {
            events += f.lines.saturating_sub(f.malformed);
            malformed += f.malformed;
        }
        eprintln!("generated in {:.1} s", started.elapsed().as_secs_f64());
    }

    let mut config = String::new();
    for format in Format::ALL {
        // Name order is date order: each source reads the days oldest first.
        let files = raw
            .join("*")
            .join(seclake_fixtures::file_name(format, true));
        let _ = write!(
            config,
            "[[source]]\ntype = \"file\"\nformat = \"{}\"\npath = {}\n\n",
            format.as_str(),
            toml_str(&files.to_string_lossy())
        );
    }
    let _ = write!(
        config,
        "[geoip]\ncity = {}\nasn = {}\n\n",
        toml_paths(std::slice::from_ref(&geoip.city)),
        toml_paths(std::slice::from_ref(&geoip.asn))
    );
    for (section, dir) in [("lake", "lake"), ("dlq", "dlq")] {
        let url = format!("file://{}", root.join(dir).to_string_lossy());
        let _ = write!(config, "[{section}]\nurl = {}\n\n", toml_str(&url));
    }
    let config_path = root.join("seclake.toml");
    fs::write(&config_path, config)?;
    let summary_path = root.join("summary.json");
    let log_path = root.join("seclake-run.log");
    eprintln!(
        "loading {events} events into {} …",
        root.join("lake").display()
    );
    let mut cmd = Command::new(seclake);
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--summary-json")
        .arg(&summary_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log_path)?);
    let (status, wall, _) =
        spawn_and_wait(&mut cmd).with_context(|| format!("running {} run", seclake.display()))?;
    if !status.success() {
        let tail = last_lines(&log_path, 20);
        bail!(
            "seclake run failed ({status}); last lines of {}:\n{}",
            log_path.display(),
            tail
        );
    }
    let summary: Summary = serde_json::from_slice(
        &fs::read(&summary_path).with_context(|| format!("reading {}", summary_path.display()))?,
    )
    .with_context(|| format!("parsing {}", summary_path.display()))?;
    ensure!(
        summary.lake_rows == events
            && summary.dead_letters == malformed
            && summary.undelivered_batches == 0,
        "seclake run wrote {} events and {} dead letters ({} batches undelivered); \
         the generated logs hold {events} events and {malformed} malformed lines",
        summary.lake_rows,
        summary.dead_letters,
        summary.undelivered_batches
    );
    eprintln!(
        "loaded in {:.1} s; removing the raw logs",
        wall.as_secs_f64()
    );
    for path in [raw, root.join("dlq")] {
        fs::remove_dir_all(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    for path in [config_path, summary_path, log_path] {
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }

    let contents = Contents::scan(&root.join("lake"))?;
    let lake_rows: u64 = contents.parts.values().flatten().map(|(_, p)| p.rows).sum();
    ensure!(
        lake_rows == events,
        "the lake's Parquet footers hold {lake_rows} rows, seclake run reported {events}"
    );
    let manifest = LakeManifest {
        spec: spec.clone(),
        contents,
        build_seconds: wall.as_secs_f64(),
    };
    let mut text = serde_json::to_vec_pretty(&manifest)?;
    text.push(b'\n');
    fs::write(&manifest_path, text)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    Ok((root, manifest, false))
}

/// The manifest under `root`, if it records `spec` and the lake on disk
/// still holds exactly the files it lists.
fn matching_lake(root: &Path, spec: &LakeSpec) -> Option<LakeManifest> {
    let text = fs::read(root.join("manifest.json")).ok()?;
    let manifest: LakeManifest = serde_json::from_slice(&text).ok()?;
    let on_disk = Contents::scan(&root.join("lake")).ok()?;
    (manifest.spec == *spec && manifest.contents == on_disk).then_some(manifest)
}

/// Bytes of the lake's files in the partitions the report reads: the day's
/// `dt`s of every source, and the history's of WAF.
fn read_bytes(contents: &Contents, day: &ReportDay) -> u64 {
    let first = day.start.date_naive().to_string();
    let last = (day.end - TimeDelta::microseconds(1))
        .date_naive()
        .to_string();
    let history = (day.start - TimeDelta::days(HISTORY_DAYS))
        .date_naive()
        .to_string();
    let in_day = |dt: &str| (first.as_str()..=last.as_str()).contains(&dt);
    let mut bytes = contents
        .sum("waf", |dt| (history.as_str()..=last.as_str()).contains(&dt))
        .bytes;
    for source in ["falco", "app"] {
        bytes += contents.sum(source, in_day).bytes;
    }
    bytes
}

fn lake_table(lake: &Path, manifest: &LakeManifest, reused: bool, day: &ReportDay) -> String {
    let spec = &manifest.spec;
    let c = &manifest.contents;
    let (report_day, history) = (spec.report_day(), spec.history());
    let mut t = String::new();
    let _ = writeln!(
        t,
        "lake:   {} ({}; {:.1} MB in {} files; GeoIP: {})",
        lake.display(),
        if reused { "reused" } else { "built" },
        c.bytes as f64 / 1e6,
        c.files,
        spec.geoip.join(", ")
    );
    let _ = writeln!(
        t,
        "        the day: `seclake gen --date {} --scale {} --seed {}`",
        report_day.date, report_day.scale, report_day.seed
    );
    if let (Some(first), Some(last)) = (history.first(), history.last()) {
        let _ = writeln!(
            t,
            "        history for \"new attackers\": the {} days before it ({} … {}), each at scale {}, \
             seeds {}–{} (other attackers than the day's)",
            history.len(),
            first.date,
            last.date,
            first.scale,
            history.iter().map(|d| d.seed).min().unwrap_or(0),
            history.iter().map(|d| d.seed).max().unwrap_or(0),
        );
    }
    let day_dt = report_day.date.to_string();
    let _ = writeln!(
        t,
        "        {:<6} {:>12} {:>14}",
        "rows",
        format!("dt={day_dt}"),
        "history"
    );
    let mut totals = (0u64, 0u64);
    for format in Format::ALL {
        let source = format.as_str();
        let on_day = c.sum(source, |dt| dt == day_dt).rows;
        let before = c.sum(source, |dt| dt < day_dt.as_str()).rows;
        totals.0 += on_day;
        totals.1 += before;
        let _ = writeln!(
            t,
            "        {source:<6} {:>12} {:>14}",
            thousands(on_day as f64),
            thousands(before as f64)
        );
    }
    let _ = writeln!(
        t,
        "        {:<6} {:>12} {:>14}",
        "total",
        thousands(totals.0 as f64),
        thousands(totals.1 as f64)
    );
    let _ = writeln!(
        t,
        "report: {} to {} (UTC); SQL from queries/sql, parameters bound by seclake, the same text in both engines",
        day.start.format("%Y-%m-%d %H:%M"),
        day.end.format("%Y-%m-%d %H:%M")
    );
    t
}

/// seclake's side: one runtime, a fresh [`Lake`] per run.
struct SeclakeEngine {
    runtime: tokio::runtime::Runtime,
    url: String,
    day: ReportDay,
    options: Options,
}

impl SeclakeEngine {
    fn new(lake: &Path, day: ReportDay, options: Options, threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        Ok(SeclakeEngine {
            runtime,
            url: lake.to_string_lossy().into_owned(),
            day,
            options,
        })
    }

    /// Opens the lake and builds the report, timing every step.
    fn run(&self) -> Result<EngineRun> {
        self.runtime.block_on(async {
            let started = Instant::now();
            let lake = Lake::open(&self.url, &S3Options::default()).await?;
            let (report, timings) =
                seclake_queries::build(&lake, &self.day, &self.options, |_| {}).await?;
            let seconds = started.elapsed().as_secs_f64();
            Ok(EngineRun {
                seconds,
                steps: timings
                    .iter()
                    .map(|t| StepTiming {
                        name: t.name.to_owned(),
                        rows: t.rows as u64,
                        seconds: t.elapsed.as_secs_f64(),
                    })
                    .collect(),
                traffic: traffic_counts(&report.traffic),
            })
        })
    }

    /// `EXPLAIN ANALYZE` of each step in `names`, on a fresh lake whose day
    /// tables a report build (untimed) has just created.
    fn explain(&self, names: &[String]) -> Result<Vec<(String, String)>> {
        self.runtime.block_on(async {
            let lake = Lake::open(&self.url, &S3Options::default()).await?;
            seclake_queries::build(&lake, &self.day, &self.options, |_| {}).await?;
            let params = self
                .day
                .params(self.options.top, self.options.critical_limit);
            let mut plans = Vec::new();
            for name in names {
                let step = sections::find(name).with_context(|| format!("no step {name}"))?;
                let sql = format!("EXPLAIN ANALYZE {}", params.bind(step.text));
                let batches = lake.context().sql(&sql).await?.collect().await?;
                plans.push((name.clone(), plan_text(&batches)?));
            }
            Ok(plans)
        })
    }
}

/// The `plan` column of an `EXPLAIN` result, one plan after the other.
fn plan_text(batches: &[RecordBatch]) -> Result<String> {
    let mut text = String::new();
    for batch in batches {
        let column = batch
            .column_by_name("plan")
            .context("EXPLAIN gave no plan column")?;
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
        for row in 0..batch.num_rows() {
            let _ = writeln!(text, "{}", formatter.value(row));
        }
    }
    Ok(text)
}

fn traffic_counts(t: &Traffic) -> BTreeMap<String, u64> {
    [
        ("requests", t.requests),
        ("allowed", t.allowed),
        ("blocked", t.blocked),
        ("counted", t.counted),
        ("captcha", t.captcha),
        ("challenge", t.challenge),
        ("unique_ips", t.unique_ips),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// DuckDB's side: `report_duckdb.py`, a process per run.
struct Duckdb {
    python: PathBuf,
    script: PathBuf,
    lake: PathBuf,
    steps: PathBuf,
    out: PathBuf,
    threads: usize,
}

impl Duckdb {
    /// One run of every step, with `EXPLAIN ANALYZE` of `explain` after it.
    fn run(&self, explain: &[String]) -> Result<DuckdbOutput> {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script)
            .arg("--lake")
            .arg(&self.lake)
            .arg("--steps")
            .arg(&self.steps)
            .args(["--threads", &self.threads.to_string(), "--repeat", "1"])
            .stdin(Stdio::null())
            .stdout(File::create(&self.out)?);
        for name in explain {
            cmd.args(["--explain", name]);
        }
        let (status, _, usage) = spawn_and_wait(&mut cmd)
            .with_context(|| format!("running {}", self.script.display()))?;
        ensure!(
            status.success(),
            "{} failed ({status})",
            self.script.display()
        );
        let mut out: DuckdbOutput = serde_json::from_slice(
            &fs::read(&self.out).with_context(|| format!("reading {}", self.out.display()))?,
        )
        .with_context(|| format!("parsing the output of {}", self.script.display()))?;
        ensure!(
            out.threads == self.threads,
            "DuckDB ran with {} threads, not {}",
            out.threads,
            self.threads
        );
        out.peak_rss_kib = usage.max_rss_kib;
        Ok(out)
    }
}

/// A Python that imports `duckdb` and `pyarrow`: `explicit`, else the
/// project's cached virtualenv (as `scripts/check-readers` sets it up).
fn duckdb_python(explicit: Option<&Path>) -> Result<PathBuf> {
    let imports = |python: &Path| {
        Command::new(python)
            .args(["-c", "import duckdb, pyarrow"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(python) = explicit {
        ensure!(
            imports(python),
            "{} cannot import duckdb and pyarrow",
            python.display()
        );
        return Ok(python.to_path_buf());
    }
    let venv = match std::env::var_os("SECLAKE_PYENV").filter(|v| !v.is_empty()) {
        Some(v) => PathBuf::from(v),
        None => default_data_root()?.with_file_name("pyenv"),
    };
    let python = venv.join("bin").join("python");
    if imports(&python) {
        return Ok(python);
    }
    eprintln!("installing duckdb and pyarrow into {} …", venv.display());
    if !python.is_file() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        ensure!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
    }
    let status = Command::new(venv.join("bin").join("pip"))
        .args(["install", "-q", "duckdb", "pyarrow"])
        .status()
        .context("running pip")?;
    ensure!(status.success(), "pip install duckdb pyarrow failed");
    ensure!(
        imports(&python),
        "{} cannot import duckdb and pyarrow after installing them",
        python.display()
    );
    Ok(python)
}

/// This process's peak RSS in KiB (the seclake side runs in it).
fn self_peak_rss_kib() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the out-pointer is valid for writes for the duration of the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    u64::try_from(usage.ru_maxrss).unwrap_or(0)
}

/// Where the engines disagree: step names and order, row counts (every
/// run), traffic_summary's numbers.
fn compare(ours: &[EngineRun], theirs: &[EngineRun]) -> Vec<String> {
    let mut failures = Vec::new();
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let run = i + 1;
        let names = |r: &EngineRun| r.steps.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        if names(a) != names(b) {
            failures.push(format!(
                "run {run}: the engines ran different steps: seclake {:?}, duckdb {:?}",
                names(a),
                names(b)
            ));
            continue;
        }
        for (x, y) in a.steps.iter().zip(&b.steps) {
            if x.rows != y.rows {
                failures.push(format!(
                    "run {run}: {}: seclake gives {} rows, duckdb {}",
                    x.name, x.rows, y.rows
                ));
            }
        }
        if a.traffic != b.traffic {
            failures.push(format!(
                "run {run}: traffic_summary: seclake {:?}, duckdb {:?}",
                a.traffic, b.traffic
            ));
        }
    }
    failures
}

fn per_sec_f(n: f64, seconds: f64) -> f64 {
    n / seconds.max(1e-9)
}

/// The lower middle of `values` (the median for an odd count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Medians per step and of the whole run, both engines, and what they are
/// read against.
#[derive(Default)]
struct Comparison {
    steps: Vec<StepRow>,
    seclake: f64,
    duckdb: f64,
    /// Every run's end-to-end time, in order.
    seclake_runs: Vec<f64>,
    duckdb_runs: Vec<f64>,
    /// Events of the report day: the rows of the three `*_day` tables.
    events: u64,
    /// Bytes of the Parquet files in the partitions the report reads.
    read_bytes: u64,
    threads: usize,
    duckdb_version: String,
    /// Of this process, which runs seclake's side.
    seclake_rss_kib: u64,
    /// Of the largest `report_duckdb.py` process.
    duckdb_rss_kib: u64,
}

struct StepRow {
    name: String,
    table: bool,
    rows: u64,
    seclake: f64,
    duckdb: f64,
}

impl StepRow {
    fn ratio(&self) -> f64 {
        self.seclake / self.duckdb.max(1e-9)
    }
}

impl Comparison {
    fn new(ours: &[EngineRun], theirs: &[EngineRun]) -> Comparison {
        let step_median = |runs: &[EngineRun], name: &str| {
            median(
                runs.iter()
                    .filter_map(|r| r.steps.iter().find(|s| s.name == name))
                    .map(|s| s.seconds)
                    .collect(),
            )
        };
        let steps: Vec<StepRow> = ours
            .first()
            .map(|r| r.steps.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|s| StepRow {
                name: s.name.clone(),
                table: DAY_TABLES.iter().any(|t| t.name == s.name),
                rows: s.rows,
                seclake: step_median(ours, &s.name),
                duckdb: step_median(theirs, &s.name),
            })
            .collect();
        let events = steps
            .iter()
            .filter(|s| s.table && s.name.ends_with("_day"))
            .map(|s| s.rows)
            .sum();
        let seclake_runs: Vec<f64> = ours.iter().map(|r| r.seconds).collect();
        let duckdb_runs: Vec<f64> = theirs.iter().map(|r| r.seconds).collect();
        Comparison {
            steps,
            seclake: median(seclake_runs.clone()),
            duckdb: median(duckdb_runs.clone()),
            seclake_runs,
            duckdb_runs,
            events,
            ..Comparison::default()
        }
    }

    fn ratio(&self) -> f64 {
        self.seclake / self.duckdb.max(1e-9)
    }

    fn worst(&self) -> Option<&StepRow> {
        self.steps
            .iter()
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
    }

    /// The step seclake loses the most seconds on, if it is behind on any:
    /// the worst ratio can be a step of milliseconds.
    fn most_behind(&self) -> Option<&StepRow> {
        self.steps
            .iter()
            .filter(|s| s.seclake > s.duckdb)
            .max_by(|a, b| (a.seclake - a.duckdb).total_cmp(&(b.seclake - b.duckdb)))
    }

    fn table(&self, repeat: u32) -> String {
        let mut t = String::new();
        let median = if repeat > 1 {
            format!("median of {repeat} runs")
        } else {
            "1 run".to_owned()
        };
        let _ = writeln!(
            t,
            "\nsteps ({median}; day tables: CREATE TABLE … AS + count(*), sections: the whole result fetched; DuckDB {})",
            self.duckdb_version
        );
        let _ = writeln!(
            t,
            "{:<20} {:>11} {:>10} {:>10} {:>15}",
            "step", "rows", "seclake s", "duckdb s", "seclake/duckdb"
        );
        let worst = self.worst().map(|w| w.name.as_str());
        for s in &self.steps {
            let _ = writeln!(
                t,
                "{:<20} {:>11} {:>10.3} {:>10.3} {:>15.2}{}",
                s.name,
                thousands(s.rows as f64),
                s.seclake,
                s.duckdb,
                s.ratio(),
                if Some(s.name.as_str()) == worst {
                    "  ← worst"
                } else {
                    ""
                }
            );
        }
        let sum = |f: fn(&StepRow) -> f64| self.steps.iter().map(f).sum::<f64>();
        let (ours, theirs) = (sum(|s| s.seclake), sum(|s| s.duckdb));
        let _ = writeln!(
            t,
            "{:<20} {:>11} {:>10.3} {:>10.3} {:>15.2}",
            "sum of the steps",
            "",
            ours,
            theirs,
            ours / theirs.max(1e-9)
        );
        let _ = writeln!(
            t,
            "{:<20} {:>11} {:>10.3} {:>10.3} {:>15.2}",
            "end to end (wall)",
            "",
            self.seclake,
            self.duckdb,
            self.ratio()
        );
        let mb = self.read_bytes as f64 / 1e6;
        let _ = writeln!(
            t,
            "\n{:<46} {:>13} {:>13}",
            "end to end", "seclake", "duckdb"
        );
        let _ = writeln!(
            t,
            "{:<46} {:>13} {:>13}",
            format!(
                "events/s ({} events of the day)",
                thousands(self.events as f64)
            ),
            thousands(per_sec_f(self.events as f64, self.seclake)),
            thousands(per_sec_f(self.events as f64, self.duckdb)),
        );
        let _ = writeln!(
            t,
            "{:<46} {:>13.1} {:>13.1}",
            format!("lake MB/s ({mb:.1} MB of partitions read)"),
            per_sec_f(mb, self.seclake),
            per_sec_f(mb, self.duckdb),
        );
        let _ = writeln!(
            t,
            "{:<46} {:>13.1} {:>13.1}",
            "peak RSS MiB (bench process / python child)",
            self.seclake_rss_kib as f64 / 1024.0,
            self.duckdb_rss_kib as f64 / 1024.0,
        );
        if let Some(w) = self.worst() {
            let _ = writeln!(
                t,
                "worst ratio: {} at {:.2}× ({:.3} s against {:.3} s)",
                w.name,
                w.ratio(),
                w.seclake,
                w.duckdb
            );
        }
        if let Some(b) = self.most_behind() {
            let _ = writeln!(
                t,
                "most seconds behind: {} by {:.3} s ({:.2}×)",
                b.name,
                b.seclake - b.duckdb,
                b.ratio()
            );
        }
        t
    }

    /// Both times, their ratio against the goal, and every step's ratio,
    /// worst first.
    fn closing_note(&self) -> String {
        let met = if self.ratio() <= 1.0 {
            "met"
        } else {
            "NOT met"
        };
        let mut by_ratio: Vec<&StepRow> = self.steps.iter().collect();
        by_ratio.sort_by(|a, b| b.ratio().total_cmp(&a.ratio()));
        let ratios: Vec<String> = by_ratio
            .iter()
            .map(|s| format!("{} {:.2}", s.name, s.ratio()))
            .collect();
        format!(
            "report: seclake {:.3} s, DuckDB {:.3} s, seclake/DuckDB {:.2} (goal ≤ 1.0: {met})\n\
             per step, worst first: {}",
            self.seclake,
            self.duckdb,
            self.ratio(),
            ratios.join(", ")
        )
    }

    fn json(
        &self,
        args: &ReportArgs,
        lake: &Path,
        manifest: &LakeManifest,
        failures: &[String],
    ) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "day_table": s.table,
                    "rows": s.rows,
                    "seclake_seconds": s.seclake,
                    "duckdb_seconds": s.duckdb,
                    "ratio": s.ratio(),
                })
            })
            .collect();
        serde_json::json!({
            "date": args.date,
            "tz": args.tz,
            "repeat": args.repeat,
            "threads": self.threads,
            "duckdb_version": self.duckdb_version,
            "lake": lake,
            "lake_spec": manifest.spec,
            "lake_bytes": manifest.contents.bytes,
            "lake_files": manifest.contents.files,
            "lake_build_seconds": manifest.build_seconds,
            "bytes_read": self.read_bytes,
            "events": self.events,
            "steps": steps,
            "seclake_seconds": self.seclake,
            "duckdb_seconds": self.duckdb,
            "seclake_runs_seconds": self.seclake_runs,
            "duckdb_runs_seconds": self.duckdb_runs,
            "ratio": self.ratio(),
            "seclake_peak_rss_kib": self.seclake_rss_kib,
            "duckdb_peak_rss_kib": self.duckdb_rss_kib,
            "worst": self.worst().map(|w| &w.name),
            "agree": failures.is_empty(),
            "mismatches": failures,
        })
    }
}
