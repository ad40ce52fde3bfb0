//! Lake lanes: one thread per source format that encodes and uploads its
//! Parquet files, so encoding runs beside parsing and scoring instead of
//! after them, and formats encode in parallel.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use arrow::array::RecordBatch;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use metrics::{counter, gauge};
use seclake_ingest::{Ack, Format};
use seclake_sink::{LakeConfig, LakeStats, LakeWriter};
use tokio::runtime::Handle;

/// Batches a lane may hold before the scoring stage waits (backpressure).
const LANE_QUEUE: usize = 4;

/// The sending ends of every lane, and the threads behind them.
pub struct Lanes {
    senders: BTreeMap<Format, Sender<(RecordBatch, Ack)>>,
    threads: Vec<JoinHandle<Result<LakeStats>>>,
}

impl Lanes {
    /// Opens one lake writer per format and starts its thread; async I/O runs
    /// on `rt`.
    pub fn start(cfg: &LakeConfig, formats: &[Format], rt: &Handle) -> Result<Lanes> {
        let mut senders = BTreeMap::new();
        let mut threads = Vec::new();
        for &format in formats {
            if senders.contains_key(&format) {
                continue;
            }
            let writer = rt.block_on(LakeWriter::open(cfg)).context("[lake]")?;
            let (tx, rx) = bounded(LANE_QUEUE);
            let rt = rt.clone();
            let thread = std::thread::Builder::new()
                .name(format!("lake-{format}"))
                .spawn(move || run_lane(format, writer, &rx, &rt))
                .context("spawning a lake thread")?;
            senders.insert(format, tx);
            threads.push(thread);
        }
        Ok(Lanes { senders, threads })
    }

    /// Hands a scored batch to its format's lane; the lane holds `ack` until
    /// the file the rows went into is committed.
    pub fn send(&self, format: Format, batch: RecordBatch, ack: &Ack) -> Result<()> {
        let lane = self
            .senders
            .get(&format)
            .ok_or_else(|| anyhow!("no lake lane for {format}"))?;
        lane.send((batch, ack.clone())).map_err(|e| {
            e.into_inner().1.fail();
            anyhow!("the {format} lake writer stopped; see the error above")
        })
    }

    /// Closes every lane, waits for its files to be committed, and sums what
    /// they wrote. The first lane error is returned after all have stopped.
    pub fn finish(self) -> Result<LakeStats> {
        drop(self.senders);
        let mut total = LakeStats::default();
        let mut first_error = None;
        for thread in self.threads {
            match thread.join() {
                Ok(Ok(s)) => {
                    total.rows += s.rows;
                    total.files += s.files;
                    total.bytes += s.bytes;
                }
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow!("a lake thread panicked"));
                }
            }
        }
        first_error.map_or(Ok(total), Err)
    }
}

fn run_lane(
    format: Format,
    mut writer: LakeWriter,
    rx: &Receiver<(RecordBatch, Ack)>,
    rt: &Handle,
) -> Result<LakeStats> {
    let mut reported = LakeStats::default();
    let mut failure = None;
    loop {
        let step = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((batch, ack)) if failure.is_none() => rt.block_on(async {
                writer.write(format, &batch, &ack).await?;
                writer.roll_due().await.map(drop)
            }),
            // After a failure, only make sure nothing looks delivered.
            Ok((_, ack)) => {
                ack.fail();
                continue;
            }
            Err(RecvTimeoutError::Timeout) if failure.is_none() => {
                rt.block_on(writer.roll_due()).map(drop)
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = step {
            tracing::error!("lake ({format}): {e}");
            failure = Some(e);
        }
        report(format, &writer, &mut reported);
    }
    let closed = rt.block_on(writer.close_all());
    report(format, &writer, &mut reported);
    match (failure, closed) {
        (Some(e), _) | (None, Err(e)) => Err(e).with_context(|| format!("lake ({format})")),
        (None, Ok(())) => Ok(writer.stats()),
    }
}

/// Publishes what the lane committed since the last report.
fn report(format: Format, writer: &LakeWriter, reported: &mut LakeStats) {
    let now = writer.stats();
    let source = format.as_str();
    counter!("seclake_lake_rows_total", "source" => source).increment(now.rows - reported.rows);
    counter!("seclake_lake_files_total", "source" => source).increment(now.files - reported.files);
    counter!("seclake_lake_bytes_total", "source" => source).increment(now.bytes - reported.bytes);
    gauge!("seclake_lake_open_files", "source" => source).set(writer.open_files() as f64);
    *reported = now;
}
