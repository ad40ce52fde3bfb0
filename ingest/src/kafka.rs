//! A Kafka topic read through a consumer group, at least once.
//!
//! One consumer per `[[source]]` reads one topic. Records are collected per
//! partition into a [`Batch`] (one buffer, positions `topic/partition@offset`),
//! which goes out when it reaches `batch_bytes` or is `linger_ms` old. The
//! partition's offsets are committed only when the batch's [`Ack`] resolves
//! delivered, that is, when every sink holding its records has made them
//! durable, and in order: offset N is committed only once every batch below N
//! is delivered too. Auto commit and auto offset store are always off.
//!
//! Backpressure: when the pipeline's queue is full the source waits for room
//! (librdkafka's prefetch queue, bounded by `queued.max.messages.kbytes`,
//! fills meanwhile and then fetching stops); when it stays full for a second
//! the source pauses every assigned partition and keeps polling, so the group
//! still sees it alive, until the queue drains. What it holds meanwhile is
//! that prefetch queue plus one batch per partition.
//!
//! Rebalances are cooperative (`cooperative-sticky`). Before partitions go,
//! the offsets already delivered are committed synchronously; records of
//! theirs still in flight are left uncommitted and the partition's next owner
//! reads them again (at least once: duplicates, never gaps).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use metrics::{counter, gauge, histogram};
use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::{ClientConfig, ClientContext, Offset, Statistics, TopicPartitionList};
use serde::Deserialize;

mod membership;
mod msk_iam;
use crate::source::{self as contract, BatchSender, ReadStats, Shutdown};
use crate::{Ack, AckStatus, AckWaiter, Batch, Flaw, Format, Origin, Record, SourceError};
pub use membership::InstanceId;

/// `[[source]] type = "kafka"`: one topic, read by a consumer group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Format of every record: `waf`, `falco`, `app` or `guardduty`.
    pub format: Format,
    /// Bootstrap brokers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The topic to read.
    pub topic: String,
    /// The consumer group; every pipeline of one deployment shares it.
    pub group: String,
    /// Where a group with no committed offset starts: `earliest` (default:
    /// nothing retained is skipped) or `latest`.
    #[serde(default)]
    pub start: StartAt,
    /// Bytes collected per partition before a batch goes out (default 2 MiB).
    #[serde(default = "crate::file::default_batch_bytes")]
    pub batch_bytes: usize,
    /// A partition's batch goes out after this many milliseconds even when
    /// small (default 200), bounding latency on quiet topics.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// Longest record accepted (default 1 MiB); longer ones go to the
    /// dead-letter output holding their first `max_record_bytes`.
    #[serde(default = "crate::file::default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Static group membership (KIP-345), so that a pipeline restarted
    /// after a crash takes its partitions straight back instead of waiting
    /// for the group to drop its dead predecessor (`session.timeout.ms`).
    /// Not set: the `group.instance.id` is `<host>-<topic>-<slot>`, the
    /// slot being the lowest one no other process on the host holds for
    /// this group and topic (two pipelines on one host never share an id,
    /// which would fence one). A string: exactly that id, unique in the
    /// group. `false`: dynamic membership. See [`InstanceId`].
    #[serde(default)]
    pub instance_id: InstanceId,
    /// librdkafka properties passed through as they are: TLS
    /// (`security.protocol`, `ssl.*`), SASL (`sasl.*`), timeouts, fetch sizes.
    #[serde(default)]
    pub kafka_options: BTreeMap<String, OptionValue>,
    /// Amazon MSK with IAM access control: the cluster's region. seclake
    /// then signs SASL/OAUTHBEARER tokens with credentials from the standard
    /// AWS chain and sets `security.protocol = "SASL_SSL"` and
    /// `sasl.mechanism = "OAUTHBEARER"`.
    pub msk_iam_region: Option<String>,
    /// The `group.instance.id` this source's consumer joins with, resolved
    /// (and its slot taken) when the consumer is made.
    #[serde(skip)]
    membership: membership::Claim,
}

/// `start`: where a new consumer group begins reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// A librdkafka property value: TOML strings, integers and booleans all work.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OptionValue {
    /// `"SASL_SSL"`.
    Text(String),
    /// `45000`.
    Integer(i64),
    /// `true`.
    Flag(bool),
}

impl std::fmt::Display for OptionValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionValue::Text(s) => f.write_str(s),
            OptionValue::Integer(n) => write!(f, "{n}"),
            OptionValue::Flag(b) => write!(f, "{b}"),
        }
    }
}

fn default_linger_ms() -> u64 {
    200
}

/// Properties seclake sets itself, and the key to use instead.
const MANAGED: [(&str, &str); 7] = [
    ("bootstrap.servers", "use `brokers`"),
    ("group.id", "use `group`"),
    (
        "group.instance.id",
        "use `instance_id` (a default, unique per source and per pipeline on a host, is set)",
    ),
    ("auto.offset.reset", "use `start`"),
    (
        "enable.auto.commit",
        "seclake commits offsets itself, once the sinks have the records",
    ),
    (
        "enable.auto.offset.store",
        "seclake stores offsets itself, once the sinks have the records",
    ),
    ("enable.partition.eof", "seclake sets it when it needs it"),
];

/// How long start-up waits for the topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a poll waits for a message when nothing else is due.
const POLL: Duration = Duration::from_millis(100);
/// Messages taken per round between housekeeping (batch hand-over,
/// linger, commits).
const ROUND: usize = 4096;
/// How long the source waits for room in the pipeline before it pauses its
/// partitions. Short waits are the normal rhythm of a busy pipeline, and
/// meanwhile librdkafka keeps prefetching into its bounded queue; pausing
/// drops that queue (it is fetched again on resume), so it is kept for a
/// sink that is really stalled. A second is far below the group's poll
/// deadline (`max.poll.interval.ms`, 5 minutes).
const STALL: Duration = Duration::from_secs(1);
/// An asynchronous commit not answered within this long is sent again.
const COMMIT_RETRY: Duration = Duration::from_secs(5);

/// A config problem: the key below the source (e.g. `kafka_options."group.id"`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfigError {
    /// The key, relative to the `[[source]]` entry.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl KafkaConfig {
    /// Checks what serde cannot: no managed property in `kafka_options`, and
    /// every property one librdkafka accepts. Connects to nothing.
    pub fn check(&self) -> Result<(), KafkaConfigError> {
        let error = |key: String, message: String| KafkaConfigError { key, message };
        for (name, why) in MANAGED {
            if self.kafka_options.contains_key(name) {
                return Err(error(
                    format!("kafka_options.\"{name}\""),
                    format!("set by seclake: {why}"),
                ));
            }
        }
        for (key, value) in [
            ("brokers", &self.brokers),
            ("topic", &self.topic),
            ("group", &self.group),
        ] {
            if value.trim().is_empty() {
                return Err(error(key.to_owned(), "must not be empty".to_owned()));
            }
        }
        if self
            .msk_iam_region
            .as_deref()
            .is_some_and(|r| r.trim().is_empty())
        {
            return Err(error(
                "msk_iam_region".to_owned(),
                "must name the cluster's region, e.g. \"eu-west-1\"".to_owned(),
            ));
        }
        if self.batch_bytes == 0 {
            return Err(error(
                "batch_bytes".to_owned(),
                "must be at least 1".to_owned(),
            ));
        }
        // Without the instance id: checking takes no member slot.
        match self.properties(false).create_native_config() {
            Err(KafkaError::ClientConfig(_, description, key, _)) => Err(error(
                format!("kafka_options.\"{key}\""),
                format!("librdkafka refuses it: {description}"),
            )),
            Err(e) => Err(error("kafka_options".to_owned(), e.to_string())),
            Ok(_) => Ok(()),
        }
    }

    /// The consumer's librdkafka properties: [`KafkaConfig::properties`]
    /// and the `group.instance.id` (static membership), whose slot the
    /// first call takes.
    fn client_config(&self, until_caught_up: bool) -> ClientConfig {
        let mut config = self.properties(until_caught_up);
        if let Some(id) = self
            .membership
            .instance_id(&self.instance_id, &self.group, &self.topic)
        {
            config.set("group.instance.id", id);
        }
        config
    }

    /// Every librdkafka property but the instance id: the pass-through
    /// ones, then those seclake manages.
    fn properties(&self, until_caught_up: bool) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("statistics.interval.ms", "5000")
            .set("partition.assignment.strategy", "cooperative-sticky")
            // librdkafka stops fetching a partition for this long once its
            // prefetch queue is over `queued.max.messages.kbytes` (default
            // 1 s): at 2 KiB a record that queue drains in a fraction of
            // that, and the source then idles. Fetch again soon instead.
            .set("fetch.queue.backoff.ms", "10");
        for (key, value) in &self.kafka_options {
            config.set(key, value.to_string());
        }
        let reset = match self.start {
            StartAt::Earliest => "earliest",
            StartAt::Latest => "latest",
        };
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", until_caught_up.to_string())
            .set_log_level(RDKafkaLogLevel::Warning);
        if self.msk_iam_region.is_some() {
            config
                .set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "OAUTHBEARER");
        }
        config
    }

    /// Reads the topic, handing batches to `out`, until `shutdown` is set (or,
    /// with `until_caught_up`, until every assigned partition is read to its
    /// end). Everything collected is then handed over, and the returned
    /// [`KafkaCommitter`] commits what the sinks acknowledge once the pipeline
    /// has drained.
    pub fn run(
        &self,
        out: &BatchSender,
        shutdown: &Shutdown,
        until_caught_up: bool,
    ) -> Result<(ReadStats, KafkaCommitter), SourceError> {
        match &self.msk_iam_region {
            Some(region) => {
                let signer =
                    msk_iam::Signer::new(region).map_err(|message| SourceError::Kafka {
                        topic: self.topic.clone(),
                        message,
                    })?;
                let (stats, consumer) =
                    self.run_with::<true>(out, shutdown, until_caught_up, Some(signer))?;
                Ok((stats, KafkaCommitter(Committer::MskIam(consumer))))
            }
            None => {
                let (stats, consumer) =
                    self.run_with::<false>(out, shutdown, until_caught_up, None)?;
                Ok((stats, KafkaCommitter(Committer::Plain(consumer))))
            }
        }
    }

    /// [`KafkaConfig::run`] with a consumer whose context signs MSK IAM
    /// tokens (`MSK_IAM`) or does not: librdkafka's own OAUTHBEARER methods
    /// (OIDC) work only without a token callback.
    fn run_with<const MSK_IAM: bool>(
        &self,
        tx: &BatchSender,
        shutdown: &Shutdown,
        until_caught_up: bool,
        signer: Option<msk_iam::Signer>,
    ) -> Result<(ReadStats, BaseConsumer<SourceContext<MSK_IAM>>), SourceError> {
        let failed = |message: String| SourceError::Kafka {
            topic: self.topic.clone(),
            message,
        };
        let topic: Arc<str> = self.topic.as_str().into();
        let mut stats = ReadStats::default();
        let signer = signer.map(Arc::new);
        loop {
            let context = SourceContext {
                topic: Arc::clone(&topic),
                state: Mutex::new(State::default()),
                signer: signer.clone(),
            };
            let consumer: BaseConsumer<SourceContext<MSK_IAM>> = self
                .client_config(until_caught_up)
                .create_with_context(context)
                .map_err(|e| failed(format!("cannot create a consumer: {e}")))?;
            check_topic(&consumer, &self.topic, &self.brokers).map_err(failed)?;
            consumer
                .subscribe(&[&self.topic])
                .map_err(|e| failed(format!("cannot subscribe: {e}")))?;
            for name in [
                "seclake_kafka_assigned_partitions",
                "seclake_kafka_paused_partitions",
            ] {
                gauge!(name, "topic" => self.topic.clone()).set(0.0);
            }

            let mut reader = Reader {
                config: self,
                consumer: &consumer,
                topic: Arc::clone(&topic),
                backlog: VecDeque::new(),
                paused: false,
                stats: ReadStats::default(),
            };
            let ended = reader.read(tx, shutdown, until_caught_up)?;
            if ended == Ended::FencedBySelf {
                // Nothing of this consumer's is committed any more (its
                // assignment was lost); the new one reads from the group's
                // offsets, so what was in flight is read again.
                stats += reader.stats;
                drop(reader);
                counter!("seclake_kafka_self_fence_rejoins_total", "topic" => self.topic.clone())
                    .increment(1);
                tracing::warn!(topic = %self.topic, "fenced by this consumer's own rejoin after its session timed out (librdkafka treats it as fatal): rejoining with a new consumer");
                continue;
            }
            reader.drain(tx)?;
            stats += reader.stats;
            drop(reader);
            return Ok((stats, consumer));
        }
    }
}

/// Fails early, naming the fix, when the brokers can't be reached or the
/// topic is missing (brokers here never create topics by use).
fn check_topic<const M: bool>(
    consumer: &BaseConsumer<SourceContext<M>>,
    topic: &str,
    brokers: &str,
) -> Result<(), String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| format!("cannot reach the brokers {brokers:?}: {e}"))?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
        Some(t)
            if t.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::UnknownTopicOrPartition) =>
        {
            Err(format!(
                "topic {topic:?} does not exist on {brokers:?}: create it \
                 (`seclake replay --partitions N` creates it when it sends)"
            ))
        }
        Some(t) => Err(format!(
            "topic {topic:?}: {:?}",
            t.error().map(RDKafkaErrorCode::from)
        )),
        None => Err(format!("topic {topic:?} is not in the brokers' metadata")),
    }
}

/// What a source still owes after it stopped reading: committing the offsets
/// of the batches the sinks acknowledge. Keep it until the pipeline has
/// drained (every sink closed), then call [`KafkaCommitter::commit_all`].
pub struct KafkaCommitter(Committer);

enum Committer {
    Plain(BaseConsumer<SourceContext<false>>),
    MskIam(BaseConsumer<SourceContext<true>>),
}

impl std::fmt::Debug for KafkaCommitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaCommitter").finish_non_exhaustive()
    }
}

impl KafkaCommitter {
    /// Waits for every batch handed out, commits each partition up to its
    /// first undelivered batch, and closes the consumer (a dynamic member
    /// leaves the group; a static one keeps its partitions until it returns
    /// or its session times out). Returns how many batches were not
    /// delivered (their offsets stay uncommitted).
    pub fn commit_all(self) -> u64 {
        match self.0 {
            Committer::Plain(consumer) => commit_all(&consumer),
            Committer::MskIam(consumer) => commit_all(&consumer),
        }
        // Dropping the consumer closes it; a revoke that follows finds
        // nothing left to commit.
    }
}

fn commit_all<const M: bool>(consumer: &BaseConsumer<SourceContext<M>>) -> u64 {
    let context = consumer.context();
    let mut state = context.lock();
    let mut undelivered = 0;
    for partition in state.partitions.values_mut() {
        for inflight in partition.inflight.drain(..) {
            match inflight.waiter.wait_blocking() {
                AckStatus::Delivered if !partition.failed => {
                    partition.acked = partition.acked.max(inflight.next_offset);
                    histogram!("seclake_kafka_commit_latency_seconds", "topic" => context.topic.to_string())
                            .record(inflight.sent.elapsed().as_secs_f64());
                }
                AckStatus::Delivered => {}
                AckStatus::Failed => {
                    partition.failed = true;
                    undelivered += 1;
                }
            }
        }
    }
    if let Err(e) = commit(consumer, &context.topic, &mut state, CommitMode::Sync) {
        tracing::error!(topic = %context.topic, "final offset commit failed: {e}");
    }
    undelivered
}

/// One partition's records in the making, and its batches awaiting acks.
#[derive(Debug)]
struct PartitionState {
    /// Set at assignment: batches of an earlier assignment are stale.
    generation: u64,
    building: Building,
    /// Handed-out batches, oldest first.
    inflight: VecDeque<InFlight>,
    /// The offset after the last delivered batch (what to commit).
    acked: i64,
    /// The offset last committed (or being committed).
    committed: i64,
    /// Read to its end (only with `until_caught_up`).
    eof: bool,
    /// A batch was not delivered: nothing more is committed.
    failed: bool,
}

#[derive(Debug)]
struct InFlight {
    next_offset: i64,
    waiter: AckWaiter,
    sent: Instant,
}

/// Records of one partition not yet handed out.
#[derive(Debug, Default)]
struct Building {
    data: Vec<u8>,
    records: Vec<Record>,
    keys: Vec<Option<(u32, u32)>>,
    since: Option<Instant>,
    last_offset: i64,
}

/// State shared between the read loop and the rebalance and commit
/// callbacks; both run on the source's thread, inside `poll`.
#[derive(Debug, Default)]
struct State {
    partitions: HashMap<i32, PartitionState>,
    next_generation: u64,
    /// Partitions are paused (the pipeline is full); new ones are paused
    /// at assignment too.
    paused: bool,
    /// An asynchronous commit is out, sent at this instant.
    commit_sent: Option<Instant>,
    /// Whether the group session held, for telling a fence of our own
    /// making from another consumer's.
    session: Session,
}

/// The consumer's group session, as its rebalance callbacks saw it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// Never lost.
    #[default]
    Steady,
    /// The assignment was lost (session timeout); no partitions since.
    Lost,
    /// Partitions came back at this instant after a loss.
    Regained(Instant),
}

impl Session {
    /// A fence answers a request of the rejoin, and a fenced commit response
    /// can trail the new assignment by a moment.
    const FENCE_GRACE: Duration = Duration::from_secs(30);

    /// True while a fence can come from this consumer's own rejoin.
    fn fence_may_be_ours(self) -> bool {
        match self {
            Session::Steady => false,
            Session::Lost => true,
            Session::Regained(at) => at.elapsed() < Session::FENCE_GRACE,
        }
    }
}

/// Why [`Reader::read`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Shutdown, or caught up.
    Stopped,
    /// Fenced by its own rejoin: the consumer is dead and a new one must
    /// take its place.
    FencedBySelf,
}

/// The consumer's callbacks; `MSK_IAM` turns on the OAUTHBEARER token
/// callback, which replaces librdkafka's own token methods.
struct SourceContext<const MSK_IAM: bool> {
    topic: Arc<str>,
    state: Mutex<State>,
    signer: Option<Arc<msk_iam::Signer>>,
}

impl<const MSK_IAM: bool> SourceContext<MSK_IAM> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<const MSK_IAM: bool> ClientContext for SourceContext<MSK_IAM> {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = MSK_IAM;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let signer = self
            .signer
            .as_ref()
            .ok_or("OAUTHBEARER tokens are signed only with `msk_iam_region`")?;
        let token = signer.token()?;
        Ok(OAuthToken {
            token: token.value,
            principal_name: String::new(),
            lifetime_ms: token.expires_ms,
        })
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(topic = %self.topic, facility, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(topic = %self.topic, facility, "librdkafka: {message}");
            }
            _ => tracing::debug!(topic = %self.topic, facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Reaching a partition's end is news only to `until_caught_up`,
        // which sees it through `poll`.
        if matches!(error, KafkaError::PartitionEOF(_))
            || reason.contains("reached end of partition")
        {
            return;
        }
        tracing::warn!(topic = %self.topic, "kafka: {error}: {reason}");
    }

    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&*self.topic) else {
            return;
        };
        for (partition, p) in &topic.partitions {
            if *partition < 0 || p.consumer_lag < 0 {
                continue;
            }
            gauge!("seclake_kafka_consumer_lag", "topic" => self.topic.to_string(), "partition" => partition.to_string())
                .set(p.consumer_lag as f64);
        }
    }
}

impl<const MSK_IAM: bool> ConsumerContext for SourceContext<MSK_IAM> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        counter!("seclake_kafka_rebalances_total", "topic" => self.topic.to_string(), "kind" => "revoke")
            .increment(1);
        let mut state = self.lock();
        let mut leaving = State::default();
        for element in revoked.elements_for_topic(&self.topic) {
            if let Some(mut partition) = state.partitions.remove(&element.partition()) {
                settle(&self.topic, &mut partition);
                leaving.partitions.insert(element.partition(), partition);
            }
        }
        // What the sinks already have is committed before the partitions
        // go; what they don't is read again by the next owner. A lost
        // assignment (the session timed out, e.g. the coordinator is down)
        // is not committed: the group has moved on, and a commit waiting
        // for a coordinator here can keep librdkafka from ever rejoining.
        if consumer.assignment_lost() {
            state.session = Session::Lost;
            counter!("seclake_kafka_assignments_lost_total", "topic" => self.topic.to_string())
                .increment(1);
            tracing::warn!(topic = %self.topic, "assignment lost: offsets not committed; what the sinks had is read again");
        } else if let Err(e) = commit(consumer, &self.topic, &mut leaving, CommitMode::Sync) {
            tracing::warn!(topic = %self.topic, "commit on revoke failed: {e}");
        }
        tracing::info!(topic = %self.topic, partitions = ?leaving.partitions.keys().collect::<Vec<_>>(), "partitions revoked");
        gauge!("seclake_kafka_assigned_partitions", "topic" => self.topic.to_string())
            .set(state.partitions.len() as f64);
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        counter!("seclake_kafka_rebalances_total", "topic" => self.topic.to_string(), "kind" => "assign")
            .increment(1);
        let mut state = self.lock();
        if state.session == Session::Lost {
            state.session = Session::Regained(Instant::now());
        }
        let mut added = TopicPartitionList::new();
        for element in assigned.elements_for_topic(&self.topic) {
            state.next_generation += 1;
            let generation = state.next_generation;
            state.partitions.insert(
                element.partition(),
                PartitionState {
                    generation,
                    building: Building::default(),
                    inflight: VecDeque::new(),
                    acked: -1,
                    committed: -1,
                    eof: false,
                    failed: false,
                },
            );
            added.add_partition(&self.topic, element.partition());
        }
        if state.paused
            && added.count() > 0
            && let Err(e) = consumer.pause(&added)
        {
            tracing::warn!(topic = %self.topic, "cannot pause new partitions: {e}");
        }
        tracing::info!(topic = %self.topic, partitions = ?added.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(), "partitions assigned");
        gauge!("seclake_kafka_assigned_partitions", "topic" => self.topic.to_string())
            .set(state.partitions.len() as f64);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let mut state = self.lock();
        state.commit_sent = None;
        match result {
            Ok(()) => {
                for element in offsets.elements_for_topic(&self.topic) {
                    if let (Some(partition), Offset::Offset(offset)) = (
                        state.partitions.get_mut(&element.partition()),
                        element.offset(),
                    ) {
                        partition.committed = partition.committed.max(offset);
                    }
                }
            }
            // Kept uncommitted; the next round sends the offsets again.
            Err(e) => {
                counter!("seclake_kafka_commit_failures_total", "topic" => self.topic.to_string())
                    .increment(1);
                tracing::warn!(topic = %self.topic, "offset commit failed: {e}");
            }
        }
    }
}

/// Moves a partition's delivered batches, oldest first, into `acked`.
fn settle(topic: &str, partition: &mut PartitionState) {
    while let Some(front) = partition.inflight.front_mut() {
        match front.waiter.try_status() {
            None => break,
            Some(AckStatus::Failed) => {
                // The pipeline is stopping; never commit past this batch.
                partition.failed = true;
                break;
            }
            Some(AckStatus::Delivered) if partition.failed => break,
            Some(AckStatus::Delivered) => {
                partition.acked = front.next_offset;
                histogram!("seclake_kafka_commit_latency_seconds", "topic" => topic.to_owned())
                    .record(front.sent.elapsed().as_secs_f64());
                partition.inflight.pop_front();
            }
        }
    }
}

/// Commits every partition whose delivered offset is past its committed one.
fn commit<const M: bool>(
    consumer: &BaseConsumer<SourceContext<M>>,
    topic: &str,
    state: &mut State,
    mode: CommitMode,
) -> KafkaResult<()> {
    let mut offsets = TopicPartitionList::new();
    for (&partition, p) in &state.partitions {
        if p.acked > p.committed {
            offsets.add_partition_offset(topic, partition, Offset::Offset(p.acked))?;
        }
    }
    if offsets.count() == 0 {
        return Ok(());
    }
    consumer.commit(&offsets, mode)?;
    match mode {
        CommitMode::Sync => {
            for p in state.partitions.values_mut() {
                p.committed = p.committed.max(p.acked);
            }
        }
        CommitMode::Async => state.commit_sent = Some(Instant::now()),
    }
    Ok(())
}

/// The read loop's own state.
struct Reader<'a, const M: bool> {
    config: &'a KafkaConfig,
    consumer: &'a BaseConsumer<SourceContext<M>>,
    topic: Arc<str>,
    /// Batches ready for the pipeline, with their partition and generation.
    backlog: VecDeque<(i32, u64, Batch)>,
    paused: bool,
    stats: ReadStats,
}

impl<const M: bool> Reader<'_, M> {
    fn read(
        &mut self,
        tx: &BatchSender,
        shutdown: &Shutdown,
        until_caught_up: bool,
    ) -> Result<Ended, SourceError> {
        while !shutdown.is_set() {
            let handed = self.hand_over(tx)?;
            self.set_paused(!handed);
            let timeout = if self.paused {
                Duration::from_millis(20)
            } else {
                POLL
            };
            for i in 0..ROUND {
                let polled = self
                    .consumer
                    .poll(if i == 0 { timeout } else { Duration::ZERO });
                match polled {
                    None => break,
                    Some(Ok(message)) => {
                        let full = self.take(
                            message.partition(),
                            message.offset(),
                            message.payload().unwrap_or_default(),
                            message.key(),
                        );
                        if full {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        let mut state = self.consumer.context().lock();
                        if let Some(p) = state.partitions.get_mut(&partition) {
                            p.eof = true;
                        }
                    }
                    Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                        return self.fatal(code);
                    }
                    // Broker restarts and the like: librdkafka reconnects.
                    Some(Err(e)) => {
                        tracing::warn!(topic = %self.topic, "kafka: {e}");
                        break;
                    }
                }
            }
            self.flush(false);
            self.commit_delivered();
            if until_caught_up && self.caught_up() {
                break;
            }
        }
        Ok(Ended::Stopped)
    }

    /// What a fatal consumer error means. librdkafka makes a fenced static
    /// member fatal, and fences a consumer by its own hand too: when its
    /// session times out (the coordinator was unreachable) it rejoins under
    /// a new member id, and a commit still queued under the old id is then
    /// answered "fenced" (librdkafka issue 3437). That case, a fence soon
    /// after this consumer lost its assignment, is [`Ended::FencedBySelf`];
    /// any other is another consumer holding the same instance id.
    fn fatal(&self, code: RDKafkaErrorCode) -> Result<Ended, SourceError> {
        let fenced = code == RDKafkaErrorCode::FencedInstanceId;
        if fenced && self.consumer.context().lock().session.fence_may_be_ours() {
            return Ok(Ended::FencedBySelf);
        }
        let hint = if fenced {
            format!(
                ": another consumer of group {:?} joined with this one's group.instance.id; \
                 give each pipeline its own `instance_id`",
                self.config.group
            )
        } else {
            String::new()
        };
        Err(SourceError::Kafka {
            topic: self.config.topic.clone(),
            message: format!(
                "fatal consumer error: {}{hint}",
                KafkaError::MessageConsumptionFatal(code)
            ),
        })
    }

    /// Appends one record to its partition's batch; true when a batch was
    /// completed (time to hand it over).
    fn take(&mut self, partition: i32, offset: i64, payload: &[u8], key: Option<&[u8]>) -> bool {
        let mut state = self.consumer.context().lock();
        let Some(p) = state.partitions.get_mut(&partition) else {
            // A message of a partition revoked in this very poll.
            return false;
        };
        p.eof = false;
        let b = &mut p.building;
        if b.records.is_empty() {
            b.since = Some(Instant::now());
            b.data
                .reserve(self.config.batch_bytes + self.config.batch_bytes / 8);
        }
        let truncated = payload.len() > self.config.max_record_bytes;
        let body = &payload[..payload.len().min(self.config.max_record_bytes)];
        let start = b.data.len();
        b.data.extend_from_slice(body);
        b.records.push(Record {
            start: start as u32,
            end: b.data.len() as u32,
            seq: u64::try_from(offset).unwrap_or_default(),
            flaw: truncated.then_some(Flaw::Truncated),
        });
        if let Some(key) = key {
            let start = b.data.len();
            b.data.extend_from_slice(key);
            b.keys.resize(b.records.len() - 1, None);
            b.keys.push(Some((start as u32, b.data.len() as u32)));
        }
        b.last_offset = offset;
        self.stats.records += 1;
        self.stats.bytes += body.len() as u64;
        let full = b.data.len() >= self.config.batch_bytes;
        drop(state);
        if full {
            self.complete(partition);
        }
        full
    }

    /// Turns a partition's collected records into a batch in the backlog.
    fn complete(&mut self, partition: i32) {
        let mut state = self.consumer.context().lock();
        let Some(p) = state.partitions.get_mut(&partition) else {
            return;
        };
        if p.building.records.is_empty() {
            return;
        }
        let b = std::mem::take(&mut p.building);
        let (ack, waiter) = Ack::new();
        p.inflight.push_back(InFlight {
            next_offset: b.last_offset + 1,
            waiter,
            sent: Instant::now(),
        });
        let generation = p.generation;
        drop(state);
        let topic = self.topic.to_string();
        histogram!("seclake_kafka_batch_records", "topic" => topic.clone())
            .record(b.records.len() as f64);
        counter!("seclake_kafka_records_total", "topic" => topic.clone())
            .increment(b.records.len() as u64);
        counter!("seclake_kafka_bytes_total", "topic" => topic).increment(b.data.len() as u64);
        self.stats.batches += 1;
        let batch = Batch {
            format: self.config.format,
            origin: Origin::Kafka {
                topic: Arc::clone(&self.topic),
                partition,
                keys: b.keys,
            },
            data: Bytes::from(b.data),
            records: b.records,
            ack,
        };
        self.backlog.push_back((partition, generation, batch));
    }

    /// Completes the batches that are old enough (`linger_ms`), or all.
    fn flush(&mut self, all: bool) {
        let linger = Duration::from_millis(self.config.linger_ms);
        let due: Vec<i32> = {
            let state = self.consumer.context().lock();
            state
                .partitions
                .iter()
                .filter(|(_, p)| {
                    p.building
                        .since
                        .is_some_and(|since| all || since.elapsed() >= linger)
                })
                .map(|(&partition, _)| partition)
                .collect()
        };
        for partition in due {
            self.complete(partition);
        }
    }

    /// Hands the backlog to the pipeline, waiting up to [`STALL`] for room;
    /// false when the pipeline is still full then. Batches of partitions
    /// revoked meanwhile are dropped (their next owner reads them).
    fn hand_over(&mut self, tx: &BatchSender) -> Result<bool, SourceError> {
        while let Some((partition, generation, batch)) = self.backlog.pop_front() {
            if !self.current(partition, generation) {
                batch.ack.fail();
                continue;
            }
            if let Some(batch) = tx.send_timeout(batch, STALL)? {
                self.backlog.push_front((partition, generation, batch));
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn current(&self, partition: i32, generation: u64) -> bool {
        let state = self.consumer.context().lock();
        state
            .partitions
            .get(&partition)
            .is_some_and(|p| p.generation == generation)
    }

    /// Pauses every assigned partition while the pipeline is full, and
    /// resumes them once it takes batches again.
    fn set_paused(&mut self, paused: bool) {
        if paused == self.paused {
            return;
        }
        let mut state = self.consumer.context().lock();
        state.paused = paused;
        let mut assigned = TopicPartitionList::new();
        for &partition in state.partitions.keys() {
            assigned.add_partition(&self.topic, partition);
        }
        drop(state);
        let done = if paused {
            self.consumer.pause(&assigned)
        } else {
            self.consumer.resume(&assigned)
        };
        if let Err(e) = done {
            tracing::warn!(topic = %self.topic, paused, "kafka pause/resume: {e}");
        }
        self.paused = paused;
        let count = if paused { assigned.count() } else { 0 };
        gauge!("seclake_kafka_paused_partitions", "topic" => self.topic.to_string())
            .set(count as f64);
    }

    /// Settles every partition's delivered batches and commits their offsets
    /// asynchronously.
    fn commit_delivered(&mut self) {
        let mut state = self.consumer.context().lock();
        for p in state.partitions.values_mut() {
            settle(&self.topic, p);
        }
        if state
            .commit_sent
            .is_some_and(|sent| sent.elapsed() < COMMIT_RETRY)
        {
            return;
        }
        if let Err(e) = commit(self.consumer, &self.topic, &mut state, CommitMode::Async) {
            tracing::warn!(topic = %self.topic, "offset commit failed: {e}");
        }
    }

    /// Every assigned partition is read to its end and handed out.
    fn caught_up(&self) -> bool {
        let state = self.consumer.context().lock();
        !state.partitions.is_empty()
            && self.backlog.is_empty()
            && state
                .partitions
                .values()
                .all(|p| p.eof && p.building.records.is_empty())
    }

    /// Hands everything collected to the pipeline, waiting for room: the
    /// source is stopping, so nothing more is polled.
    fn drain(&mut self, tx: &BatchSender) -> Result<(), SourceError> {
        self.flush(true);
        while let Some((partition, generation, batch)) = self.backlog.pop_front() {
            if !self.current(partition, generation) {
                batch.ack.fail();
                continue;
            }
            tx.send(batch)?;
        }
        Ok(())
    }
}

impl contract::SourceSpec for KafkaConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), contract::KeyError> {
        KafkaConfig::check(self).map_err(|e| contract::KeyError::new(e.key, e.message))
    }

    fn build(&self) -> Result<Box<dyn contract::Source>, SourceError> {
        Ok(Box::new(self.clone()))
    }

    /// Two consumers of one group under one static id fence each other.
    fn exclusive(&self) -> Option<contract::Claim> {
        match &self.instance_id {
            InstanceId::Fixed(id) => Some(contract::Claim {
                key: "instance_id",
                resource: format!("instance_id {id:?} in group {:?}", self.group),
            }),
            _ => None,
        }
    }
}

impl contract::Source for KafkaConfig {
    fn run(
        self: Box<Self>,
        ctx: &contract::SourceContext,
    ) -> Result<contract::Finished, SourceError> {
        let (stats, committer) =
            KafkaConfig::run(&self, &ctx.out, &ctx.shutdown, ctx.until_caught_up)?;
        Ok(contract::Finished {
            stats,
            outstanding: Box::new(committer),
        })
    }
}

impl contract::Outstanding for KafkaCommitter {
    fn settle(self: Box<Self>) -> u64 {
        self.commit_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(options: &[(&str, OptionValue)]) -> KafkaConfig {
        KafkaConfig {
            format: Format::Falco,
            brokers: "127.0.0.1:9092".into(),
            topic: "falco-events".into(),
            group: "seclake".into(),
            start: StartAt::Earliest,
            batch_bytes: 1 << 20,
            linger_ms: 200,
            max_record_bytes: 1 << 20,
            kafka_options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            msk_iam_region: None,
            instance_id: InstanceId::default(),
            membership: membership::Claim::default(),
        }
    }

    #[test]
    fn pass_through_options_of_every_type_are_accepted() {
        let cfg = config(&[
            ("security.protocol", OptionValue::Text("SASL_SSL".into())),
            ("sasl.mechanism", OptionValue::Text("SCRAM-SHA-512".into())),
            ("session.timeout.ms", OptionValue::Integer(45_000)),
            ("check.crcs", OptionValue::Flag(true)),
        ]);
        assert_eq!(cfg.check(), Ok(()));
        let client = cfg.client_config(false);
        assert_eq!(client.get("session.timeout.ms"), Some("45000"));
        assert_eq!(client.get("enable.auto.commit"), Some("false"));
        assert_eq!(client.get("auto.offset.reset"), Some("earliest"));
    }

    #[test]
    fn msk_iam_sets_oauthbearer_over_tls_and_needs_a_region() {
        let mut cfg = config(&[]);
        cfg.msk_iam_region = Some("eu-west-1".into());
        assert_eq!(cfg.check(), Ok(()));
        let client = cfg.client_config(false);
        assert_eq!(client.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(client.get("sasl.mechanism"), Some("OAUTHBEARER"));
        cfg.msk_iam_region = Some(" ".into());
        assert_eq!(cfg.check().unwrap_err().key, "msk_iam_region");
    }

    #[test]
    fn managed_properties_are_refused_naming_the_key() {
        let err = config(&[("enable.auto.commit", OptionValue::Flag(true))])
            .check()
            .unwrap_err();
        assert_eq!(err.key, "kafka_options.\"enable.auto.commit\"");
        assert!(err.message.contains("commits offsets itself"), "{err:?}");
    }

    #[test]
    fn a_fence_counts_as_our_own_only_while_the_session_is_lost_or_just_regained() {
        assert!(!Session::Steady.fence_may_be_ours());
        assert!(Session::Lost.fence_may_be_ours());
        assert!(Session::Regained(Instant::now()).fence_may_be_ours());
        let long_ago = Instant::now().checked_sub(Session::FENCE_GRACE + Duration::from_secs(1));
        if let Some(at) = long_ago {
            assert!(!Session::Regained(at).fence_may_be_ours());
        }
    }

    #[test]
    fn properties_librdkafka_does_not_know_are_refused_naming_the_key() {
        let err = config(&[("sesion.timeout.ms", OptionValue::Integer(1))])
            .check()
            .unwrap_err();
        assert_eq!(err.key, "kafka_options.\"sesion.timeout.ms\"");
        assert!(err.message.contains("librdkafka"), "{err:?}");
    }
}
