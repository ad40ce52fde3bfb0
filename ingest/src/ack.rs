use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

/// How a batch ended once every sink let go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    /// Every sink made its share of the batch durable.
    Delivered,
    /// At least one sink failed: the source must not commit the batch.
    Failed,
}

/// A shared acknowledgement handle for one batch.
///
/// Clone it into every sink that takes any of the batch's records; a sink drops
/// its clone when those records are durable, or calls [`Ack::fail`] first when it
/// could not make them so. Dropping the last clone resolves the [`AckWaiter`].
/// Dropping a clone early is the one way to lose data, so hold it until the
/// write is durable (e.g. until the Parquet file it went into is committed).
#[derive(Debug, Clone)]
pub struct Ack(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    failed: AtomicBool,
    tx: Option<oneshot::Sender<AckStatus>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let status = if self.failed.load(Ordering::Acquire) {
                AckStatus::Failed
            } else {
                AckStatus::Delivered
            };
            // The source may have stopped listening (shutdown); nothing to do then.
            let _ = tx.send(status);
        }
    }
}

/// The source's end of an [`Ack`]: resolves when every clone has been dropped.
#[derive(Debug)]
pub struct AckWaiter(oneshot::Receiver<AckStatus>);

impl Ack {
    /// A new handle and the waiter that resolves when its last clone is dropped.
    pub fn new() -> (Ack, AckWaiter) {
        let (tx, rx) = oneshot::channel();
        let inner = Inner {
            failed: AtomicBool::new(false),
            tx: Some(tx),
        };
        (Ack(Arc::new(inner)), AckWaiter(rx))
    }

    /// A handle nobody waits for, for a sink that takes no part in
    /// acknowledgement: holding or failing it changes nothing.
    pub fn detached() -> Ack {
        Ack::new().0
    }

    /// Marks the batch as not delivered; the waiter will see [`AckStatus::Failed`].
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Release);
    }
}

impl AckWaiter {
    /// Waits for the batch's outcome. A handle lost without a status (a panic
    /// in a sink) counts as failed.
    pub async fn wait(self) -> AckStatus {
        self.0.await.unwrap_or(AckStatus::Failed)
    }

    /// Blocking form of [`AckWaiter::wait`], for sources that run on a thread.
    pub fn wait_blocking(self) -> AckStatus {
        self.0.blocking_recv().unwrap_or(AckStatus::Failed)
    }

    /// The outcome if the batch has finished, without waiting.
    pub fn try_status(&mut self) -> Option<AckStatus> {
        match self.0.try_recv() {
            Ok(status) => Some(status),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(AckStatus::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_delivered_only_after_the_last_clone_drops() {
        let (ack, mut waiter) = Ack::new();
        let sink_a = ack.clone();
        let sink_b = ack.clone();
        drop(ack);
        drop(sink_a);
        assert_eq!(waiter.try_status(), None);
        drop(sink_b);
        assert_eq!(waiter.try_status(), Some(AckStatus::Delivered));
    }

    #[test]
    fn one_failing_sink_fails_the_batch() {
        let (ack, waiter) = Ack::new();
        let sink = ack.clone();
        sink.fail();
        drop(sink);
        drop(ack);
        assert_eq!(waiter.wait_blocking(), AckStatus::Failed);
    }
}
