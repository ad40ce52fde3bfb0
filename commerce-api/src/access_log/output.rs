//! Where access-log lines go: stdout through a bounded buffer that a writer
//! thread empties every few milliseconds, and Kafka through librdkafka's own
//! bounded queue. Neither blocks a request: a line that finds its queue full
//! is dropped and counted in `commerce_access_log_dropped_total{output}`.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::config::{AccessLogConfig, KafkaConfig};

/// The outputs' failures at start.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// librdkafka refused the producer config.
    #[error("kafka: cannot create the producer: {0}")]
    Kafka(#[from] KafkaError),
    /// The stdout writer thread could not start.
    #[error("cannot start the stdout writer: {0}")]
    Thread(#[from] std::io::Error),
}

/// How often the stdout writer empties the buffer. Lines are not handed over
/// one by one: waking a thread per request would cost more than the request.
const STDOUT_INTERVAL: Duration = Duration::from_millis(20);

/// Lines waiting for stdout, newline-terminated.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    lines: usize,
    closed: bool,
}

/// The stdout buffer, its bound in lines, and the thread that empties it
/// (taken at close).
struct StdoutWriter {
    pending: Arc<(Mutex<Pending>, Condvar)>,
    max_lines: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The access log's outputs.
pub struct Outputs {
    stdout: Option<StdoutWriter>,
    kafka: Option<(ThreadedProducer<Counting>, String)>,
}

impl Outputs {
    /// Starts the outputs `config` asks for.
    pub fn start(log: &AccessLogConfig, kafka: &KafkaConfig) -> Result<Outputs, OutputError> {
        let stdout = if log.stdout {
            let pending = Arc::new((Mutex::new(Pending::default()), Condvar::new()));
            let shared = Arc::clone(&pending);
            let thread = std::thread::Builder::new()
                .name("access-log-stdout".into())
                .spawn(move || write_stdout(&shared))?;
            Some(StdoutWriter {
                pending,
                max_lines: log.queue,
                thread: Mutex::new(Some(thread)),
            })
        } else {
            None
        };
        let kafka = match &kafka.brokers {
            Some(brokers) => {
                let mut client = ClientConfig::new();
                client
                    .set("bootstrap.servers", brokers)
                    .set("client.id", "commerce-api")
                    .set("queue.buffering.max.messages", kafka.queue.to_string())
                    .set("linger.ms", "20")
                    .set("compression.type", "lz4")
                    .set("acks", "all")
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", "300000");
                for (key, value) in &kafka.properties {
                    client.set(key, value);
                }
                let producer: ThreadedProducer<Counting> = client.create_with_context(Counting)?;
                check_topic(&producer, brokers, &kafka.topic);
                Some((producer, kafka.topic.clone()))
            }
            None => None,
        };
        Ok(Outputs { stdout, kafka })
    }

    /// Hands one line (without its newline) to every output.
    pub fn send(&self, line: Vec<u8>) {
        if let Some((producer, topic)) = &self.kafka {
            let record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic).payload(&line[..]);
            if let Err((e, _)) = producer.send(record) {
                let reason = match e {
                    KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => "full",
                    _ => "refused",
                };
                metrics::counter!("commerce_access_log_dropped_total", "output" => "kafka", "reason" => reason)
                    .increment(1);
            }
        }
        if let Some(out) = &self.stdout {
            let reason = match out.pending.0.lock() {
                Ok(mut p) if !p.closed && p.lines < out.max_lines => {
                    p.bytes.extend_from_slice(&line);
                    p.bytes.push(b'\n');
                    p.lines += 1;
                    return;
                }
                Ok(p) if !p.closed => "full",
                _ => "closed",
            };
            metrics::counter!("commerce_access_log_dropped_total", "output" => "stdout", "reason" => reason)
                .increment(1);
        }
    }

    /// Writes out what is queued: stdout to the end, Kafka for up to
    /// `timeout`. Returns the lines Kafka still held. Lines sent later are
    /// dropped and counted.
    pub fn close(&self, timeout: Duration) -> usize {
        if let Some(out) = &self.stdout {
            if let Ok(mut p) = out.pending.0.lock() {
                p.closed = true;
            }
            out.pending.1.notify_one();
            let thread = out.thread.lock().ok().and_then(|mut t| t.take());
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
        match &self.kafka {
            Some((producer, _)) => {
                if let Err(e) = producer.flush(timeout) {
                    tracing::warn!("kafka: access-log lines not delivered at shutdown: {e}");
                }
                usize::try_from(producer.in_flight_count()).unwrap_or(0)
            }
            None => 0,
        }
    }
}

/// Says at start, rather than through a slow trickle of undelivered lines,
/// that the topic is missing or the brokers are not reachable yet.
fn check_topic(producer: &ThreadedProducer<Counting>, brokers: &str, topic: &str) {
    match producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(3))
    {
        Ok(metadata) => {
            let missing = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .is_none_or(|t| t.error().is_some() || t.partitions().is_empty());
            if missing {
                tracing::warn!(
                    "kafka: topic {topic:?} does not exist on {brokers} (key `kafka.topic`); \
                     access-log lines will be counted as undelivered until it does"
                );
            }
        }
        Err(e) => tracing::warn!(
            "kafka: {brokers} not reachable yet ({e}); access-log lines queue until it is"
        ),
    }
}

fn write_stdout(pending: &(Mutex<Pending>, Condvar)) {
    let (lock, wake) = pending;
    let mut out = std::io::stdout();
    let mut spare = Vec::new();
    loop {
        let (bytes, lines, closed) = {
            let Ok(guard) = lock.lock() else { return };
            let Ok((mut p, _)) = wake.wait_timeout_while(guard, STDOUT_INTERVAL, |p| !p.closed)
            else {
                return;
            };
            let lines = std::mem::take(&mut p.lines);
            (
                std::mem::replace(&mut p.bytes, std::mem::take(&mut spare)),
                lines,
                p.closed,
            )
        };
        if !bytes.is_empty() && out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
            // stdout is gone (a closed pipe): count what is lost and go on,
            // so requests never notice.
            metrics::counter!("commerce_access_log_dropped_total", "output" => "stdout", "reason" => "closed")
                .increment(lines as u64);
        }
        spare = bytes;
        spare.clear();
        if closed {
            return;
        }
    }
}

/// Counts lines Kafka did not take after librdkafka's retries.
pub struct Counting;

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, message)) = result {
            metrics::counter!("commerce_access_log_dropped_total", "output" => "kafka", "reason" => "undelivered")
                .increment(1);
            tracing::warn!(
                topic = message.topic(),
                "kafka: an access-log line was not delivered: {e}"
            );
        }
    }
}
