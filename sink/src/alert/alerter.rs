//! The [`Alerter`]: a queue and a delivery task per output. Sending never
//! waits; each task takes whatever is queued when it is ready into one
//! message, at most one message a second per output.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::counter;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Alert;
use super::config::{AlertOutputs, Output, SnsOutput};
use super::message;
use super::slack::Slack;
use super::sns::Sns;
use crate::SinkError;

/// Alerts queued per output; past it new ones are dropped and counted.
const QUEUE: usize = 10_000;
/// Most alerts taken into one message; the rest wait for the next one.
const MAX_BATCH: usize = 5_000;
/// Least time between two messages to one output: Slack takes about one
/// message a second per webhook, and alerts arriving meanwhile share the
/// next message instead of flooding the channel.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// How long [`Alerter::close`] waits for the queues to be sent.
const CLOSE_DEADLINE: Duration = Duration::from_secs(20);

/// Why a message did not get through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DeliveryError {
    /// Slack answered with a final error (a 4xx other than 429).
    #[error("Slack refused the message: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The start of Slack's answer (`invalid_payload`, `no_service`).
        body: String,
    },
    /// Slack kept failing until the retries ran out.
    #[error("no answer from Slack after {attempts} attempts; the last: {last}")]
    GaveUp {
        /// Requests made.
        attempts: u32,
        /// What the last one got.
        last: String,
    },
    /// SNS refused or could not be reached.
    #[error("SNS Publish failed: {0}")]
    Sns(String),
}

/// Alerts counted by what became of them, over every output.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AlertStats {
    /// In messages that got through.
    pub sent: u64,
    /// In messages that were refused or ran out of retries.
    pub failed: u64,
    /// Dropped because their output's queue was full.
    pub dropped: u64,
    /// Messages that got through.
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
}

/// Hands alerts to the outputs' delivery tasks.
pub struct Alerter {
    lanes: Vec<Lane>,
    counts: Arc<Counts>,
}

struct Lane {
    output: Output,
    queue: mpsc::Sender<Alert>,
    task: JoinHandle<()>,
    /// Queued or being sent.
    pending: Arc<AtomicU64>,
}

/// Where a lane delivers.
enum Target {
    Slack(Slack),
    /// Connected by the task itself: loading AWS credentials is async.
    Sns(SnsOutput),
}

impl Alerter {
    /// Starts a delivery task per configured output on the current tokio
    /// runtime; nothing is sent until an alert comes.
    pub fn start(outputs: &AlertOutputs) -> Result<Alerter, SinkError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| SinkError::Task("alerts must start on a tokio runtime".into()))?;
        outputs.check()?;
        let counts = Arc::new(Counts::default());
        let mut targets = Vec::new();
        if let Some(slack) = &outputs.slack {
            targets.push((Output::Slack, Target::Slack(Slack::new(slack)?)));
        }
        if let Some(sns) = &outputs.sns {
            targets.push((Output::Sns, Target::Sns(sns.clone())));
        }
        let lanes = targets
            .into_iter()
            .map(|(output, target)| {
                let (queue, inbox) = mpsc::channel(QUEUE);
                let pending = Arc::new(AtomicU64::new(0));
                let task = runtime.spawn(deliver(
                    output,
                    target,
                    inbox,
                    Arc::clone(&pending),
                    Arc::clone(&counts),
                ));
                Lane {
                    output,
                    queue,
                    task,
                    pending,
                }
            })
            .collect();
        Ok(Alerter { lanes, counts })
    }

    /// Queues `alert` for each of `outputs` without waiting; when an
    /// output's queue is full the alert is dropped for it and counted
    /// (`seclake_alerts_dropped_total`).
    pub fn send(&self, alert: Alert, outputs: &[Output]) {
        let lanes: Vec<&Lane> = self
            .lanes
            .iter()
            .filter(|l| outputs.contains(&l.output))
            .collect();
        let mut alert = Some(alert);
        for (i, lane) in lanes.iter().enumerate() {
            let one = if i + 1 == lanes.len() {
                alert.take()
            } else {
                alert.clone()
            };
            let Some(one) = one else { break };
            lane.pending.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = lane.queue.try_send(one) {
                lane.pending.fetch_sub(1, Ordering::Relaxed);
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                counter!("seclake_alerts_dropped_total", "output" => lane.output.as_str())
                    .increment(1);
                if matches!(e, TrySendError::Closed(_)) {
                    tracing::warn!("alerts: the {} task stopped", lane.output.as_str());
                }
            }
        }
    }

    /// What became of the alerts so far.
    pub fn stats(&self) -> AlertStats {
        self.counts.snapshot()
    }

    /// Sends what is queued, waiting at most 20 s in all; what is still
    /// unsent then is counted as failed.
    pub async fn close(self) -> AlertStats {
        let deadline = Instant::now() + CLOSE_DEADLINE;
        for lane in self.lanes {
            let Lane {
                output,
                queue,
                mut task,
                pending,
            } = lane;
            drop(queue);
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let lost = pending.swap(0, Ordering::Relaxed);
                self.counts.failed.fetch_add(lost, Ordering::Relaxed);
                counter!("seclake_alerts_failed_total", "output" => output.as_str())
                    .increment(lost);
                tracing::warn!(
                    "alerts: {lost} alert(s) to {} not sent within {CLOSE_DEADLINE:?} of closing",
                    output.as_str()
                );
            }
        }
        self.counts.snapshot()
    }
}

impl Counts {
    fn snapshot(&self) -> AlertStats {
        AlertStats {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// One output's delivery task: takes what is queued into a message, sends
/// it, and waits [`MIN_INTERVAL`] before the next; ends when the queue is
/// closed and empty.
async fn deliver(
    output: Output,
    target: Target,
    mut inbox: mpsc::Receiver<Alert>,
    pending: Arc<AtomicU64>,
    counts: Arc<Counts>,
) {
    let label = output.as_str();
    let sns = match &target {
        Target::Sns(cfg) => match Sns::connect(cfg).await {
            Ok(sns) => Some(sns),
            Err(e) => {
                tracing::error!("alerts: SNS: {e}; alerts to it are lost");
                None
            }
        },
        Target::Slack(_) => None,
    };
    let mut last: Option<Instant> = None;
    while let Some(first) = inbox.recv().await {
        if let Some(at) = last {
            tokio::time::sleep_until(at + MIN_INTERVAL).await;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(alert) => batch.push(alert),
                Err(_) => break,
            }
        }
        last = Some(Instant::now());
        let n = batch.len() as u64;
        let delivered = match (&target, &sns) {
            (Target::Slack(slack), _) => slack.post(&message::slack(&batch)).await,
            (Target::Sns(_), Some(sns)) => sns.publish(message::sns(&batch)).await,
            (Target::Sns(_), None) => Err(DeliveryError::Sns("no client".into())),
        };
        match delivered {
            Ok(bytes) => {
                counts.sent.fetch_add(n, Ordering::Relaxed);
                counts.messages.fetch_add(1, Ordering::Relaxed);
                counts.bytes.fetch_add(bytes, Ordering::Relaxed);
                counter!("seclake_alerts_sent_total", "output" => label).increment(n);
            }
            Err(e) => {
                counts.failed.fetch_add(n, Ordering::Relaxed);
                counter!("seclake_alerts_failed_total", "output" => label).increment(n);
                tracing::warn!("alerts: {n} alert(s) to {label} lost: {e}");
            }
        }
        pending.fetch_sub(n, Ordering::Relaxed);
    }
}
