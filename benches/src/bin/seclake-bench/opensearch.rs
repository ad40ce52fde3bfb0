//! `seclake-bench opensearch`: the OpenSearch sink measured three ways, each
//! against a peer in the same run, on the same node.
//!
//! 1. **rate**: `seclake run` (file → lake + OpenSearch) against a raw
//!    `_bulk` loader indexing the very same documents: the sink's own
//!    [`Encoder`] turns the same fixture records, parsed and scored by the
//!    same library code as the pipeline's workers, into bulk items before
//!    the clock starts; they are grouped as the sink groups them
//!    (`bulk_bytes`, `bulk_docs`) and POSTed `concurrency` at a time, with
//!    the index templates seclake installs. Goal: seclake ≥ 0.9 of raw.
//!    Each load is also timed by the node ([`Watch`]), and `--pin` gives
//!    the node a core of its own.
//! 2. **e2e**: the same `seclake run` against the same run without
//!    `[opensearch]` (lake only).
//! 3. **freshness**: a steady stream of records into Kafka from a producer
//!    in this process, `seclake run` consuming it into lake + OpenSearch,
//!    and the time from each record's hand-off to the producer until a
//!    search finds it. Goal: p99 under 5 s.
//!
//! Every run indexes into its own prefix (`sbench-raw`, `sbench-sec`,
//! `sbench-fresh`), deleted with its templates after the run, so each run
//! starts from an empty node.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail, ensure};
use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use seclake_benches::{BATCH_RECORDS, Format, SEED, bench_date, enricher, ingest_format};

use super::{Input, last_lines, read_json, run_failed};
use seclake_enrich::scoring::WindowScorer;
use seclake_enrich::threat::ThreatEngine;
use seclake_fixtures::services::unique_name;
use seclake_sink::opensearch::encode::{Encoder, Item, Target};
use seclake_sink::opensearch::template;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Killed, default_data_root, free_port, http, median_by, parse_format, seclake_binary,
    send_signal, spawn_and_wait, thousands, toml_str,
};

/// Index prefixes of the runs; the raw loader's and seclake's have the
/// same length, so their action lines are the same size.
const RAW_PREFIX: &str = "sbench-raw";
const SECLAKE_PREFIX: &str = "sbench-sec";
const FRESH_PREFIX: &str = "sbench-fresh";
/// The freshness records' ids: this, then the sequence number, zero-padded
/// so that the keyword order is the sending order.
const SEQ_PREFIX: &str = "bench-";
const SEQ_DIGITS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub(crate) enum Measure {
    /// seclake (file → lake + OpenSearch) against a raw `_bulk` loader.
    Rate,
    /// seclake with `[opensearch]` against seclake without it.
    E2e,
    /// A steady Kafka stream: time from produced to searchable.
    Freshness,
}

#[derive(Args)]
pub(crate) struct OpenSearchArgs {
    /// What to measure [default: all three].
    #[arg(value_enum)]
    measures: Vec<Measure>,
    /// The OpenSearch node.
    #[arg(
        long,
        env = "SECLAKE_OPENSEARCH_URL",
        default_value = "http://127.0.0.1:9200"
    )]
    url: String,
    /// Records of the rate and e2e runs (fixture lines; ~0.1% are malformed
    /// and go to the dead letters).
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Format of the rate and e2e runs' records.
    #[arg(long, default_value = "waf", value_parser = parse_format)]
    format: Format,
    /// Rounds of the rate and e2e runs (the loaders' order alternates); the
    /// figures are medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// `[opensearch] bulk_bytes`, and the raw loader's: a request is sent
    /// once it holds this many bytes (`5MiB`, `512KiB` or a number).
    #[arg(long, default_value = "5MiB", value_parser = parse_size)]
    bulk_bytes: usize,
    /// `[opensearch] bulk_docs`, and the raw loader's: …or this many documents.
    #[arg(long, default_value_t = 5000)]
    bulk_docs: usize,
    /// `[opensearch] concurrency`, and the raw loader's: requests in flight.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Kafka brokers of the freshness stream.
    #[arg(long, env = "SECLAKE_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Partitions of the freshness topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Records per second of the freshness stream.
    #[arg(long, default_value = "5k/s", value_parser = seclake_ingest::generate::parse_rate)]
    fresh_rate: f64,
    /// Seconds of the freshness stream that are measured…
    #[arg(long, default_value_t = 60)]
    fresh_secs: u64,
    /// …after this many seconds of the same stream, not measured.
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// How often OpenSearch is asked what it finds (the resolution).
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Format of the freshness records: app or waf.
    #[arg(long, default_value = "app", value_parser = parse_format)]
    fresh_format: Format,
    /// Where the input file and run directories go
    /// [default: $HOME/.cache/seclake/bench-data/opensearch-<format>-<events>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The seclake binary [default: `seclake` beside this program].
    #[arg(long, env = "SECLAKE_BIN")]
    seclake: Option<PathBuf>,
    /// Keep each run's directory (config, logs, lake, dead letters).
    #[arg(long)]
    keep: bool,
    /// Give the node (which must run on this machine) the first core and
    /// the loaders the others, as a cluster of its own would have; by
    /// default they share every core.
    #[arg(long)]
    pin: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `5MiB`, `512KiB`, `1MB`, `4096`.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let scale: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: write bytes, e.g. 5MiB, 512KiB or 1000000")),
    };
    match digits.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n * scale),
        _ => Err(format!("{s:?}: write bytes, e.g. 5MiB, 512KiB or 1000000")),
    }
}

pub(crate) fn opensearch(args: &OpenSearchArgs) -> Result<bool> {
    let measures: Vec<Measure> = if args.measures.is_empty() {
        vec![Measure::Rate, Measure::E2e, Measure::Freshness]
    } else {
        let mut m = args.measures.clone();
        m.sort();
        m.dedup();
        m
    };
    ensure!(args.events > 0, "--events must be at least 1");
    ensure!(
        (1..=64).contains(&args.concurrency),
        "--concurrency must be 1 to 64"
    );
    ensure!(args.bulk_docs > 0, "--bulk-docs must be at least 1");
    ensure!(
        args.poll_ms > 0 && args.fresh_secs > 0,
        "--poll-ms and --fresh-secs must be at least 1"
    );
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the bench's runtime")?;
    let os = Arc::new(Node::new(&args.url)?);
    let info = rt
        .block_on(os.must(reqwest::Method::GET, "/", None))
        .with_context(|| {
            format!(
                "OpenSearch at {} (scripts/services up opensearch)",
                args.url
            )
        })?;
    let heap = rt
        .block_on(os.must(
            reqwest::Method::GET,
            "/_nodes/_local/stats/jvm?filter_path=nodes.*.jvm.mem.heap_max_in_bytes",
            None,
        ))
        .ok()
        .and_then(|v| first_node(&v)?["jvm"]["mem"]["heap_max_in_bytes"].as_u64())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let names: Vec<&str> = measures
        .iter()
        .map(|m| match m {
            Measure::Rate => "rate",
            Measure::E2e => "e2e",
            Measure::Freshness => "freshness",
        })
        .collect();
    println!(
        "seclake-bench opensearch: {}; OpenSearch {} at {} ({} MiB heap), {cores} cores, load {}",
        names.join(", "),
        info["version"]["number"].as_str().unwrap_or("?"),
        args.url,
        heap >> 20,
        loadavg()
    );
    println!("binary: {}", seclake.display());
    let _pinned = if args.pin {
        Some(Pinned::apply(&os, &rt)?)
    } else {
        None
    };
    let mut json = serde_json::Map::new();
    json.insert("date".into(), json!(chrono::Utc::now().to_rfc3339()));
    json.insert("cores".into(), json!(cores));
    json.insert("pinned".into(), json!(args.pin));
    json.insert(
        "opensearch_version".into(),
        info["version"]["number"].clone(),
    );
    json.insert("opensearch_heap_bytes".into(), json!(heap));
    json.insert("load_before".into(), json!(loadavg()));
    let mut ok = true;
    let mut tables = String::new();
    if measures.contains(&Measure::Rate) || measures.contains(&Measure::E2e) {
        let (passed, table, value) = rate_and_e2e(args, &measures, &seclake, &os, &rt)?;
        ok &= passed;
        tables.push_str(&table);
        json.insert("indexing".into(), value);
    }
    if measures.contains(&Measure::Freshness) {
        let (passed, table, value) = freshness(args, &seclake, &os, &rt)?;
        ok &= passed;
        tables.push_str(&table);
        json.insert("freshness".into(), value);
    }
    json.insert("load_after".into(), json!(loadavg()));
    print!("{tables}");
    println!("load after: {}", loadavg());
    if let Some(path) = &args.json {
        fs::write(path, serde_json::to_vec_pretty(&Value::Object(json))?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("checks: {}", if ok { "ok" } else { "FAILED" });
    Ok(ok)
}

/// The node on core 0 and this process (and the `seclake run`s it spawns)
/// on the others, until dropped.
struct Pinned {
    node: u32,
    cores: usize,
}

impl Pinned {
    fn apply(node: &Node, rt: &tokio::runtime::Runtime) -> Result<Pinned> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        ensure!(
            cores >= 2,
            "--pin needs at least 2 cores, this machine has {cores}"
        );
        rt.block_on(node.cpu());
        let pid = node
            .pid
            .get()
            .copied()
            .flatten()
            .context("--pin: the node does not run on this machine")?;
        taskset(pid, "0")?;
        let pinned = Pinned { node: pid, cores };
        taskset(std::process::id(), &format!("1-{}", cores - 1))?;
        println!(
            "pinned: the node (pid {pid}) on core 0, the loaders on cores 1-{}",
            cores - 1
        );
        Ok(pinned)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let all = format!("0-{}", self.cores - 1);
        if let Err(e) = taskset(self.node, &all).and_then(|()| taskset(std::process::id(), &all)) {
            eprintln!("seclake-bench: could not give the node its cores back: {e:#}");
        }
    }
}

/// Every thread of `pid` onto `cores` (a `taskset` core list).
fn taskset(pid: u32, cores: &str) -> Result<()> {
    let out = Command::new("taskset")
        .args([
            "--all-tasks",
            "--cpu-list",
            "--pid",
            cores,
            &pid.to_string(),
        ])
        .output()
        .context("running taskset (util-linux)")?;
    ensure!(
        out.status.success(),
        "taskset --cpu-list {cores} --pid {pid}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// `/proc/loadavg`'s three averages.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

fn first_node(v: &Value) -> Option<&Value> {
    v["nodes"].as_object()?.values().next()
}

// ---------------------------------------------------------------------------
// The node.

/// An OpenSearch node spoken to over plain HTTP.
struct Node {
    client: reqwest::Client,
    url: String,
    /// The node's process id when it runs on this machine: its CPU time
    /// comes from /proc, exact, where the stats API refreshes once a second.
    pid: std::sync::OnceLock<Option<u32>>,
}

impl Node {
    fn new(url: &str) -> Result<Node> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .build()
            .context("building the HTTP client")?;
        Ok(Node {
            client,
            url: url.trim_end_matches('/').to_owned(),
            pid: std::sync::OnceLock::new(),
        })
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let resp = req.send().await.with_context(|| path.to_owned())?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.with_context(|| path.to_owned())?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    async fn must(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let (status, value) = self.request(method, path, body).await?;
        ensure!(
            (200..300).contains(&status),
            "{path}: HTTP {status}: {value}"
        );
        Ok(value)
    }

    /// The node's CPU time so far (user + system).
    async fn cpu(&self) -> Option<Duration> {
        if self.pid.get().is_none() {
            let pid = self
                .must(
                    reqwest::Method::GET,
                    "/_nodes/_local/process?filter_path=nodes.*.process.id",
                    None,
                )
                .await
                .ok()
                .and_then(|v| first_node(&v)?["process"]["id"].as_u64())
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| Path::new(&format!("/proc/{p}/stat")).exists());
            let _ = self.pid.set(pid);
        }
        match self.pid.get().copied().flatten() {
            Some(pid) => proc_cpu(pid),
            None => {
                let v = self
                    .must(
                        reqwest::Method::GET,
                        "/_nodes/_local/stats/process?filter_path=nodes.*.process.cpu",
                        None,
                    )
                    .await
                    .ok()?;
                let ms = first_node(&v)?["process"]["cpu"]["total_in_millis"].as_u64()?;
                Some(Duration::from_millis(ms))
            }
        }
    }

    /// Installs the templates seclake installs for `prefix` (daily indices,
    /// no replica, one shard: the sink's defaults).
    async fn install_templates(&self, prefix: &str) -> Result<()> {
        self.must(
            reqwest::Method::PUT,
            &format!("/_component_template/{prefix}-mappings"),
            Some(&json!({"template": {"mappings": template::mappings()}})),
        )
        .await?;
        self.must(
            reqwest::Method::PUT,
            &format!("/_component_template/{prefix}-settings"),
            Some(&json!({"template": {"settings": template::settings(0, 1)}})),
        )
        .await?;
        self.must(
            reqwest::Method::PUT,
            &format!("/_index_template/{prefix}-events"),
            Some(&template::index_template(prefix, false)),
        )
        .await?;
        Ok(())
    }

    /// Deletes the prefix's indices and templates (what exists of them).
    async fn clean(&self, prefix: &str) -> Result<()> {
        self.must(
            reqwest::Method::DELETE,
            &format!("/{prefix}-*?expand_wildcards=all&allow_no_indices=true"),
            None,
        )
        .await?;
        for path in [
            format!("/_index_template/{prefix}-events"),
            format!("/_component_template/{prefix}-mappings"),
            format!("/_component_template/{prefix}-settings"),
        ] {
            let (status, value) = self.request(reqwest::Method::DELETE, &path, None).await?;
            ensure!(
                (200..300).contains(&status) || status == 404,
                "{path}: HTTP {status}: {value}"
            );
        }
        Ok(())
    }

    /// Documents the prefix's indices hold, after a refresh.
    async fn count(&self, prefix: &str) -> Result<u64> {
        self.must(
            reqwest::Method::POST,
            &format!("/{prefix}-*/_refresh?allow_no_indices=true"),
            None,
        )
        .await?;
        let v = self
            .must(
                reqwest::Method::GET,
                &format!("/{prefix}-*/_count?allow_no_indices=true"),
                None,
            )
            .await?;
        v["count"].as_u64().context("_count without a count")
    }

    /// Waits until the node's write pool is idle, then a little longer, so
    /// that a run does not start while the last one's work goes on.
    async fn settle(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let busy = self
                .must(
                    reqwest::Method::GET,
                    "/_nodes/_local/stats/thread_pool/write?filter_path=nodes.*.thread_pool.write",
                    None,
                )
                .await
                .ok()
                .and_then(|v| {
                    let w = &first_node(&v)?["thread_pool"]["write"];
                    Some(w["active"].as_u64()? + w["queue"].as_u64()?)
                })
                .unwrap_or(0);
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How often a [`Watch`] asks the node how many documents it has indexed.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// The node's own view of a load: `_stats/indexing` of the load's indices,
/// polled every [`WATCH_EVERY`] from the moment the load starts. It times
/// both loaders the same way, from the first document indexed to the last,
/// where their own clocks differ (the raw loader's bulks are encoded before
/// its clock starts; `seclake run` counts its start-up and its lake).
struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(f64, u64)>>,
}

/// When the node indexed a load's documents, in seconds from its start.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Window {
    first: f64,
    last: f64,
    docs: u64,
}

impl Window {
    fn seconds(&self) -> f64 {
        self.last - self.first
    }

    fn docs_per_sec(&self) -> f64 {
        self.docs as f64 / self.seconds().max(1e-9)
    }
}

impl Watch {
    fn start(node: &Arc<Node>, prefix: &str, rt: &tokio::runtime::Runtime) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let path = format!(
            "/{prefix}-*/_stats/indexing?allow_no_indices=true&expand_wildcards=all\
             &filter_path=_all.primaries.indexing.index_total"
        );
        let (node, flag) = (Arc::clone(node), Arc::clone(&stop));
        let task = rt.spawn(async move {
            let started = Instant::now();
            let mut samples = vec![(0.0, 0)];
            let mut tick = tokio::time::interval(WATCH_EVERY);
            loop {
                tick.tick().await;
                // A poll asked after the stop is the last: it sees the end.
                let stopping = flag.load(Ordering::Relaxed);
                let asked = started.elapsed().as_secs_f64();
                let Ok(v) = node.must(reqwest::Method::GET, &path, None).await else {
                    if stopping {
                        break;
                    }
                    continue;
                };
                let total = v["_all"]["primaries"]["indexing"]["index_total"]
                    .as_u64()
                    .unwrap_or(0);
                let answered = started.elapsed().as_secs_f64();
                samples.push(((asked + answered) / 2.0, total));
                if stopping {
                    break;
                }
            }
            samples
        });
        Watch { stop, task }
    }

    /// Stops polling; the window in which the node went from none of the
    /// `docs` documents to all of them, each end to within half a poll.
    fn finish(self, docs: u64, rt: &tokio::runtime::Runtime) -> Option<Window> {
        self.stop.store(true, Ordering::Relaxed);
        let samples = rt.block_on(self.task).ok()?;
        let crossing = |reached: &dyn Fn(u64) -> bool| {
            let i = samples.iter().position(|&(_, n)| reached(n))?;
            let before = samples[i.checked_sub(1)?].0;
            Some((before + samples[i].0) / 2.0)
        };
        let first = crossing(&|n| n > 0)?;
        let last = crossing(&|n| n >= docs)?;
        Some(Window { first, last, docs })
    }
}

/// CPU time of a process from /proc (user + system).
fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(Duration::from_micros((utime + stime) * 1_000_000 / hz))
}

/// CPU time of this process so far (user + system).
pub(super) fn self_cpu() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct,
    // and getrusage writes only into it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn delta(after: Option<Duration>, before: Option<Duration>) -> Option<f64> {
    Some(after?.checked_sub(before?)?.as_secs_f64())
}

// ---------------------------------------------------------------------------
// The input: fixture records in a file, as the pipeline reads them.

#[derive(Serialize, Deserialize, PartialEq)]
struct InputManifest {
    format: String,
    date: String,
    seed: u64,
    lines: u64,
    malformed: u64,
    bytes: u64,
}

/// Writes `seclake gen`'s first `events` lines of the format (the bytes a
/// `generate` source with that `count` makes) once, and reuses them.
pub(super) fn ensure_input(dir: &Path, format: Format, events: u64) -> Result<Input> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{}.ndjson", format.as_str()));
    let manifest_path = dir.join("manifest.json");
    let date = bench_date().format("%Y-%m-%d").to_string();
    if let Ok(text) = fs::read(&manifest_path)
        && let Ok(m) = serde_json::from_slice::<InputManifest>(&text)
        && m.format == format.as_str()
        && m.date == date
        && m.seed == SEED
        && m.lines == events
        && fs::metadata(&path).is_ok_and(|md| md.len() == m.bytes)
    {
        return Ok(Input {
            format,
            path,
            lines: m.lines,
            malformed: m.malformed,
            bytes: m.bytes,
        });
    }
    let _ = fs::remove_file(&manifest_path);
    let mut out = BufWriter::new(File::create(&path)?);
    let counts = seclake_fixtures::write_lines(format, SEED, bench_date(), events, &mut out)
        .context("generating the fixture records")?;
    out.flush()?;
    drop(out);
    let bytes = fs::metadata(&path)?.len();
    let m = InputManifest {
        format: format.as_str().into(),
        date,
        seed: SEED,
        lines: counts.lines,
        malformed: counts.malformed,
        bytes,
    };
    fs::write(&manifest_path, serde_json::to_vec_pretty(&m)?)?;
    Ok(Input {
        format,
        path,
        lines: m.lines,
        malformed: m.malformed,
        bytes,
    })
}

// ---------------------------------------------------------------------------
// The raw loader.

/// One `_bulk` request's body, and its items for a retry.
struct Bulk {
    body: Bytes,
    items: Vec<Bytes>,
}

/// What the pre-encoding made.
#[derive(Default, Serialize)]
struct Encoded {
    docs: u64,
    bytes: u64,
    bulks: u64,
    /// Parse, scoring and encoding, all of it.
    seconds: f64,
    /// `Encoder::encode` alone: what the sink itself spends per document.
    encode_seconds: f64,
}

/// The input's documents as the sink encodes them, into bulks as the sink
/// groups them.
fn encode_bulks(
    input: &Input,
    prefix: &str,
    bulk_bytes: usize,
    bulk_docs: usize,
) -> Result<(Vec<Bulk>, Encoded)> {
    let started = Instant::now();
    let data =
        fs::read(&input.path).with_context(|| format!("reading {}", input.path.display()))?;
    let lines = seclake_benches::split_lines(&data);
    let mut enricher = enricher();
    let mut scorer = WindowScorer::new(Arc::new(ThreatEngine::defaults()));
    let mut encoder = Encoder::new(prefix, Target::DailyIndex);
    let format = ingest_format(input.format);
    let mut stats = Encoded::default();
    let mut bulks = Vec::new();
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut items: Vec<Item> = Vec::new();
    let mut encode_time = Duration::ZERO;
    let flush = |pending: &mut Vec<Bytes>, pending_bytes: &mut usize, bulks: &mut Vec<Bulk>| {
        if pending.is_empty() {
            return;
        }
        let mut body = BytesMut::with_capacity(*pending_bytes);
        for line in pending.iter() {
            body.extend_from_slice(line);
        }
        bulks.push(Bulk {
            body: body.freeze(),
            items: std::mem::take(pending),
        });
        *pending_bytes = 0;
    };
    for chunk in lines.chunks(BATCH_RECORDS) {
        let ingest_ts = chrono::Utc::now().timestamp_micros();
        let parsed = enricher
            .parse_records(format, chunk.iter().map(|l| (*l, None)), ingest_ts)
            .context("parsing fixture records")?;
        let events = scorer.apply(&parsed).context("window scoring")?;
        items.clear();
        let t = Instant::now();
        encoder
            .encode(format, &events, &mut items)
            .context("encoding documents")?;
        encode_time += t.elapsed();
        for item in items.drain(..) {
            stats.docs += 1;
            stats.bytes += item.line.len() as u64;
            pending_bytes += item.line.len();
            pending.push(item.line);
            if pending.len() >= bulk_docs || pending_bytes >= bulk_bytes {
                flush(&mut pending, &mut pending_bytes, &mut bulks);
            }
        }
    }
    flush(&mut pending, &mut pending_bytes, &mut bulks);
    stats.bulks = bulks.len() as u64;
    stats.seconds = started.elapsed().as_secs_f64();
    stats.encode_seconds = encode_time.as_secs_f64();
    Ok((bulks, stats))
}

/// What a raw load did and cost.
#[derive(Debug, Default, Clone, Serialize)]
struct LoadRun {
    docs: u64,
    bytes: u64,
    requests: u64,
    retried: u64,
    failed: u64,
    first_error: Option<String>,
    seconds: f64,
    /// This process's CPU over the load (the loader's threads).
    cpu_seconds: f64,
    opensearch_cpu_seconds: Option<f64>,
    /// Documents in the indices afterwards.
    count: u64,
    /// When the node indexed them.
    window: Option<Window>,
}

impl LoadRun {
    fn docs_per_sec(&self) -> f64 {
        self.docs as f64 / self.seconds.max(1e-9)
    }
}

#[derive(Deserialize)]
struct BulkHead {
    errors: bool,
}

#[derive(Deserialize)]
struct BulkFull {
    items: Vec<BTreeMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// POSTs every bulk, `concurrency` at a time, until each document is
/// indexed; retries what the node answers 429 or 5xx to.
async fn load(node: Arc<Node>, bulks: Arc<Vec<Bulk>>, concurrency: usize) -> Result<LoadRun> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = self_cpu();
    let os_before = node.cpu().await;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (node, bulks, next) = (Arc::clone(&node), Arc::clone(&bulks), Arc::clone(&next));
        tasks.spawn(async move {
            let mut run = LoadRun::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bulk) = bulks.get(i) else { break };
                send_bulk(&node, bulk, &mut run).await?;
            }
            anyhow::Ok(run)
        });
    }
    let mut total = LoadRun::default();
    while let Some(joined) = tasks.join_next().await {
        let run = joined.context("a loader task panicked")??;
        total.docs += run.docs;
        total.bytes += run.bytes;
        total.requests += run.requests;
        total.retried += run.retried;
        total.failed += run.failed;
        if total.first_error.is_none() {
            total.first_error = run.first_error;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total.cpu_seconds = (self_cpu().saturating_sub(cpu_before)).as_secs_f64();
    total.opensearch_cpu_seconds = delta(node.cpu().await, os_before);
    Ok(total)
}

async fn send_bulk(node: &Node, bulk: &Bulk, run: &mut LoadRun) -> Result<()> {
    let url = format!(
        "{}/_bulk?filter_path=errors,items.*.status,items.*.error",
        node.url
    );
    let mut body = bulk.body.clone();
    let mut todo: Vec<Bytes> = Vec::new();
    let mut all = true;
    let mut wait = Duration::from_millis(100);
    loop {
        let n = if all { bulk.items.len() } else { todo.len() };
        run.requests += 1;
        run.bytes += body.len() as u64;
        let resp = node
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body.clone())
            .send()
            .await
            .context("POST /_bulk")?;
        let status = resp.status().as_u16();
        let text = resp.bytes().await.context("reading a _bulk response")?;
        let mut retry: Vec<Bytes> = Vec::new();
        if status == 429 || status >= 500 {
            retry = if all {
                bulk.items.clone()
            } else {
                todo.clone()
            };
        } else if !(200..300).contains(&status) {
            bail!(
                "POST /_bulk: HTTP {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(500)])
            );
        } else if !serde_json::from_slice::<BulkHead>(&text)
            .context("a _bulk response")?
            .errors
        {
            run.docs += n as u64;
        } else {
            let full: BulkFull = serde_json::from_slice(&text).context("a _bulk response")?;
            ensure!(
                full.items.len() == n,
                "a _bulk response with {} items for {n}",
                full.items.len()
            );
            let lines = if all { &bulk.items } else { &todo };
            for (entry, line) in full.items.iter().zip(lines) {
                let Some(item) = entry.values().next() else {
                    continue;
                };
                match item.status {
                    200..=299 => run.docs += 1,
                    429 | 500..=599 => retry.push(line.clone()),
                    _ => {
                        run.failed += 1;
                        if run.first_error.is_none() {
                            run.first_error = Some(format!(
                                "{} {}",
                                item.status,
                                item.error.clone().unwrap_or(Value::Null)
                            ));
                        }
                    }
                }
            }
        }
        if retry.is_empty() {
            return Ok(());
        }
        run.retried += retry.len() as u64;
        let mut again = BytesMut::with_capacity(retry.iter().map(Bytes::len).sum());
        for line in &retry {
            again.extend_from_slice(line);
        }
        body = again.freeze();
        todo = retry;
        all = false;
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

// ---------------------------------------------------------------------------
// seclake runs.

/// `seclake run --summary-json`, the fields used here.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct RunSummary {
    pub(super) lake_rows: u64,
    pub(super) dead_letters: u64,
    pub(super) undelivered_batches: u64,
    pub(super) seconds: f64,
    #[serde(default)]
    sinks: BTreeMap<String, SinkCounts>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize, Serialize)]
struct SinkCounts {
    rows: u64,
    files: u64,
    bytes: u64,
    #[serde(default)]
    retried: u64,
    #[serde(default)]
    dead_lettered: u64,
    #[serde(default)]
    backed_up: u64,
}

/// One `seclake run` and what it cost. No peak RSS: a child spawned by this
/// process, which holds the raw loader's bulks, starts with this process's
/// high-water mark in `ru_maxrss`.
#[derive(Debug, Clone, Serialize)]
struct SeclakeRun {
    wall_seconds: f64,
    cpu_seconds: f64,
    opensearch_cpu_seconds: Option<f64>,
    summary: RunSummary,
    /// Documents in the indices afterwards (with `[opensearch]`).
    count: Option<u64>,
    /// When the node indexed them (with `[opensearch]`).
    window: Option<Window>,
}

impl SeclakeRun {
    fn opensearch(&self) -> SinkCounts {
        self.summary
            .sinks
            .get("opensearch")
            .copied()
            .unwrap_or_default()
    }

    /// Documents indexed per second of the pipeline's own clock.
    fn docs_per_sec(&self) -> f64 {
        self.opensearch().rows as f64 / self.summary.seconds.max(1e-9)
    }

    /// Events into the lake per second of the pipeline's own clock.
    fn events_per_sec(&self) -> f64 {
        self.summary.lake_rows as f64 / self.summary.seconds.max(1e-9)
    }
}

/// The sink's knobs of a run.
#[derive(Clone, Copy)]
struct Knobs {
    bulk_bytes: usize,
    bulk_docs: usize,
    concurrency: usize,
}

/// `seclake run` of the input file into a fresh lake, with the OpenSearch
/// sink when `opensearch` is given (URL, prefix).
fn run_seclake(
    seclake: &Path,
    dir: &Path,
    input: &Input,
    opensearch: Option<(&str, Knobs)>,
    node: &Node,
    rt: &tokio::runtime::Runtime,
    keep: bool,
) -> Result<SeclakeRun> {
    let run_dir = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a run directory in {}", dir.display()))?;
    let root = run_dir.path();
    let mut config = format!(
        "[[source]]\ntype = \"file\"\nformat = \"{}\"\npath = {}\n\n",
        input.format.as_str(),
        toml_str(&input.path.to_string_lossy())
    );
    for section in ["lake", "dlq"] {
        fs::create_dir_all(root.join(section))?;
        let url = format!("file://{}", root.join(section).to_string_lossy());
        let _ = write!(config, "[{section}]\nurl = {}\n\n", toml_str(&url));
    }
    if let Some((url, knobs)) = opensearch {
        let _ = write!(
            config,
            "[opensearch]\nurl = {}\nindex_prefix = \"{SECLAKE_PREFIX}\"\nbulk_bytes = {}\nbulk_docs = {}\nconcurrency = {}\n",
            toml_str(url),
            knobs.bulk_bytes,
            knobs.bulk_docs,
            knobs.concurrency
        );
    }
    let config_path = root.join("seclake.toml");
    fs::write(&config_path, config)?;
    let summary_path = root.join("summary.json");
    let stderr = root.join("stderr.log");
    let mut cmd = Command::new(seclake);
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--summary-json")
        .arg(&summary_path)
        .stdin(Stdio::null())
        .stdout(File::create(root.join("stdout.log"))?)
        .stderr(File::create(&stderr)?);
    let os_before = if opensearch.is_some() {
        rt.block_on(node.cpu())
    } else {
        None
    };
    let (status, wall, usage) =
        spawn_and_wait(&mut cmd).with_context(|| format!("running {}", seclake.display()))?;
    let os_after = if opensearch.is_some() {
        rt.block_on(node.cpu())
    } else {
        None
    };
    if !status.success() {
        return Err(run_failed(status, run_dir, &stderr));
    }
    let summary: RunSummary = read_json(&summary_path)?;
    if keep {
        println!("kept:   {}", run_dir.keep().display());
    }
    Ok(SeclakeRun {
        wall_seconds: wall.as_secs_f64(),
        cpu_seconds: usage.cpu.as_secs_f64(),
        opensearch_cpu_seconds: delta(os_after, os_before),
        summary,
        count: None,
        window: None,
    })
}

// ---------------------------------------------------------------------------
// Measurements 1 and 2.

/// One round: each loader once, in alternating order.
#[derive(Serialize)]
struct Round {
    raw: Option<LoadRun>,
    seclake: SeclakeRun,
    lake_only: Option<SeclakeRun>,
    /// seclake / raw, documents per second.
    rate_ratio: Option<f64>,
    /// lake + OpenSearch / lake only, events per second.
    e2e_ratio: Option<f64>,
    /// seclake / raw, documents per second of the node's indexing window.
    window_ratio: Option<f64>,
}

/// A run's [`Window`] beside its own clock.
fn window_note(window: Option<Window>, seconds: f64) -> String {
    match window {
        Some(w) => format!(
            "node view: first document indexed at {:.2} s, last at {:.2} s: {} docs/s over {:.2} s (the load took {seconds:.2} s)",
            w.first,
            w.last,
            thousands(w.docs_per_sec()),
            w.seconds()
        ),
        None => "node view: the node's counts did not show the whole load".into(),
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn rate_and_e2e(
    args: &OpenSearchArgs,
    measures: &[Measure],
    seclake: &Path,
    node: &Arc<Node>,
    rt: &tokio::runtime::Runtime,
) -> Result<(bool, String, Value)> {
    let with_raw = measures.contains(&Measure::Rate);
    let with_lake = measures.contains(&Measure::E2e);
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_root()?.join(format!(
            "opensearch-{}-{}",
            args.format.as_str(),
            args.events
        )),
    };
    let input = ensure_input(&dir, args.format, args.events)?;
    let dir = dir.canonicalize()?;
    let knobs = Knobs {
        bulk_bytes: args.bulk_bytes,
        bulk_docs: args.bulk_docs,
        concurrency: args.concurrency,
    };
    println!(
        "input:  {} ({} {} records, {} malformed, {:.1} MB)",
        input.path.display(),
        input.lines,
        input.format.as_str(),
        input.malformed,
        input.bytes as f64 / 1e6
    );
    println!(
        "knobs:  bulk_bytes {}, bulk_docs {}, concurrency {} (seclake's [opensearch] and the raw loader's)",
        args.bulk_bytes, args.bulk_docs, args.concurrency
    );
    // The file is read through once so every run reads it from the page cache.
    std::io::copy(&mut File::open(&input.path)?, &mut std::io::sink())?;
    for prefix in [RAW_PREFIX, SECLAKE_PREFIX] {
        rt.block_on(node.clean(prefix))?;
    }
    let (bulks, encoded) = if with_raw {
        let (bulks, encoded) = encode_bulks(&input, RAW_PREFIX, args.bulk_bytes, args.bulk_docs)?;
        println!(
            "raw:    {} documents, {:.1} MB of bulk bodies in {} requests ({:.0} docs each), \
             encoded in {:.2} s (parse + score + encode; Encoder::encode alone {:.2} s, {:.2} µs/doc)",
            encoded.docs,
            encoded.bytes as f64 / 1e6,
            encoded.bulks,
            encoded.docs as f64 / encoded.bulks.max(1) as f64,
            encoded.seconds,
            encoded.encode_seconds,
            encoded.encode_seconds * 1e6 / encoded.docs.max(1) as f64
        );
        (Arc::new(bulks), Some(encoded))
    } else {
        (Arc::new(Vec::new()), None)
    };
    let mut failures: Vec<String> = Vec::new();
    if let Some(e) = &encoded
        && e.docs != input.events()
    {
        failures.push(format!(
            "the pre-encoding made {} documents of {} events",
            e.docs,
            input.events()
        ));
    }
    if with_raw {
        // A JVM fresh from start indexes at half speed for its first
        // hundred thousand documents; no round should be the one that pays.
        rt.block_on(node.install_templates(RAW_PREFIX))?;
        let run = rt.block_on(load(Arc::clone(node), Arc::clone(&bulks), args.concurrency))?;
        rt.block_on(node.clean(RAW_PREFIX))?;
        println!(
            "warm-up: the raw loader once, not counted ({} docs/s)",
            thousands(run.docs_per_sec())
        );
    }
    let mut rounds: Vec<Round> = Vec::new();
    for round in 0..args.repeat {
        let raw_first = round % 2 == 0;
        let mut raw = None;
        let mut sec = None;
        let order: &[bool] = if raw_first {
            &[true, false]
        } else {
            &[false, true]
        };
        for &is_raw in order {
            if is_raw && with_raw {
                rt.block_on(node.settle());
                rt.block_on(node.install_templates(RAW_PREFIX))?;
                let watch = Watch::start(node, RAW_PREFIX, rt);
                let mut run =
                    rt.block_on(load(Arc::clone(node), Arc::clone(&bulks), args.concurrency))?;
                run.window = watch.finish(run.docs, rt);
                run.count = rt.block_on(node.count(RAW_PREFIX))?;
                rt.block_on(node.clean(RAW_PREFIX))?;
                println!(
                    "round {}/{}: raw _bulk   {:>9} docs/s {:>6.1} MB/s {:>7.2} s  loader CPU {:.2} s, OpenSearch CPU {}",
                    round + 1,
                    args.repeat,
                    thousands(run.docs_per_sec()),
                    run.bytes as f64 / 1e6 / run.seconds.max(1e-9),
                    run.seconds,
                    run.cpu_seconds,
                    run.opensearch_cpu_seconds
                        .map_or("?".into(), |c| format!("{c:.1} s"))
                );
                println!("           {}", window_note(run.window, run.seconds));
                raw = Some(run);
            } else if !is_raw {
                rt.block_on(node.settle());
                let watch = Watch::start(node, SECLAKE_PREFIX, rt);
                let mut run = run_seclake(
                    seclake,
                    &dir,
                    &input,
                    Some((&args.url, knobs)),
                    node,
                    rt,
                    args.keep,
                )?;
                run.window = watch.finish(input.events(), rt);
                run.count = Some(rt.block_on(node.count(SECLAKE_PREFIX))?);
                rt.block_on(node.clean(SECLAKE_PREFIX))?;
                let o = run.opensearch();
                println!(
                    "round {}/{}: seclake     {:>9} docs/s {:>6.1} MB/s {:>7.2} s  seclake CPU {:.2} s, OpenSearch CPU {}, {} requests, {} retried",
                    round + 1,
                    args.repeat,
                    thousands(run.docs_per_sec()),
                    o.bytes as f64 / 1e6 / run.summary.seconds.max(1e-9),
                    run.summary.seconds,
                    run.cpu_seconds,
                    run.opensearch_cpu_seconds
                        .map_or("?".into(), |c| format!("{c:.1} s")),
                    o.files,
                    o.retried
                );
                println!("           {}", window_note(run.window, run.wall_seconds));
                sec = Some(run);
            }
        }
        let lake_only = if with_lake {
            let run = run_seclake(seclake, &dir, &input, None, node, rt, args.keep)?;
            println!(
                "round {}/{}: lake only   {:>9} events/s {:.2} s",
                round + 1,
                args.repeat,
                thousands(run.events_per_sec()),
                run.summary.seconds
            );
            Some(run)
        } else {
            None
        };
        let sec = sec.context("no seclake run")?;
        check_round(
            &input,
            round,
            raw.as_ref(),
            &sec,
            lake_only.as_ref(),
            &mut failures,
        );
        let rate_ratio = raw
            .as_ref()
            .map(|r| sec.docs_per_sec() / r.docs_per_sec().max(1e-9));
        let e2e_ratio = lake_only
            .as_ref()
            .map(|l| sec.events_per_sec() / l.events_per_sec().max(1e-9));
        let window_ratio = raw
            .as_ref()
            .and_then(|r| Some(sec.window?.docs_per_sec() / r.window?.docs_per_sec().max(1e-9)));
        if let Some(r) = rate_ratio {
            println!(
                "round {}/{}: seclake / raw = {r:.3} (own clocks), {} (node view)",
                round + 1,
                args.repeat,
                window_ratio.map_or("?".into(), |w| format!("{w:.3}"))
            );
        }
        rounds.push(Round {
            raw,
            seclake: sec,
            lake_only,
            rate_ratio,
            e2e_ratio,
            window_ratio,
        });
    }

    let mut t = String::new();
    let median_note = if args.repeat > 1 {
        format!("medians of {} rounds", args.repeat)
    } else {
        "1 round".into()
    };
    let mut value = serde_json::Map::new();
    value.insert("format".into(), json!(input.format.as_str()));
    value.insert("records".into(), json!(input.lines));
    value.insert("events".into(), json!(input.events()));
    value.insert("input_bytes".into(), json!(input.bytes));
    value.insert("bulk_bytes".into(), json!(args.bulk_bytes));
    value.insert("bulk_docs".into(), json!(args.bulk_docs));
    value.insert("concurrency".into(), json!(args.concurrency));
    value.insert("repeat".into(), json!(args.repeat));
    value.insert("encoded".into(), json!(encoded));
    let sec_median = median_by(&rounds, |r| (r.seclake.docs_per_sec() * 1000.0) as u64);
    if with_raw {
        let raw_median = median_by(&rounds, |r| {
            r.raw
                .as_ref()
                .map_or(0, |x| (x.docs_per_sec() * 1000.0) as u64)
        });
        let raw = raw_median.raw.as_ref().context("no raw run")?;
        let sec = &sec_median.seclake;
        let mut ratios: Vec<f64> = rounds.iter().filter_map(|r| r.rate_ratio).collect();
        let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
        let ratio = median(&mut ratios);
        let doc_kb = sec.opensearch().bytes as f64 / sec.opensearch().rows.max(1) as f64 / 1e3;
        let _ = writeln!(
            t,
            "\nindexing rate: {} {} documents (~{doc_kb:.2} KB each with its action line) into one node, same documents and bulks ({median_note})",
            input.events(),
            input.format.as_str()
        );
        let _ = writeln!(
            t,
            "{:<24} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>14}",
            "loader",
            "docs/s",
            "MB/s",
            "seconds",
            "requests",
            "retried",
            "CPU s",
            "OpenSearch CPU s"
        );
        let _ = writeln!(
            t,
            "{:<24} {:>10} {:>8.1} {:>8.2} {:>9} {:>8} {:>8.2} {:>14}",
            "raw _bulk (in bench)",
            thousands(raw.docs_per_sec()),
            raw.bytes as f64 / 1e6 / raw.seconds.max(1e-9),
            raw.seconds,
            raw.requests,
            raw.retried,
            raw.cpu_seconds,
            raw.opensearch_cpu_seconds
                .map_or("?".into(), |c| format!("{c:.1}"))
        );
        let _ = writeln!(
            t,
            "{:<24} {:>10} {:>8.1} {:>8.2} {:>9} {:>8} {:>8.2} {:>14}",
            "seclake lake+OpenSearch",
            thousands(sec.docs_per_sec()),
            sec.opensearch().bytes as f64 / 1e6 / sec.summary.seconds.max(1e-9),
            sec.summary.seconds,
            sec.opensearch().files,
            sec.opensearch().retried,
            sec.cpu_seconds,
            sec.opensearch_cpu_seconds
                .map_or("?".into(), |c| format!("{c:.1}"))
        );
        let met = if ratio >= 0.9 { "met" } else { "NOT met" };
        let _ = writeln!(
            t,
            "seclake / raw: {ratio:.3} (median of the rounds' ratios: {}; goal ≥ 0.9: {met})",
            per_round.join(", ")
        );
        let mut windows: Vec<f64> = rounds.iter().filter_map(|r| r.window_ratio).collect();
        let per_round: Vec<String> = windows.iter().map(|r| format!("{r:.3}")).collect();
        let window_ratio = (!windows.is_empty()).then(|| median(&mut windows));
        if let Some(w) = window_ratio {
            let _ = writeln!(
                t,
                "seclake / raw, node view (first to last document indexed, polled every {} ms): {w:.3} (rounds: {})",
                WATCH_EVERY.as_millis(),
                per_round.join(", ")
            );
        }
        let _ = writeln!(
            t,
            "cores: {}",
            if args.pin {
                "the node on one core of its own, the loaders on the others (--pin)"
            } else {
                "the node and the loaders share every core"
            }
        );
        value.insert("rate_ratio".into(), json!(ratio));
        value.insert("window_ratio".into(), json!(window_ratio));
        value.insert("raw_docs_per_second".into(), json!(raw.docs_per_sec()));
        value.insert(
            "raw_mb_per_second".into(),
            json!(raw.bytes as f64 / 1e6 / raw.seconds.max(1e-9)),
        );
        value.insert("seclake_docs_per_second".into(), json!(sec.docs_per_sec()));
        value.insert(
            "seclake_mb_per_second".into(),
            json!(sec.opensearch().bytes as f64 / 1e6 / sec.summary.seconds.max(1e-9)),
        );
    }
    if with_lake {
        let lake_median = median_by(&rounds, |r| {
            r.lake_only
                .as_ref()
                .map_or(0, |x| (x.events_per_sec() * 1000.0) as u64)
        });
        let lake = lake_median.lake_only.as_ref().context("no lake-only run")?;
        let sec = &sec_median.seclake;
        let mut ratios: Vec<f64> = rounds.iter().filter_map(|r| r.e2e_ratio).collect();
        let per_round: Vec<String> = ratios.iter().map(|r| format!("{r:.4}")).collect();
        let ratio = median(&mut ratios);
        let _ = writeln!(
            t,
            "\nend to end: `seclake run`, file → lake, with and without [opensearch] ({median_note}; the pipeline's own clock)"
        );
        let _ = writeln!(
            t,
            "{:<24} {:>11} {:>8} {:>8} {:>8} {:>11}",
            "run", "events/s", "MB/s", "seconds", "CPU s", "cores busy"
        );
        for (name, run) in [("lake only", lake), ("lake + OpenSearch", sec)] {
            let _ = writeln!(
                t,
                "{:<24} {:>11} {:>8.1} {:>8.2} {:>8.2} {:>11.2}",
                name,
                thousands(run.events_per_sec()),
                input.bytes as f64 / 1e6 / run.summary.seconds.max(1e-9),
                run.summary.seconds,
                run.cpu_seconds,
                run.cpu_seconds / run.wall_seconds.max(1e-9),
            );
        }
        let _ = writeln!(
            t,
            "lake + OpenSearch / lake only: {ratio:.4} (rounds: {}); MB/s is of the input NDJSON",
            per_round.join(", ")
        );
        value.insert("e2e_ratio".into(), json!(ratio));
        value.insert(
            "lake_only_events_per_second".into(),
            json!(lake.events_per_sec()),
        );
        value.insert(
            "lake_opensearch_events_per_second".into(),
            json!(sec.events_per_sec()),
        );
    }
    value.insert("rounds".into(), serde_json::to_value(&rounds)?);
    if failures.is_empty() {
        let _ = writeln!(
            t,
            "indexing checks: ok — every event indexed once by each loader (seclake's rows = raw loader's = events), same document count in both, lake rows = events"
        );
    } else {
        let _ = writeln!(t, "indexing checks: FAILED");
        for f in &failures {
            let _ = writeln!(t, "  {f}");
        }
    }
    value.insert("failures".into(), json!(failures));
    Ok((failures.is_empty(), t, Value::Object(value)))
}

fn check_round(
    input: &Input,
    round: u32,
    raw: Option<&LoadRun>,
    sec: &SeclakeRun,
    lake: Option<&SeclakeRun>,
    failures: &mut Vec<String>,
) {
    let events = input.events();
    let mut fail = |what: String| failures.push(format!("round {}: {what}", round + 1));
    let o = sec.opensearch();
    if o.rows != events || o.dead_lettered != 0 || o.backed_up != 0 {
        fail(format!(
            "seclake indexed {} documents of {events} events ({} dead-lettered, {} backed up)",
            o.rows, o.dead_lettered, o.backed_up
        ));
    }
    if sec.summary.lake_rows != events || sec.summary.undelivered_batches != 0 {
        fail(format!(
            "seclake (with OpenSearch) wrote {} lake rows of {events}, {} undelivered batches",
            sec.summary.lake_rows, sec.summary.undelivered_batches
        ));
    }
    if let Some(raw) = raw {
        if raw.docs != events || raw.failed != 0 {
            fail(format!(
                "the raw loader indexed {} of {events} documents, {} refused (first: {})",
                raw.docs,
                raw.failed,
                raw.first_error.as_deref().unwrap_or("-")
            ));
        }
        if sec.count != Some(raw.count) {
            fail(format!(
                "the indices hold {} documents after seclake and {} after the raw loader",
                sec.count.unwrap_or(0),
                raw.count
            ));
        }
    }
    if let Some(lake) = lake
        && (lake.summary.lake_rows != events || lake.summary.dead_letters != input.malformed)
    {
        fail(format!(
            "lake only: {} lake rows, {} dead letters; expected {events} and {}",
            lake.summary.lake_rows, lake.summary.dead_letters, input.malformed
        ));
    }
}

// ---------------------------------------------------------------------------
// Measurement 3: freshness.

/// A fixture record with its time and id cut out, to be stamped per send.
struct Template {
    /// Before the time value, between the time and the id, after the id.
    parts: [Vec<u8>; 3],
}

/// How a format's records carry their time and id.
struct Stamp {
    time_key: &'static [u8],
    /// RFC 3339 string (app) or epoch milliseconds (WAF).
    time_is_string: bool,
    id_key: &'static [u8],
}

fn stamp_for(format: Format) -> Result<Stamp> {
    match format {
        Format::App => Ok(Stamp {
            time_key: br#""ts":""#,
            time_is_string: true,
            id_key: br#""request_id":""#,
        }),
        Format::Waf => Ok(Stamp {
            time_key: br#""timestamp":"#,
            time_is_string: false,
            id_key: br#""requestId":""#,
        }),
        Format::Falco | Format::GuardDuty => {
            bail!(
                "--fresh-format: app or waf (Falco alerts and GuardDuty findings are not stamped)"
            )
        }
    }
}

/// Where a value starts and ends after `key` in `line`.
fn value_span(line: &[u8], key: &[u8], string: bool) -> Option<(usize, usize)> {
    let start = memchr::memmem::find(line, key)? + key.len();
    let len = if string {
        memchr::memchr(b'"', &line[start..])?
    } else {
        line[start..].iter().position(|b| !b.is_ascii_digit())?
    };
    Some((start, start + len))
}

/// Valid fixture records of `format` (ones the parser turns into events),
/// cut for stamping.
fn templates(format: Format, stamp: &Stamp, n: usize) -> Result<Vec<Template>> {
    let data = seclake_benches::fixture_ndjson(format, n);
    let lines = seclake_benches::split_lines(&data);
    let parsed = enricher()
        .parse_records(
            ingest_format(format),
            lines.iter().map(|l| (*l, None)),
            chrono::Utc::now().timestamp_micros(),
        )
        .context("parsing fixture records")?;
    let rejected: std::collections::HashSet<usize> =
        parsed.rejects.iter().map(|r| r.index).collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if rejected.contains(&i) {
            continue;
        }
        let (Some(time), Some(id)) = (
            value_span(line, stamp.time_key, stamp.time_is_string),
            value_span(line, stamp.id_key, true),
        ) else {
            continue;
        };
        if time.1 > id.0 {
            continue;
        }
        out.push(Template {
            parts: [
                line[..time.0].to_vec(),
                line[time.1..id.0].to_vec(),
                line[id.1..].to_vec(),
            ],
        });
    }
    ensure!(!out.is_empty(), "no fixture record to stamp");
    Ok(out)
}

fn seq_key(seq: u64) -> String {
    format!("{SEQ_PREFIX}{seq:0width$}", width = SEQ_DIGITS)
}

/// Counts what the broker acknowledged.
#[derive(Default)]
pub(super) struct Deliveries {
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(_) => self.delivered.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// What the producer thread did.
struct Produced {
    /// Per record: when it was handed to the producer.
    sent: Vec<Instant>,
    /// Per record: the same moment in µs since the epoch (its stamped time).
    sent_us: Vec<i64>,
    /// The furthest a send fell behind its schedule.
    max_late: Duration,
    delivered: u64,
    failed: u64,
}

/// Sends `total` stamped records at `rate` per second from now.
fn produce(
    producer: &ThreadedProducer<Deliveries>,
    topic: &str,
    templates: &[Template],
    stamp_string: bool,
    rate: f64,
    total: u64,
) -> Result<Produced> {
    let mut out = Produced {
        sent: Vec::with_capacity(total as usize),
        sent_us: Vec::with_capacity(total as usize),
        max_late: Duration::ZERO,
        delivered: 0,
        failed: 0,
    };
    let mut line = Vec::with_capacity(4096);
    let start = Instant::now();
    for seq in 0..total {
        let due = start + Duration::from_secs_f64(seq as f64 / rate);
        let now = Instant::now();
        if let Some(wait) = due.checked_duration_since(now) {
            std::thread::sleep(wait);
        } else {
            out.max_late = out.max_late.max(now - due);
        }
        let sent = Instant::now();
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let t = &templates[seq as usize % templates.len()];
        line.clear();
        line.extend_from_slice(&t.parts[0]);
        if stamp_string {
            let ts = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
            let _ = write!(line, "{}", ts.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        } else {
            let _ = write!(line, "{}", us / 1000);
        }
        line.extend_from_slice(&t.parts[1]);
        line.extend_from_slice(seq_key(seq).as_bytes());
        line.extend_from_slice(&t.parts[2]);
        let mut record = BaseRecord::<(), [u8]>::to(topic).payload(&line[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("producing to {topic}: {e}"),
            }
        }
        out.sent.push(sent);
        out.sent_us.push(us);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge every record")?;
    out.delivered = producer.context().delivered.load(Ordering::Relaxed);
    out.failed = producer.context().failed.load(Ordering::Relaxed);
    Ok(out)
}

/// What the poller saw.
struct Seen {
    /// Per record: the answer of the poll that first found it.
    visible: Vec<Option<Instant>>,
    /// Per record: its `ingest_ts` (ms since the epoch), when the pipeline's
    /// worker took its batch.
    ingest_ms: Vec<Option<i64>>,
    polls: u64,
    searches: u64,
    /// Time spent waiting for `_count` answers.
    count_time: Duration,
    poll_span: Duration,
}

/// Polls the fresh indices every `every` until each of `total` records is
/// found, or until `deadline` after the producer is `done`.
async fn poll_visibility(
    node: &Node,
    total: u64,
    every: Duration,
    done: &AtomicBool,
    grace: Duration,
    format: Format,
) -> Result<Seen> {
    let pattern = format!("{FRESH_PREFIX}-{}-*", format.as_str());
    let count_url = format!(
        "{}/{pattern}/_count?allow_no_indices=true&ignore_unavailable=true",
        node.url
    );
    let search_path = format!("/{pattern}/_search?allow_no_indices=true&ignore_unavailable=true");
    let mut seen = Seen {
        visible: vec![None; total as usize],
        ingest_ms: vec![None; total as usize],
        polls: 0,
        searches: 0,
        count_time: Duration::ZERO,
        poll_span: Duration::ZERO,
    };
    let mut found = 0u64;
    // Every record below this one has been found.
    let mut watermark = 0u64;
    let mut last_count = 0u64;
    let mut done_at: Option<Instant> = None;
    let first_poll = Instant::now();
    let mut next = first_poll;
    loop {
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
        next += every;
        if Instant::now() > next {
            // A slow answer: the schedule restarts rather than bursting.
            next = Instant::now() + every;
        }
        let asked = Instant::now();
        let resp = node.client.get(&count_url).send().await;
        let answered = Instant::now();
        seen.count_time += answered - asked;
        seen.polls += 1;
        let count = match resp {
            Ok(r) => r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["count"].as_u64())
                .unwrap_or(last_count),
            Err(_) => last_count,
        };
        if count > last_count {
            last_count = count;
            // Newly visible documents: every one from the watermark on, in
            // id order, a page at a time.
            let mut after: Option<String> = None;
            loop {
                let mut body = json!({
                    "size": 10_000,
                    "_source": false,
                    "track_total_hits": false,
                    "query": {"range": {"request_id": {"gte": seq_key(watermark)}}},
                    "docvalue_fields": ["request_id", {"field": "ingest_ts", "format": "epoch_millis"}],
                    "sort": [{"request_id": "asc"}],
                });
                if let Some(a) = &after {
                    body["search_after"] = json!([a]);
                }
                let v = node
                    .must(reqwest::Method::POST, &search_path, Some(&body))
                    .await?;
                seen.searches += 1;
                let hits = v["hits"]["hits"].as_array().cloned().unwrap_or_default();
                for hit in &hits {
                    let id = hit["fields"]["request_id"][0].as_str().unwrap_or("");
                    let Some(seq) = id
                        .strip_prefix(SEQ_PREFIX)
                        .and_then(|d| d.parse::<u64>().ok())
                        .filter(|s| *s < total)
                    else {
                        continue;
                    };
                    let slot = &mut seen.visible[seq as usize];
                    if slot.is_none() {
                        *slot = Some(answered);
                        found += 1;
                        let ingest = &hit["fields"]["ingest_ts"][0];
                        seen.ingest_ms[seq as usize] = ingest
                            .as_str()
                            .and_then(|s| s.parse::<f64>().ok())
                            .or_else(|| ingest.as_f64())
                            .map(|ms| ms as i64);
                    }
                }
                if hits.len() < 10_000 {
                    break;
                }
                after = hits
                    .last()
                    .and_then(|h| h["fields"]["request_id"][0].as_str())
                    .map(str::to_owned);
            }
            while watermark < total && seen.visible[watermark as usize].is_some() {
                watermark += 1;
            }
        }
        if found == total {
            break;
        }
        if done.load(Ordering::Acquire) {
            let at = *done_at.get_or_insert_with(Instant::now);
            if at.elapsed() > grace {
                break;
            }
        }
    }
    seen.poll_span = first_poll.elapsed();
    Ok(seen)
}

/// The `q` quantile of sorted values (nearest rank).
pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// A topic a bench made, deleted by [`BenchTopic::delete`].
pub(super) struct BenchTopic {
    admin: AdminClient<DefaultClientContext>,
    options: AdminOptions,
    name: String,
}

impl BenchTopic {
    /// Creates `name` with `partitions` partitions on `brokers`.
    pub(super) fn create(
        rt: &tokio::runtime::Runtime,
        brokers: &str,
        name: &str,
        partitions: i32,
    ) -> Result<BenchTopic> {
        let admin: AdminClient<DefaultClientContext> = kafka_config(brokers)
            .create()
            .context("creating the Kafka admin client")?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in rt
            .block_on(admin.create_topics(
                [&NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &options,
            ))
            .with_context(|| format!("creating topic {name} on {brokers}"))?
        {
            result.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
        }
        Ok(BenchTopic {
            admin,
            options,
            name: name.to_owned(),
        })
    }

    /// Deletes the topic; a failure is a warning.
    pub(super) fn delete(self, rt: &tokio::runtime::Runtime) {
        let deleted = rt.block_on(
            self.admin
                .delete_topics(&[self.name.as_str()], &self.options),
        );
        if let Err(e) = deleted {
            eprintln!("warning: deleting topic {}: {e}", self.name);
        }
    }
}

pub(super) fn kafka_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

/// Sums the samples of a Prometheus metric in `/metrics` text.
pub(super) fn scrape(port: u16, name: &str) -> Option<f64> {
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let text = http(port, request)?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn freshness(
    args: &OpenSearchArgs,
    seclake: &Path,
    node: &Arc<Node>,
    rt: &tokio::runtime::Runtime,
) -> Result<(bool, String, Value)> {
    let format = args.fresh_format;
    let stamp = stamp_for(format)?;
    ensure!(args.fresh_rate >= 1.0, "--fresh-rate must be at least 1/s");
    let measured_from = Duration::from_secs(args.warmup_secs);
    let total = (args.fresh_rate * (args.warmup_secs + args.fresh_secs) as f64).ceil() as u64;
    let templates = templates(format, &stamp, 20_000)?;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => default_data_root()?,
    };
    fs::create_dir_all(&dir)?;
    let run_dir = tempfile::Builder::new().prefix("fresh-").tempdir_in(&dir)?;
    let root = run_dir.path();
    rt.block_on(node.clean(FRESH_PREFIX))?;

    // The topic.
    let topic = unique_name("seclake-bench-fresh");
    let bench_topic = BenchTopic::create(rt, &args.brokers, &topic, args.partitions)?;
    let outcome = (|| -> Result<(bool, String, Value)> {
        // The pipeline.
        let metrics_port = free_port()?;
        let group = unique_name("seclake-bench-fresh");
        let mut config = format!(
            "[[source]]\ntype = \"kafka\"\nformat = \"{}\"\nbrokers = {}\ntopic = {}\ngroup = {}\n\n",
            format.as_str(),
            toml_str(&args.brokers),
            toml_str(&topic),
            toml_str(&group)
        );
        for section in ["lake", "dlq"] {
            fs::create_dir_all(root.join(section))?;
            let url = format!("file://{}", root.join(section).to_string_lossy());
            let _ = write!(config, "[{section}]\nurl = {}\n\n", toml_str(&url));
        }
        let _ = write!(
            config,
            "[opensearch]\nurl = {}\nindex_prefix = \"{FRESH_PREFIX}\"\n\n[metrics]\naddress = \"127.0.0.1:{metrics_port}\"\n",
            toml_str(&args.url)
        );
        fs::write(root.join("seclake.toml"), &config)?;
        let summary_path = root.join("summary.json");
        let stderr = root.join("stderr.log");
        let child = Command::new(seclake)
            .arg("run")
            .arg("--config")
            .arg(root.join("seclake.toml"))
            .arg("--summary-json")
            .arg(&summary_path)
            .stdin(Stdio::null())
            .stdout(File::create(root.join("stdout.log"))?)
            .stderr(File::create(&stderr)?)
            .spawn()
            .context("starting seclake")?;
        let mut child = Killed(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let assigned = scrape(metrics_port, "seclake_kafka_assigned_partitions").unwrap_or(0.0);
            if assigned >= f64::from(args.partitions) {
                break;
            }
            if let Some(status) = child.0.try_wait()? {
                let log = fs::read_to_string(&stderr).unwrap_or_default();
                bail!("seclake exited ({status}) before it was assigned the topic:\n{log}");
            }
            ensure!(
                Instant::now() < deadline,
                "seclake was not assigned all {} partitions of {topic} within 90 s",
                args.partitions
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "freshness: seclake consumes {topic} ({} partitions); producing {} {} records at {}/s ({} s warm-up, {} s measured), polling every {} ms",
            args.partitions,
            total,
            format.as_str(),
            args.fresh_rate,
            args.warmup_secs,
            args.fresh_secs,
            args.poll_ms
        );

        // The stream, and the poller beside it.
        let mut producer_config = kafka_config(&args.brokers);
        // `seclake replay`'s producer settings, with a random partition per
        // record (tests/kafka.rs does the same).
        producer_config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("sticky.partitioning.linger.ms", "0");
        let producer: ThreadedProducer<Deliveries> = producer_config
            .create_with_context(Deliveries::default())
            .context("creating the Kafka producer")?;
        let done = Arc::new(AtomicBool::new(false));
        let load_start = loadavg();
        let os_before = rt.block_on(node.cpu());
        let started = Instant::now();
        let producer_thread = {
            let (topic, done, rate, string) = (
                topic.clone(),
                Arc::clone(&done),
                args.fresh_rate,
                stamp.time_is_string,
            );
            std::thread::Builder::new()
                .name("bench-producer".into())
                .spawn(move || {
                    let produced = produce(&producer, &topic, &templates, string, rate, total);
                    done.store(true, Ordering::Release);
                    produced
                })?
        };
        let seen = rt.block_on(poll_visibility(
            node,
            total,
            Duration::from_millis(args.poll_ms),
            &done,
            Duration::from_secs(60),
            format,
        ));
        done.store(true, Ordering::Release);
        let produced = producer_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the producer thread panicked"))??;
        let seen = seen?;
        let os_cpu = delta(rt.block_on(node.cpu()), os_before);
        let stream_secs = started.elapsed().as_secs_f64();
        let load_end = loadavg();

        // Stop the pipeline.
        send_signal(child.0.id(), libc::SIGTERM)?;
        let stop_deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.0.try_wait()? {
                break status;
            }
            ensure!(
                Instant::now() < stop_deadline,
                "seclake did not stop within 120 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let summary: Option<RunSummary> = fs::read(&summary_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if !status.success() {
            let tail = last_lines(&stderr, 20);
            println!(
                "seclake exited with {status}; last lines of its stderr:\n{}",
                tail
            );
        }

        // The figures.
        let first = produced.sent.first().copied().unwrap_or(started);
        let mut latency: Vec<f64> = Vec::new();
        let mut to_parse: Vec<f64> = Vec::new();
        let mut missing = 0u64;
        let mut measured = 0u64;
        let mut last_measured: Option<Instant> = None;
        for (i, sent) in produced.sent.iter().enumerate() {
            if sent.duration_since(first) < measured_from {
                continue;
            }
            measured += 1;
            last_measured = Some(*sent);
            match seen.visible[i] {
                Some(at) => latency.push(at.saturating_duration_since(*sent).as_secs_f64()),
                None => missing += 1,
            }
            if let Some(ms) = seen.ingest_ms[i] {
                to_parse.push((ms * 1000 - produced.sent_us[i]) as f64 / 1e6);
            }
        }
        latency.sort_by(f64::total_cmp);
        to_parse.sort_by(f64::total_cmp);
        let measured_span = last_measured.map_or(0.0, |l| {
            l.duration_since(first).as_secs_f64() - measured_from.as_secs_f64()
        });
        let achieved = measured as f64 / measured_span.max(1e-9);
        let mean_poll = seen.poll_span.as_secs_f64() / seen.polls.max(1) as f64;
        let (p50, p90, p99, p999, max) = (
            quantile(&latency, 0.5),
            quantile(&latency, 0.9),
            quantile(&latency, 0.99),
            quantile(&latency, 0.999),
            latency.last().copied().unwrap_or(f64::NAN),
        );
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nfreshness: {} records/s of {} into Kafka ({} partitions) → seclake (Kafka → lake + OpenSearch, sink defaults) → searchable; {} s measured after {} s warm-up",
            args.fresh_rate,
            format.as_str(),
            args.partitions,
            args.fresh_secs,
            args.warmup_secs
        );
        let _ = writeln!(
            t,
            "time from the record's hand-off to the producer to the first poll (`_count` every {} ms, then a search for the new ids) that found it: an upper bound, resolution one poll ({:.0} ms mean interval, {:.1} ms mean `_count`)",
            args.poll_ms,
            mean_poll * 1e3,
            seen.count_time.as_secs_f64() * 1e3 / seen.polls.max(1) as f64
        );
        let _ = writeln!(
            t,
            "{:>9} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7}   {:>14} {:>14}",
            "records",
            "missing",
            "rate/s",
            "p50 s",
            "p90 s",
            "p99 s",
            "p99.9 s",
            "max s",
            "→ parsed p50 s",
            "→ parsed p99 s"
        );
        let _ = writeln!(
            t,
            "{:>9} {:>8} {:>9.0} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3}   {:>14.3} {:>14.3}",
            measured,
            missing,
            achieved,
            p50,
            p90,
            p99,
            p999,
            max,
            quantile(&to_parse, 0.5),
            quantile(&to_parse, 0.99)
        );
        let met = if p99 < 5.0 && missing == 0 {
            "met"
        } else {
            "NOT met"
        };
        let _ = writeln!(
            t,
            "goal p99 < 5 s: {met}. Producer: {} of {} records acknowledged, {} failed, at most {:.1} ms behind schedule; OpenSearch CPU {} over {:.1} s; load {} → {}",
            produced.delivered,
            total,
            produced.failed,
            produced.max_late.as_secs_f64() * 1e3,
            os_cpu.map_or("?".into(), |c| format!("{c:.1} s")),
            stream_secs,
            load_start,
            load_end
        );
        let mut failures = Vec::new();
        if missing > 0 {
            failures.push(format!(
                "{missing} measured records never became searchable"
            ));
        }
        if produced.failed > 0 || produced.delivered != total {
            failures.push(format!(
                "the broker acknowledged {} of {total} records",
                produced.delivered
            ));
        }
        if !status.success() {
            failures.push(format!("seclake exited with {status}"));
        }
        if let Some(s) = &summary {
            let indexed = s.sinks.get("opensearch").map_or(0, |o| o.rows);
            let _ = writeln!(
                t,
                "seclake: {} lake rows, {} documents indexed in {} requests, {} dead letters, {:.1} s",
                s.lake_rows,
                indexed,
                s.sinks.get("opensearch").map_or(0, |o| o.files),
                s.dead_letters,
                s.seconds
            );
            if s.lake_rows != total || indexed != total {
                failures.push(format!(
                    "seclake wrote {} lake rows and indexed {indexed} documents of {total} records",
                    s.lake_rows
                ));
            }
        } else {
            failures.push("seclake wrote no summary".into());
        }
        for f in &failures {
            let _ = writeln!(t, "freshness check FAILED: {f}");
        }
        let value = json!({
            "format": format.as_str(),
            "rate": args.fresh_rate,
            "partitions": args.partitions,
            "warmup_seconds": args.warmup_secs,
            "measured_seconds": args.fresh_secs,
            "poll_ms": args.poll_ms,
            "mean_poll_interval_ms": mean_poll * 1e3,
            "records": total,
            "measured_records": measured,
            "missing": missing,
            "achieved_rate": achieved,
            "p50_seconds": p50,
            "p90_seconds": p90,
            "p99_seconds": p99,
            "p999_seconds": p999,
            "max_seconds": max,
            "to_parsed_p50_seconds": quantile(&to_parse, 0.5),
            "to_parsed_p99_seconds": quantile(&to_parse, 0.99),
            "producer_max_late_ms": produced.max_late.as_secs_f64() * 1e3,
            "opensearch_cpu_seconds": os_cpu,
            "stream_seconds": stream_secs,
            "load_start": load_start,
            "load_end": load_end,
            "summary": summary,
            "failures": failures,
        });
        Ok((failures.is_empty(), t, value))
    })();

    // Clean up whatever happened.
    bench_topic.delete(rt);
    if let Err(e) = rt.block_on(node.clean(FRESH_PREFIX)) {
        eprintln!("warning: deleting the {FRESH_PREFIX}-* indices: {e:#}");
    }
    if args.keep {
        println!("kept:   {}", run_dir.keep().display());
    }
    outcome
}
