//! Wires sources → parse/enrich workers → window scoring → sinks.
//!
//! ```text
//! source threads ──Batch──▶ workers (parse, GeoIP, ──▶ scoring stage ──SinkBatch──▶ fan-out to every sink
//!   (one per [[source]])      per-event rules)         (in order:                     (a lane thread each: the lake
//!        ▲                    N threads, any order      per-IP windows)                per format, dead letters)
//!        └──────────── Ack: resolves when every sink that took the batch made it durable
//! ```
//! Sources and sinks plug in through their contracts
//! ([`seclake_ingest::Source`], [`seclake_sink::Sink`]); nothing here names
//! a kind of either (docs/architecture.md).
//! Channels are bounded, so a slow sink slows the sources instead of filling
//! memory. The sink stage restores source order before the stateful window
//! rules, so scores do not depend on thread timing. Workers run at a lower
//! priority than the ordered stages after them (`pipeline.worker_nice`): when
//! those fall behind, the bounded queues fill and every stage before them
//! waits, leaving a core idle; run first, they take batches while still cached.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow};
use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use metrics::{counter, gauge};
use seclake_enrich::geoip::GeoIp;
use seclake_enrich::parse::{Enricher, Parsed};
use seclake_enrich::schema::SchemaError;
use seclake_enrich::scoring::WindowScorer;
use seclake_enrich::threat::ThreatEngine;
use seclake_ingest::{
    Batch, BatchSender, Finished, Format, Outstanding, Shutdown, Source, SourceContext, SourceError,
};
use seclake_sink::{Fanout, Rejected, SinkBatch, SinkSpec, SinkStats};
use serde::Serialize;

use crate::config::Config;

/// How a run behaves beyond its config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Tail every file source instead of stopping at EOF.
    pub follow: bool,
    /// Show a progress line on a terminal.
    pub progress: bool,
    /// Stop Kafka sources once every partition they are assigned is read to
    /// its end, instead of running until a shutdown signal (backfills, tests).
    pub until_caught_up: bool,
}

/// Counts for one format.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct FormatCounts {
    /// Records read.
    pub records: u64,
    /// Events handed to the sinks.
    pub events: u64,
    /// Records sent to the dead-letter output.
    pub dead_letters: u64,
    /// Bytes read.
    pub bytes: u64,
}

/// What a run did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RunSummary {
    /// Counts per format (`waf`, `falco`, `app`, `guardduty`), over every source.
    pub formats: BTreeMap<&'static str, FormatCounts>,
    /// What each sink made durable, by its name (`lake`, `dlq`).
    pub sinks: BTreeMap<&'static str, SinkStats>,
    /// Rows committed to the lake (`sinks.lake.rows`).
    pub lake_rows: u64,
    /// Files committed to the lake.
    pub lake_files: u64,
    /// Bytes committed to the lake.
    pub lake_bytes: u64,
    /// Dead letters committed (`sinks.dlq.rows`).
    pub dead_letters: u64,
    /// Batches a sink could not make durable (0 on success).
    pub undelivered_batches: u64,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl RunSummary {
    /// Events per second over the whole run.
    pub fn events_per_second(&self) -> f64 {
        self.lake_rows as f64 / self.seconds.max(1e-9)
    }

    /// Input megabytes per second over the whole run.
    pub fn mb_per_second(&self) -> f64 {
        let bytes: u64 = self.formats.values().map(|c| c.bytes).sum();
        bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// What a source thread hands back: its format and how reading went.
type SourceOutcome = (Format, Result<Finished, SourceError>);

/// Nothing left to commit: a source that failed before it handed anything out.
struct NothingOutstanding;

impl Outstanding for NothingOutstanding {
    fn settle(self: Box<Self>) -> u64 {
        0
    }
}

/// A parsed batch on its way to the sink stage, with its place in line.
struct Done {
    seq: u64,
    batch: Batch,
    parsed: Result<Parsed, SchemaError>,
}

/// Default `pipeline.worker_nice`. On two cores it cut the wall time of the
/// WAF bench by 3-6% (`benches/README.md`).
const DEFAULT_WORKER_NICE: i32 = 5;

/// Lowers the calling thread's scheduling priority by `nice` steps. Linux
/// keeps a nice value per thread; elsewhere this does nothing. Best effort:
/// failing costs only throughput, so it is logged as a warning, not returned.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: gettid and getpriority take no pointers and have no
        // preconditions; setpriority changes only this thread's nice value.
        let failed = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (current + nice).min(19)) != 0
        };
        if failed {
            let err = std::io::Error::last_os_error();
            tracing::warn!(%err, nice, "could not lower a worker's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Runs the pipeline until every source ends (or a shutdown signal), flushes
/// every sink and returns what it did.
pub fn run(cfg: &Config, opts: &RunOptions) -> Result<RunSummary> {
    run_with_sinks(cfg, opts, &[])
}

/// [`run`] with sinks beyond the config's (embedding, tests), after them.
pub fn run_with_sinks(
    cfg: &Config,
    opts: &RunOptions,
    extra_sinks: &[&dyn SinkSpec],
) -> Result<RunSummary> {
    let started = Instant::now();
    let sources: Vec<(Format, Box<dyn Source>)> = cfg
        .sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let spec = source.spec();
            let built = spec.build().with_context(|| format!("source[{i}]"))?;
            Ok((spec.format(), built))
        })
        .collect::<Result<_>>()?;
    let geo = GeoIp::open(&cfg.geoip).context("[geoip]")?.map(Arc::new);
    let threat = Arc::new(ThreatEngine::from_config(&cfg.threat).context("[threat]")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("seclake-io")
        .enable_all()
        .build()
        .context("starting the I/O runtime")?;
    let formats: Vec<Format> = sources.iter().map(|(format, _)| *format).collect();
    let mut sinks = cfg.sinks();
    sinks.extend_from_slice(extra_sinks);
    let fanout = Fanout::start(&sinks, &formats, rt.handle())?;

    let shutdown = Shutdown::new();
    rt.spawn(crate::signals::watch(shutdown.clone(), geo.clone()));
    if let Some(addr) = cfg.metrics.address {
        let server = rt
            .block_on(crate::metrics::serve(addr))
            .with_context(|| format!("[metrics] address {addr}"))?;
        rt.spawn(server);
    }

    let workers = cfg.pipeline.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    });
    let queue = cfg.pipeline.queue.unwrap_or(4 * workers);
    let (batch_tx, batch_rx) = bounded::<Batch>(queue);
    let (done_tx, done_rx) = bounded::<Done>(queue);

    let context = SourceContext {
        out: BatchSender::new(batch_tx),
        shutdown: shutdown.clone(),
        runtime: rt.handle().clone(),
        until_caught_up: opts.until_caught_up,
        follow: opts.follow,
    };
    let source_threads: Vec<JoinHandle<SourceOutcome>> = sources
        .into_iter()
        .enumerate()
        .map(|(i, (format, source))| {
            let ctx = context.clone();
            std::thread::Builder::new()
                .name(format!("source-{i}"))
                .spawn(move || {
                    let outcome = source.run(&ctx);
                    if outcome.is_err() {
                        // The others stop too: a pipeline missing a source
                        // should not look healthy.
                        ctx.shutdown.trigger();
                    }
                    (format, outcome)
                })
                .context("spawning a source thread")
        })
        .collect::<Result<_>>()?;
    drop(context);

    let worker_nice = cfg.pipeline.worker_nice.unwrap_or(DEFAULT_WORKER_NICE);
    let intake = Arc::new(Mutex::new((batch_rx, 0u64)));
    let worker_handles: Vec<JoinHandle<()>> = (0..workers)
        .map(|i| {
            let intake = Arc::clone(&intake);
            let done_tx = done_tx.clone();
            let mut enricher = Enricher::new(
                geo.as_ref(),
                Arc::clone(&threat),
                cfg.pipeline.time_window(),
            );
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    lower_thread_priority(worker_nice);
                    loop {
                        // Taking a batch and its sequence number under one lock keeps
                        // each source's batches numbered in the order it sent them.
                        let next = {
                            let mut guard = intake.lock().unwrap_or_else(|e| e.into_inner());
                            let (rx, seq) = &mut *guard;
                            rx.recv().ok().map(|batch| {
                                *seq += 1;
                                (*seq - 1, batch)
                            })
                        };
                        let Some((seq, batch)) = next else { break };
                        let ingest_ts = chrono::Utc::now().timestamp_micros();
                        let parsed = enricher.parse_batch(&batch, ingest_ts);
                        if done_tx.send(Done { seq, batch, parsed }).is_err() {
                            break;
                        }
                    }
                })
                .context("spawning a worker thread")
        })
        .collect::<Result<_>>()?;
    drop(done_tx);

    let mut stage = ScoringStage {
        scorer: WindowScorer::new(Arc::clone(&threat)),
        fanout: Some(fanout),
        sinks: BTreeMap::new(),
        counts: BTreeMap::new(),
        progress: Progress::new(opts.progress),
        shutdown: shutdown.clone(),
    };
    let sink_result = stage.run(&done_rx);

    for handle in worker_handles {
        handle
            .join()
            .map_err(|_| anyhow!("a worker thread panicked"))?;
    }
    let mut summary = RunSummary::default();
    let mut source_error = None;
    for handle in source_threads {
        let (format, outcome) = handle
            .join()
            .map_err(|_| anyhow!("a source thread panicked"))?;
        let (stats, outstanding) = match outcome {
            Ok(Finished { stats, outstanding }) => (Some(stats), outstanding),
            Err(e) => {
                source_error.get_or_insert(e);
                (None, Box::new(NothingOutstanding) as Box<dyn Outstanding>)
            }
        };
        summary.undelivered_batches += outstanding.settle();
        if let Some(s) = stats {
            let c = summary.formats.entry(format.as_str()).or_default();
            c.records += s.records;
            c.bytes += s.bytes;
        }
    }
    stage.progress.finish();
    sink_result?;
    if let Some(e) = source_error {
        return Err(e).context("a source failed");
    }
    for (format, counts) in &stage.counts {
        let c = summary.formats.entry(format.as_str()).or_default();
        c.events = counts.events;
        c.dead_letters = counts.dead_letters;
    }
    let lake = stage.sinks.get("lake").copied().unwrap_or_default();
    summary.lake_rows = lake.rows;
    summary.lake_files = lake.files;
    summary.lake_bytes = lake.bytes;
    summary.dead_letters = stage.sinks.get("dlq").map_or(0, |s| s.rows);
    summary.sinks = std::mem::take(&mut stage.sinks);
    summary.seconds = started.elapsed().as_secs_f64();
    if summary.undelivered_batches > 0 {
        return Err(anyhow!(
            "{} batches were not durably written; see the errors above",
            summary.undelivered_batches
        ));
    }
    Ok(summary)
}

/// The ordered stage: per-IP window scoring in source order, then the
/// fan-out to the sinks.
struct ScoringStage {
    scorer: WindowScorer,
    /// Taken when the stage finishes, to close the sinks and collect their stats.
    fanout: Option<Fanout>,
    /// What each sink made durable, once they are closed.
    sinks: BTreeMap<&'static str, SinkStats>,
    counts: BTreeMap<Format, FormatCounts>,
    progress: Progress,
    shutdown: Shutdown,
}

impl ScoringStage {
    /// Takes parsed batches in sequence order until the workers finish, then
    /// closes every sink.
    fn run(&mut self, rx: &Receiver<Done>) -> Result<()> {
        let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let mut failure: Option<anyhow::Error> = None;
        loop {
            let done = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(done) => done,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            waiting.insert(done.seq, done);
            while let Some(done) = waiting.remove(&next) {
                next += 1;
                if failure.is_some() {
                    // Never let an unwritten batch look delivered.
                    done.batch.ack.fail();
                    continue;
                }
                if let Err(e) = self.process(done) {
                    tracing::error!("{e:#}; stopping the sources");
                    self.shutdown.trigger();
                    failure.get_or_insert(e);
                }
            }
            gauge!("seclake_reorder_waiting_batches").set(waiting.len() as f64);
        }
        for (_, done) in waiting {
            done.batch.ack.fail();
        }
        let closed = match self.fanout.take() {
            Some(fanout) => fanout
                .finish()
                .map(|stats| self.sinks = stats)
                .map_err(anyhow::Error::from),
            None => Ok(()),
        };
        match failure {
            Some(e) => Err(e),
            None => closed,
        }
    }

    fn process(&mut self, done: Done) -> Result<()> {
        let Done { batch, parsed, .. } = done;
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                batch.ack.fail();
                return Err(e).context("building a record batch");
            }
        };
        let format = batch.format;
        let events = match self.scorer.apply(&parsed) {
            Ok(events) => events,
            Err(e) => {
                batch.ack.fail();
                return Err(e).context("scoring");
            }
        };
        let rejected: Arc<[Rejected]> = parsed
            .rejects
            .iter()
            .map(|r| Rejected {
                position: batch.position(r.index),
                reason: r.reason.to_string(),
                raw: batch.record_bytes(r.index),
            })
            .collect();
        let out = SinkBatch {
            format,
            events,
            dead_letters: rejected,
            ack: batch.ack.clone(),
        };
        let fanout = self
            .fanout
            .as_ref()
            .ok_or_else(|| anyhow!("the sinks are closed"))?;
        fanout.send(&out)?;
        let events = out.events.num_rows() as u64;
        let rejects = out.dead_letters.len() as u64;
        drop(out);
        let c = self.counts.entry(format).or_default();
        c.events += events;
        c.dead_letters += rejects;
        let label = format.as_str();
        counter!("seclake_records_total", "format" => label).increment(batch.len() as u64);
        counter!("seclake_bytes_total", "format" => label).increment(batch.data.len() as u64);
        counter!("seclake_events_total", "format" => label).increment(events);
        if rejects > 0 {
            counter!("seclake_dead_letters_total", "format" => label).increment(rejects);
        }
        self.progress.update(&self.counts);
        Ok(())
    }
}

/// A progress line on stderr when it is a terminal; nothing otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let bar = enabled.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last: Instant::now(),
        }
    }

    fn update(&mut self, counts: &BTreeMap<Format, FormatCounts>) {
        let Some(bar) = &self.bar else { return };
        if self.last.elapsed() < Duration::from_millis(200) {
            return;
        }
        self.last = Instant::now();
        let events: u64 = counts.values().map(|c| c.events).sum();
        let dead: u64 = counts.values().map(|c| c.dead_letters).sum();
        let rate = events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{events} events, {dead} dead letters, {rate:.0} events/s"
        ));
        bar.tick();
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
