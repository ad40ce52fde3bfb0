//! Lanes and the fan-out: every sink runs on a thread of its own (one per
//! format for [`Lanes::PerFormat`] sinks), fed by a bounded queue, and the
//! [`Fanout`] hands each batch to every sink that takes something from it.
//! Encoding and uploads run beside parsing and scoring instead of after them.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use metrics::{counter, gauge};
use seclake_ingest::{Ack, Format};
use tokio::runtime::Handle;

use crate::contract::{Lanes, Sink, SinkBatch, SinkSpec, SinkStats, Takes};

/// Batches a lane may hold before the fan-out waits (backpressure).
const LANE_QUEUE: usize = 4;
/// How often an idle lane rolls what is due.
const IDLE_ROLL: Duration = Duration::from_millis(500);

/// Why the fan-out could not go on.
#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    /// Opening a sink failed.
    #[error("[{sink}]: {source}")]
    Open {
        /// The sink.
        sink: &'static str,
        /// What went wrong.
        source: Box<crate::SinkError>,
    },
    /// A sink stopped after an error (logged when it happened).
    #[error("the {sink} sink ({format}) stopped; see the error above")]
    Stopped {
        /// The sink.
        sink: &'static str,
        /// The lane's format, or `all`.
        format: String,
    },
    /// A sink failed; the first error of each sink, in config order.
    #[error("{sink} ({format}): {source}")]
    Failed {
        /// The sink.
        sink: &'static str,
        /// The lane's format, or `all`.
        format: String,
        /// What went wrong.
        source: Box<crate::SinkError>,
    },
    /// A lane's thread could not start or panicked.
    #[error("the {sink} sink's thread: {message}")]
    Thread {
        /// The sink.
        sink: &'static str,
        /// What happened.
        message: String,
    },
}

/// One sink's lanes.
struct Outlet {
    name: &'static str,
    takes: Takes,
    acknowledges: bool,
    per_format: bool,
    /// By format for per-format sinks; one entry under `None` otherwise.
    senders: BTreeMap<Option<Format>, Sender<SinkBatch>>,
    threads: Vec<JoinHandle<Result<SinkStats, FanoutError>>>,
}

/// Hands every batch to every sink that takes something from it, and
/// closes them all at the end.
pub struct Fanout {
    outlets: Vec<Outlet>,
}

impl Fanout {
    /// Opens every sink (one instance per format in `formats` for
    /// per-format sinks) and starts its lanes; async I/O runs on `rt`.
    pub fn start(
        specs: &[&dyn SinkSpec],
        formats: &[Format],
        rt: &Handle,
    ) -> Result<Fanout, FanoutError> {
        let mut formats = formats.to_vec();
        formats.sort_unstable();
        formats.dedup();
        let mut outlets = Vec::new();
        for spec in specs {
            let name = spec.name();
            let per_format = spec.lanes() == Lanes::PerFormat;
            let keys: Vec<Option<Format>> = if per_format {
                formats.iter().copied().map(Some).collect()
            } else {
                vec![None]
            };
            let mut outlet = Outlet {
                name,
                takes: spec.takes(),
                acknowledges: spec.acknowledges(),
                per_format,
                senders: BTreeMap::new(),
                threads: Vec::new(),
            };
            for key in keys {
                let sink = rt
                    .block_on(spec.open())
                    .map_err(|source| FanoutError::Open {
                        sink: name,
                        source: Box::new(source),
                    })?;
                let (tx, rx) = bounded(LANE_QUEUE);
                let label = key.map_or("all", Format::as_str);
                let lane_rt = rt.clone();
                let thread = std::thread::Builder::new()
                    .name(format!("{name}-{label}"))
                    .spawn(move || run_lane(name, label, sink, &rx, &lane_rt))
                    .map_err(|e| FanoutError::Thread {
                        sink: name,
                        message: e.to_string(),
                    })?;
                outlet.senders.insert(key, tx);
                outlet.threads.push(thread);
            }
            outlets.push(outlet);
        }
        Ok(Fanout { outlets })
    }

    /// Hands `batch` to every sink that takes something from it. Waits while
    /// an acknowledging sink's queue is full; never for one that does not
    /// acknowledge. The caller drops its own `batch.ack` afterwards, so the
    /// Ack resolves when the last sink that took the batch lets go.
    pub fn send(&self, batch: &SinkBatch) -> Result<(), FanoutError> {
        for outlet in &self.outlets {
            let wanted = match outlet.takes {
                Takes::Events => batch.events.num_rows() > 0,
                Takes::DeadLetters => !batch.dead_letters.is_empty(),
            };
            if !wanted {
                continue;
            }
            let stopped = || FanoutError::Stopped {
                sink: outlet.name,
                format: batch.format.to_string(),
            };
            let key = outlet.per_format.then_some(batch.format);
            let lane = outlet.senders.get(&key).ok_or_else(stopped)?;
            if outlet.acknowledges {
                lane.send(batch.clone()).map_err(|e| {
                    e.into_inner().ack.fail();
                    stopped()
                })?;
            } else {
                let detached = SinkBatch {
                    ack: Ack::detached(),
                    ..batch.clone()
                };
                match lane.try_send(detached) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        counter!("seclake_sink_skipped_batches_total", "sink" => outlet.name)
                            .increment(1);
                    }
                    Err(TrySendError::Disconnected(_)) => return Err(stopped()),
                }
            }
        }
        Ok(())
    }

    /// Closes every lane, waits for its sink to make everything durable, and
    /// returns what each sink wrote, by name. The first error is returned
    /// after every lane has stopped.
    pub fn finish(self) -> Result<BTreeMap<&'static str, SinkStats>, FanoutError> {
        let mut totals = BTreeMap::new();
        let mut first_error = None;
        for outlet in self.outlets {
            drop(outlet.senders);
            let total: &mut SinkStats = totals.entry(outlet.name).or_default();
            for thread in outlet.threads {
                match thread.join() {
                    Ok(Ok(stats)) => *total += stats,
                    Ok(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                    Err(_) => {
                        first_error.get_or_insert(FanoutError::Thread {
                            sink: outlet.name,
                            message: "panicked".into(),
                        });
                    }
                }
            }
        }
        first_error.map_or(Ok(totals), Err)
    }
}

fn run_lane(
    name: &'static str,
    format: &'static str,
    mut sink: Box<dyn Sink>,
    rx: &Receiver<SinkBatch>,
    rt: &Handle,
) -> Result<SinkStats, FanoutError> {
    let mut reported = SinkStats::default();
    let mut failure = None;
    loop {
        let step = match rx.recv_timeout(IDLE_ROLL) {
            Ok(batch) if failure.is_none() => rt.block_on(async {
                sink.write(&batch).await?;
                sink.roll_due().await
            }),
            // After a failure, only make sure nothing looks delivered.
            Ok(batch) => {
                batch.ack.fail();
                continue;
            }
            Err(RecvTimeoutError::Timeout) if failure.is_none() => rt.block_on(sink.roll_due()),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = step {
            tracing::error!("{name} ({format}): {e}");
            failure = Some(e);
        }
        report(name, format, sink.as_ref(), &mut reported);
    }
    let closed = rt.block_on(sink.close());
    report(name, format, sink.as_ref(), &mut reported);
    let failed = |source| FanoutError::Failed {
        sink: name,
        format: format.to_owned(),
        source: Box::new(source),
    };
    match (failure, closed) {
        (Some(e), _) | (None, Err(e)) => Err(failed(e)),
        (None, Ok(())) => Ok(sink.stats()),
    }
}

/// Publishes what the lane made durable since the last report.
fn report(name: &'static str, format: &'static str, sink: &dyn Sink, reported: &mut SinkStats) {
    let now = sink.stats();
    let labels = [("sink", name), ("format", format)];
    counter!("seclake_sink_rows_total", &labels).increment(now.rows - reported.rows);
    counter!("seclake_sink_files_total", &labels).increment(now.files - reported.files);
    counter!("seclake_sink_bytes_total", &labels).increment(now.bytes - reported.bytes);
    gauge!("seclake_sink_open_files", &labels).set(sink.open_files() as f64);
    *reported = now;
}
