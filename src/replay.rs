//! `seclake replay`: NDJSON files (the generator's output among them) into a
//! Kafka topic, a Kinesis stream or a Firehose delivery stream at a chosen
//! rate, for tests, backfills and load tests. The Kinesis and Firehose senders
//! are in `replay/kinesis.rs` and `replay/firehose.rs`, what they share in
//! `replay/aws.rs`.

mod aws;
mod firehose;
mod kinesis;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use seclake_ingest::Flaw;
use seclake_ingest::file::LineReader;
use serde::Serialize;

pub use aws::AwsOptions;
pub use firehose::{FirehoseOptions, replay_firehose};
pub use kinesis::{KinesisOptions, replay_kinesis};

/// What to send to which Kafka topic.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Bootstrap brokers.
    pub brokers: String,
    /// The topic; created with `partitions` when missing.
    pub topic: String,
    /// Partitions of a topic this creates.
    pub partitions: i32,
    /// Replication factor of a topic this creates.
    pub replication: i32,
    /// Records per second; `None` sends as fast as the broker takes them.
    pub rate: Option<f64>,
    /// NDJSON files, plain or `.gz`, sent in this order, line by line.
    pub files: Vec<PathBuf>,
    /// librdkafka producer properties (TLS, SASL, compression, ...).
    pub producer_options: Vec<(String, String)>,
    /// Show a progress bar.
    pub progress: bool,
}

/// What a replay sent, to Kafka, Kinesis or Firehose.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Lines (user records) the broker or stream accepted.
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Lines refused, timed out or given up on.
    pub failed: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// `records` over `seconds`.
    pub records_per_second: f64,
    /// Where they went, and what only that target counts.
    #[serde(flatten)]
    pub target: ReplayTarget,
}

/// Where a replay sent its records; `"to": "kafka"`, `"kinesis"` or
/// `"firehose"` in JSON.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "to", rename_all = "lowercase")]
pub enum ReplayTarget {
    /// A Kafka topic.
    Kafka {
        /// The topic.
        topic: String,
        /// The topic's partition count.
        partitions: i32,
        /// The topic was created by this replay.
        created_topic: bool,
    },
    /// A Kinesis data stream.
    Kinesis {
        /// The stream's name or ARN, as given.
        stream: String,
        /// Its open shards, when DescribeStreamSummary was allowed.
        shards: Option<i32>,
        /// Kinesis records accepted: a KPL aggregate counts once.
        kinesis_records: u64,
        /// The lines went as KPL aggregated records.
        aggregated: bool,
        /// Kinesis records sent again after a refusal or a failed call.
        retried: u64,
    },
    /// A Firehose delivery stream.
    Firehose {
        /// The delivery stream's name.
        delivery_stream: String,
        /// PutRecordBatch calls made, retries included.
        calls: u64,
        /// Records sent again after a refusal or a failed call.
        retried: u64,
    },
}

impl ReplayReport {
    fn new(records: u64, bytes: u64, failed: u64, started: Instant, target: ReplayTarget) -> Self {
        let seconds = started.elapsed().as_secs_f64();
        ReplayReport {
            records,
            bytes,
            failed,
            seconds,
            records_per_second: records as f64 / seconds.max(1e-9),
            target,
        }
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = self.bytes as f64 / 1e6;
        write!(f, "sent {} records ({mb:.1} MB) to ", self.records)?;
        match &self.target {
            ReplayTarget::Kafka {
                topic,
                partitions,
                created_topic,
            } => {
                let created = if *created_topic { ", created" } else { "" };
                write!(f, "{topic} ({partitions} partitions{created})")?;
            }
            ReplayTarget::Kinesis {
                stream,
                shards,
                kinesis_records,
                aggregated,
                ..
            } => {
                write!(f, "Kinesis stream {stream}")?;
                if let Some(shards) = shards {
                    write!(f, " ({shards} shards)")?;
                }
                let what = if *aggregated {
                    "KPL aggregates"
                } else {
                    "Kinesis records"
                };
                write!(f, " as {kinesis_records} {what}")?;
            }
            ReplayTarget::Firehose {
                delivery_stream,
                calls,
                ..
            } => {
                write!(
                    f,
                    "Firehose delivery stream {delivery_stream} in {calls} PutRecordBatch calls"
                )?;
            }
        }
        write!(
            f,
            " in {:.1} s: {:.0} records/s, {:.1} MB/s; ",
            self.seconds,
            self.records_per_second,
            mb / self.seconds.max(1e-9)
        )?;
        if let ReplayTarget::Kinesis { retried, .. } | ReplayTarget::Firehose { retried, .. } =
            &self.target
        {
            write!(f, "{retried} retried, ")?;
        }
        write!(f, "{} failed", self.failed)
    }
}

pub use seclake_ingest::generate::parse_rate;

/// Paces a replay to `rate` records per second from its start.
struct Pacer {
    rate: Option<f64>,
    start: Instant,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            rate,
            start: Instant::now(),
        }
    }

    /// How long to wait before the record after the first `sent`; `None`
    /// when not ahead of the rate (or there is none).
    fn ahead(&self, sent: u64) -> Option<Duration> {
        let rate = self.rate?;
        let due = Duration::from_secs_f64(sent as f64 / rate);
        due.checked_sub(self.start.elapsed())
            .filter(|d| !d.is_zero())
    }
}

/// The replay's spinner (records, rate, current file), when `show`.
fn progress_bar(show: bool) -> Option<indicatif::ProgressBar> {
    show.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed_precise} {human_pos} records ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    })
}

/// Calls `each(file, line number, line, flaw)` for every non-blank line of
/// the files (plain or `.gz`), in order. A line over `max_record` bytes comes
/// cut to that length with [`Flaw::Truncated`].
fn for_each_line(
    files: &[PathBuf],
    max_record: usize,
    bar: Option<&indicatif::ProgressBar>,
    mut each: impl FnMut(&Path, u64, &[u8], Option<Flaw>) -> Result<()>,
) -> Result<()> {
    for path in files {
        let input = seclake_ingest::file::open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let origin: Arc<str> = path.to_string_lossy().into();
        let mut lines = LineReader::new(input, origin, 1 << 20, max_record);
        if let Some(bar) = bar {
            bar.set_message(path.display().to_string());
        }
        while let Some((data, records)) = lines
            .next_batch()
            .with_context(|| format!("reading {}", path.display()))?
        {
            for record in &records {
                let line = &data[record.start as usize..record.end as usize];
                each(path, record.seq, line, record.flaw)?;
            }
        }
    }
    Ok(())
}

/// Logs how many records were not `what` (delivered, accepted), and why the
/// first was not, when any.
fn log_failed(failed: u64, first: &Mutex<Option<String>>, what: &str) {
    if failed > 0 {
        let first = first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        tracing::error!("{failed} records were not {what}; the first because: {first}");
    }
}

/// Counts what the broker acknowledged, from librdkafka's delivery reports.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    delivered_bytes: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        match result {
            Ok(message) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let bytes = message.payload_len() as u64;
                self.delivered_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

/// Sends every line of the files, paced to `rate`, and waits until the
/// broker has acknowledged (or refused) each.
pub fn replay(opts: &ReplayOptions) -> Result<ReplayReport> {
    let started = Instant::now();
    let (partitions, created_topic) = ensure_topic(opts)?;
    let mut config = ClientConfig::new();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        // Each record to a random partition. The sticky default puts a fast
        // replay on a few partitions, and a group member holding none of
        // them reads nothing.
        .set("sticky.partitioning.linger.ms", "0");
    for (key, value) in &opts.producer_options {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &opts.brokers);
    let producer: ThreadedProducer<Deliveries> = config
        .create_with_context(Deliveries::default())
        .context("creating the Kafka producer")?;

    let bar = progress_bar(opts.progress);
    let mut sent = 0u64;
    let pacer = Pacer::new(opts.rate);
    // Lines go as they are: the broker's own size limit decides.
    for_each_line(
        &opts.files,
        usize::MAX >> 1,
        bar.as_ref(),
        |_, _, payload, _| {
            send(&producer, &opts.topic, payload)?;
            sent += 1;
            if sent.is_multiple_of(64) {
                if let Some(ahead) = pacer.ahead(sent) {
                    std::thread::sleep(ahead);
                }
                if let Some(bar) = &bar {
                    bar.set_position(sent);
                }
            }
            Ok(())
        },
    )?;
    producer
        .flush(Duration::from_secs(120))
        .context("waiting for the broker to acknowledge every record")?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let deliveries = producer.context();
    let failed = deliveries.failed.load(Ordering::Relaxed);
    log_failed(failed, &deliveries.first_error, "delivered");
    Ok(ReplayReport::new(
        deliveries.delivered.load(Ordering::Relaxed),
        deliveries.delivered_bytes.load(Ordering::Relaxed),
        failed,
        started,
        ReplayTarget::Kafka {
            topic: opts.topic.clone(),
            partitions,
            created_topic,
        },
    ))
}

/// Hands one record to the producer, waiting while its queue is full.
fn send(producer: &ThreadedProducer<Deliveries>, topic: &str, payload: &[u8]) -> Result<()> {
    let mut record = BaseRecord::<(), [u8]>::to(topic).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                // The producer's own thread drains the queue meanwhile.
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => bail!("producing to {topic:?}: {e}"),
        }
    }
}

/// The topic's partition count, creating the topic when it is missing.
fn ensure_topic(opts: &ReplayOptions) -> Result<(i32, bool)> {
    let mut config = ClientConfig::new();
    for (key, value) in &opts.producer_options {
        config.set(key, value);
    }
    config.set("bootstrap.servers", &opts.brokers);
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("creating the Kafka admin client")?;
    let partitions = |admin: &AdminClient<DefaultClientContext>| -> Result<Option<i32>> {
        let metadata = admin
            .inner()
            .fetch_metadata(Some(&opts.topic), Duration::from_secs(30))
            .with_context(|| format!("cannot reach the brokers {:?}", opts.brokers))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == opts.topic && t.error().is_none())
            .map(|t| t.partitions().len() as i32))
    };
    if let Some(n) = partitions(&admin)? {
        return Ok((n, false));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topic = NewTopic::new(
        &opts.topic,
        opts.partitions,
        TopicReplication::Fixed(opts.replication),
    );
    let results = rt
        .block_on(admin.create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        ))
        .context("creating the topic")?;
    let mut created = false;
    for result in results {
        match result {
            Ok(_) => created = true,
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(anyhow!("creating topic {name:?}: {code}")),
        }
    }
    let n = partitions(&admin)?.unwrap_or(opts.partitions);
    Ok((n, created))
}
