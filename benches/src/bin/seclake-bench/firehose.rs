//! `seclake-bench firehose`: the Firehose source's throughput into the lake
//! against file → lake on the same records in the same run, and how fast
//! the endpoint answers at that load.
//!
//! Each round runs `seclake run` twice on fresh lakes:
//! 1. **file**: the WAF records from a file (the pipeline's own clock).
//! 2. **firehose**: `seclake run` as a Firehose HTTP endpoint; this process
//!    delivers the same records as Firehose would (one record per line,
//!    deliveries of about `--delivery-bytes`, `--concurrency` in flight, the
//!    access key, optionally gzip), every body encoded before the clock
//!    starts. The clock runs from the first request to the process's exit:
//!    once every record is parsed (the pipeline's counters), SIGTERM commits
//!    the lake. Every answer's latency is kept.
//!
//! The goal (issue 13) is firehose ≥ 0.7 of file events/s.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::Args;
use seclake_benches::Format;
use serde::Serialize;

use super::opensearch::{RunSummary, ensure_input, self_cpu};
use super::{
    Input, Killed, default_data_root, free_port, http, read_json, reap, run_failed, seclake_binary,
    send_signal, spawn_and_wait, thousands, toml_str,
};

const ACCESS_KEY: &str = "bench-access-key";

#[derive(Args)]
pub(crate) struct FirehoseArgs {
    /// WAF records delivered (and read from the file).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Raw bytes per delivery, before base64 (Firehose buffers 1 to 64 MiB
    /// for an HTTP endpoint).
    #[arg(long, default_value_t = 1 << 20)]
    delivery_bytes: usize,
    /// Deliveries in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Gzip the bodies (`Content-Encoding: gzip`), as a stream configured so.
    #[arg(long)]
    gzip: bool,
    /// Rounds; the report gives each and the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where the input is generated and reused
    /// [default: $HOME/.cache/seclake/bench-data/firehose-waf-<records>].
    #[arg(long)]
    data: Option<PathBuf>,
    /// The seclake binary [default: `seclake` beside this program].
    #[arg(long)]
    seclake: Option<PathBuf>,
    /// Keep each run's directory.
    #[arg(long)]
    keep: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One run into a fresh lake.
#[derive(Debug, Clone, Serialize)]
struct Run {
    /// The clock the ratio uses (see the module docs).
    seconds: f64,
    cpu_seconds: f64,
    summary: RunSummary,
}

impl Run {
    fn events_per_sec(&self) -> f64 {
        self.summary.lake_rows as f64 / self.seconds.max(1e-9)
    }
}

/// What the endpoint answered during one firehose run.
#[derive(Debug, Clone, Serialize)]
struct Answers {
    deliveries: usize,
    /// This process's CPU time while it sent them (it shares the cores).
    sender_cpu_seconds: f64,
    /// From the first request to the last 200.
    sending_seconds: f64,
    /// From the first request to when the pipeline's counters showed every
    /// record parsed (the rest of the run is the lake's commit and the exit).
    parsed_seconds: f64,
    /// Answers other than 200 (each retried after 100 ms).
    refused: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Round {
    file: Run,
    firehose: Run,
    answers: Answers,
    ratio: f64,
}

/// The request bodies, encoded before the clock starts.
struct Deliveries {
    /// `Bytes`, so that sending one (or again) copies nothing.
    bodies: Vec<(String, bytes::Bytes)>,
    /// Raw bytes of the records, without base64.
    raw_bytes: u64,
}

pub(crate) fn firehose(args: &FirehoseArgs) -> Result<bool> {
    ensure!(args.repeat >= 1, "--repeat must be at least 1");
    ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    let seclake = seclake_binary(args.seclake.as_deref())?;
    let data = match &args.data {
        Some(d) => d.clone(),
        None => default_data_root()?.join(format!("firehose-waf-{}", args.records)),
    };
    let input = ensure_input(&data, Format::Waf, args.records)?;
    let deliveries = encode(&input, args.delivery_bytes, args.gzip)?;
    println!(
        "input:  {} WAF records, {:.1} MB, in {} deliveries of ~{} KiB raw{}, {} in flight",
        thousands(input.lines as f64),
        input.bytes as f64 / 1e6,
        deliveries.bodies.len(),
        args.delivery_bytes >> 10,
        if args.gzip { ", gzip" } else { "" },
        args.concurrency
    );
    let mut rounds = Vec::new();
    for round in 1..=args.repeat {
        let file = run_file(&seclake, &data, &input, args.keep)?;
        let (firehose, answers) = run_firehose(&seclake, &data, &input, &deliveries, args)?;
        for (what, run) in [("file", &file), ("firehose", &firehose)] {
            let total = run.summary.lake_rows + run.summary.dead_letters;
            ensure!(
                total == input.lines && run.summary.undelivered_batches == 0,
                "{what} run: {} rows + {} dead letters of {} records, {} undelivered batches",
                run.summary.lake_rows,
                run.summary.dead_letters,
                input.lines,
                run.summary.undelivered_batches
            );
        }
        let ratio = firehose.events_per_sec() / file.events_per_sec();
        println!(
            "round {round}: file {} events/s ({:.1} MB/s, {:.2} CPU-s) | firehose {} events/s ({:.1} MB/s, {:.2} CPU-s; sender {:.2} CPU-s, last 200 at {:.3}, all parsed at {:.3}, exit at {:.3} s) | ratio {ratio:.3}, by CPU {:.3} | answers p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} refused",
            thousands(file.events_per_sec()),
            input.bytes as f64 / file.seconds / 1e6,
            file.cpu_seconds,
            thousands(firehose.events_per_sec()),
            deliveries.raw_bytes as f64 / firehose.seconds / 1e6,
            firehose.cpu_seconds,
            answers.sender_cpu_seconds,
            answers.sending_seconds,
            answers.parsed_seconds,
            firehose.seconds,
            file.cpu_seconds / firehose.cpu_seconds,
            answers.p50_ms,
            answers.p99_ms,
            answers.max_ms,
            answers.refused
        );
        rounds.push(Round {
            file,
            firehose,
            answers,
            ratio,
        });
    }
    let med = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let ratio = med(&|r| r.ratio);
    println!(
        "median: file {} events/s, firehose {} events/s, firehose / file {ratio:.3} (goal ≥ 0.7); answers p50 {:.1} ms, p99 {:.1} ms",
        thousands(med(&|r| r.file.events_per_sec())),
        thousands(med(&|r| r.firehose.events_per_sec())),
        med(&|r| r.answers.p50_ms),
        med(&|r| r.answers.p99_ms)
    );
    if let Some(path) = &args.json {
        let out = serde_json::json!({
            "records": input.lines,
            "bytes": input.bytes,
            "deliveries": deliveries.bodies.len(),
            "delivery_bytes": args.delivery_bytes,
            "concurrency": args.concurrency,
            "gzip": args.gzip,
            "rounds": rounds,
            "median_ratio": ratio,
        });
        fs::write(path, serde_json::to_vec_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

/// The input's lines as Firehose deliveries: one record per line (with its
/// newline, as WAF sends them), up to `delivery_bytes` raw bytes each.
fn encode(input: &Input, delivery_bytes: usize, gzip: bool) -> Result<Deliveries> {
    let reader = BufReader::new(File::open(&input.path)?);
    let mut bodies = Vec::new();
    let mut raw_bytes = 0u64;
    let mut records: Vec<String> = Vec::new();
    let mut size = 0usize;
    let mut flush = |records: &mut Vec<String>, size: &mut usize| -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let id = format!("bench-{:08}", bodies.len());
        let mut json = format!(
            "{{\"requestId\":\"{id}\",\"timestamp\":{},\"records\":[",
            now_millis()
        );
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            let _ = write!(json, "{{\"data\":\"{r}\"}}");
        }
        json.push_str("]}");
        let body = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(json.as_bytes())?;
            enc.finish()?
        } else {
            json.into_bytes()
        };
        bodies.push((id, body.into()));
        records.clear();
        *size = 0;
        Ok(())
    };
    for line in reader.split(b'\n') {
        let mut line = line?;
        if line.is_empty() {
            continue;
        }
        line.push(b'\n');
        if size + line.len() > delivery_bytes {
            flush(&mut records, &mut size)?;
        }
        size += line.len();
        raw_bytes += line.len() as u64;
        records.push(STANDARD.encode(&line));
    }
    flush(&mut records, &mut size)?;
    Ok(Deliveries { bodies, raw_bytes })
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A fresh run directory with lake and dlq, and the config's sink sections.
fn run_dir(data: &Path) -> Result<(tempfile::TempDir, String)> {
    let dir = tempfile::Builder::new()
        .prefix("firehose-run-")
        .tempdir_in(data)
        .with_context(|| format!("creating a run directory in {}", data.display()))?;
    let mut sinks = String::new();
    for section in ["lake", "dlq"] {
        fs::create_dir_all(dir.path().join(section))?;
        let url = format!("file://{}", dir.path().join(section).to_string_lossy());
        let _ = write!(sinks, "[{section}]\nurl = {}\n\n", toml_str(&url));
    }
    Ok((dir, sinks))
}

fn command(seclake: &Path, root: &Path, config: &str, args: &[&str]) -> Result<Command> {
    let config_path = root.join("seclake.toml");
    fs::write(&config_path, config)?;
    let mut cmd = Command::new(seclake);
    cmd.arg("run")
        .arg("--config")
        .arg(&config_path)
        .arg("--summary-json")
        .arg(root.join("summary.json"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(File::create(root.join("stdout.log"))?)
        .stderr(File::create(root.join("stderr.log"))?);
    Ok(cmd)
}

fn run_file(seclake: &Path, data: &Path, input: &Input, keep: bool) -> Result<Run> {
    let (dir, sinks) = run_dir(data)?;
    let config = format!(
        "[[source]]\ntype = \"file\"\nformat = \"waf\"\npath = {}\n\n{sinks}",
        toml_str(&input.path.to_string_lossy())
    );
    let (status, _, usage) = spawn_and_wait(&mut command(seclake, dir.path(), &config, &[])?)?;
    if !status.success() {
        let stderr = dir.path().join("stderr.log");
        return Err(run_failed(status, dir, &stderr));
    }
    let summary: RunSummary = read_json(&dir.path().join("summary.json"))?;
    if keep {
        println!("kept:   {}", dir.keep().display());
    }
    Ok(Run {
        seconds: summary.seconds,
        cpu_seconds: usage.cpu.as_secs_f64(),
        summary,
    })
}

fn run_firehose(
    seclake: &Path,
    data: &Path,
    input: &Input,
    deliveries: &Deliveries,
    args: &FirehoseArgs,
) -> Result<(Run, Answers)> {
    let (dir, sinks) = run_dir(data)?;
    let listen = free_port()?;
    let metrics = free_port()?;
    let buffer = dir.path().join("buffer");
    let config = format!(
        "[[source]]\ntype = \"firehose\"\nformat = \"waf\"\nlisten = \"127.0.0.1:{listen}\"\n\
         access_key = \"{ACCESS_KEY}\"\nbuffer_dir = {}\n\n{sinks}\
         [metrics]\naddress = \"127.0.0.1:{metrics}\"\n",
        toml_str(&buffer.to_string_lossy())
    );
    let mut cmd = command(seclake, dir.path(), &config, &[])?;
    let child = Killed(cmd.spawn().context("starting seclake")?);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
        ensure!(
            Instant::now() < deadline,
            "the endpoint did not listen within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let url = format!("http://127.0.0.1:{listen}/");
    let started = Instant::now();
    let mut answers = deliver(&url, deliveries, args)?;
    // Every record parsed (events + dead letters), then the lake commits on SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let parsed = http(
            metrics,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .map_or(0.0, |m| {
            sum_samples(&m, "seclake_events_total") + sum_samples(&m, "seclake_dead_letters_total")
        });
        if parsed as u64 >= input.lines {
            answers.parsed_seconds = started.elapsed().as_secs_f64();
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "only {parsed} of {} records parsed",
            input.lines
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    send_signal(pid, libc::SIGTERM)?;
    let (status, usage) = reap(child)?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let stderr = dir.path().join("stderr.log");
        return Err(run_failed(status, dir, &stderr));
    }
    let left = fs::read_dir(&buffer)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "fhd"))
        .count();
    ensure!(
        left == 0,
        "{left} deliveries still in the buffer after the run"
    );
    let summary: RunSummary = read_json(&dir.path().join("summary.json"))?;
    if args.keep {
        println!("kept:   {}", dir.keep().display());
    }
    Ok((
        Run {
            seconds,
            cpu_seconds: usage.cpu.as_secs_f64(),
            summary,
        },
        answers,
    ))
}

/// The summed value of every sample line of `name` in Prometheus text.
fn sum_samples(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sends every delivery, `concurrency` at a time, retrying any answer but
/// 200 after 100 ms as Firehose would; the answers' latencies.
fn deliver(url: &str, deliveries: &Deliveries, args: &FirehoseArgs) -> Result<Answers> {
    let cpu_before = self_cpu();
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let refused = AtomicU64::new(0);
    let latencies = std::sync::Mutex::new(Vec::with_capacity(deliveries.bodies.len()));
    let failure = std::sync::Mutex::new(None::<String>);
    let client = Arc::new(
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()?,
    );
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency {
            scope.spawn(|| {
                while let Some((id, body)) =
                    deliveries.bodies.get(next.fetch_add(1, Ordering::Relaxed))
                {
                    loop {
                        let mut request = client
                            .post(url)
                            .header("X-Amz-Firehose-Protocol-Version", "1.0")
                            .header("X-Amz-Firehose-Request-Id", id)
                            .header("X-Amz-Firehose-Access-Key", ACCESS_KEY)
                            .header("Content-Type", "application/json");
                        if args.gzip {
                            request = request.header("Content-Encoding", "gzip");
                        }
                        let sent = Instant::now();
                        let status = request
                            .body(reqwest::blocking::Body::from(body.clone()))
                            .send()
                            .map(|r| r.status().as_u16());
                        let took = sent.elapsed();
                        match status {
                            Ok(200) => {
                                latencies
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(took);
                                break;
                            }
                            Ok(413 | 400 | 401) | Err(_) => {
                                *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                                    Some(format!("delivery {id}: {status:?}"));
                                return;
                            }
                            Ok(_) => {
                                refused.fetch_add(1, Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(100));
                            }
                        }
                    }
                }
            });
        }
    });
    if let Some(failure) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
        bail!("the endpoint refused a delivery for good: {failure}");
    }
    let mut ms: Vec<f64> = latencies
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|d| d.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok(Answers {
        deliveries: ms.len(),
        sender_cpu_seconds: (self_cpu().saturating_sub(cpu_before)).as_secs_f64(),
        sending_seconds: started.elapsed().as_secs_f64(),
        parsed_seconds: 0.0,
        refused: refused.into_inner(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    })
}
