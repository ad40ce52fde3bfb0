//! WAL checkpoints on their own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold, and any checkpoint's writes to the database file, random
//! pages and a sync, make the writer's log syncs wait behind them on one
//! disk: under load, each one showed as a latency spike. So the log is
//! folded into the database when orders pause (no commit for a second), or
//! under sustained load once it outgrows `storage.wal_limit_mb`, by a
//! passive checkpoint that lets the writer go on appending meanwhile.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

/// How often the writer's progress and the log's size are looked at.
const TICK: Duration = Duration::from_secs(1);

pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path`; `commits` counts the
    /// writer's commits.
    pub(super) fn start(
        path: &Path,
        busy_timeout: Duration,
        wal_limit: u64,
        commits: Arc<AtomicU64>,
    ) -> rusqlite::Result<Checkpointer> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || {
                let mut seen = commits.load(Ordering::Relaxed);
                // The log may hold commits of an earlier run.
                let mut unfolded = true;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    let now = commits.load(Ordering::Relaxed);
                    let idle = now == seen;
                    seen = now;
                    unfolded |= !idle;
                    let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
                    metrics::gauge!("commerce_wal_bytes").set(size as f64);
                    if unfolded && (idle || size >= wal_limit) {
                        unfolded = !checkpoint(&conn, &wal);
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer { stop, thread })
    }

    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// One passive checkpoint; whether it copied the whole log.
fn checkpoint(conn: &Connection, wal: &Path) -> bool {
    let started = Instant::now();
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    metrics::histogram!("commerce_wal_checkpoint_seconds").record(started.elapsed().as_secs_f64());
    match done {
        Ok((log, copied)) => log == copied,
        Err(e) => {
            tracing::warn!("{}: checkpoint failed: {e}", wal.display());
            false
        }
    }
}
