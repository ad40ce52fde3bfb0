//! The running Kinesis source: one thread keeps this worker's leases and
//! polls `GetRecords` on every shard it holds.
//!
//! Each round it renews its leases, now and then syncs the shard list into
//! the lease table and takes what [`plan`] offers, then polls the shards
//! that are due (concurrently), hands each answer over as one batch of whole
//! Kinesis records, and checkpoints each shard up to its last batch the
//! sinks have acknowledged, in order. A shard whose reading ends
//! (`SHARD_END`) is checkpointed as ended once all its batches are
//! delivered, which is what lets its children be read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::get_records::{GetRecordsError, GetRecordsOutput};
use aws_sdk_kinesis::primitives::DateTime as AwsDateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use bytes::{Bytes, BytesMut};
use metrics::{counter, gauge};

use super::aggregate::{UNPACK_FACTOR, Unpacked, unpack};
use super::config::{KinesisConfig, Start};
use super::lease::{Checkpoint, Lease, LeaseError, LeaseTable, plan};
use crate::source::{self as contract, KeyError, ReadStats};
use crate::{
    Ack, AckStatus, AckWaiter, Batch, Flaw, Format, Origin, Record, SequenceNumber, SourceError,
};

/// Records asked for per `GetRecords` (the API's maximum).
const GET_RECORDS_LIMIT: i32 = 10_000;
/// A shard is polled again this soon after an answer with records
/// (five calls per second per shard is the service's limit)…
const POLL_BUSY: Duration = Duration::from_millis(250);
/// …and this soon after an empty one.
const POLL_IDLE: Duration = Duration::from_secs(1);
/// The longest wait after a throttled or failed call.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How often the shard list is synced into the lease table.
const SHARD_SYNC: Duration = Duration::from_secs(60);
/// A shard's checkpoint is written at most this often while it is read.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// A shard started at `LATEST` that needs a new iterator before its first
/// record restarts at the time of its first iterator less this, so records
/// are never skipped for a clock a little behind the service's (the extra
/// ones are read at least once, as always).
const LATEST_MARGIN_MS: i64 = 5_000;

impl contract::SourceSpec for KinesisConfig {
    fn format(&self) -> Format {
        self.format
    }

    fn check(&self) -> Result<(), KeyError> {
        KinesisConfig::check(self)
    }

    fn build(&self) -> Result<Box<dyn contract::Source>, SourceError> {
        Ok(Box::new(KinesisSource {
            cfg: self.clone(),
            worker_id: self.worker_id.clone().unwrap_or_else(default_worker_id),
        }))
    }
}

/// `<host>-<pid>-<4 hex digits of the clock>`: unique per process.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "seclake".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{host}-{}-{:04x}", std::process::id(), nanos & 0xffff)
}

struct KinesisSource {
    cfg: KinesisConfig,
    worker_id: String,
}

impl contract::Source for KinesisSource {
    fn run(
        self: Box<Self>,
        ctx: &contract::SourceContext,
    ) -> Result<contract::Finished, SourceError> {
        let rt = ctx.runtime.clone();
        let mut worker = rt.block_on(Worker::connect(*self, rt.clone()))?;
        let result = worker.run(ctx);
        let outstanding = Box::new(worker.into_outstanding());
        result.map(|stats| contract::Finished { stats, outstanding })
    }
}

/// A shard this worker holds.
struct Shard {
    lease: Lease,
    /// The `GetRecords` iterator; none when one must be asked for.
    iterator: Option<String>,
    /// For a new iterator at a checkpoint whose first answer has not come
    /// yet: the record (and sub-record) delivered through, to skip.
    skip: Option<(SequenceNumber, u64)>,
    /// A shard started at `LATEST`: when its first iterator was asked for
    /// (epoch ms, less a margin), so that a new iterator before any record
    /// was read starts there (`AT_TIMESTAMP`), not at a later `LATEST`.
    latest_since: Option<i64>,
    /// The last record handed over (sequence number, last sub-sequence):
    /// where a new iterator starts.
    read_to: Option<(SequenceNumber, u64)>,
    /// Batches handed over and not yet checkpointed, oldest first, with
    /// the checkpoint each completes (no waiter: nothing to wait for).
    pending: VecDeque<(Option<AckWaiter>, Checkpoint)>,
    /// Delivered and not yet written.
    delivered: Option<Checkpoint>,
    last_checkpoint: Instant,
    /// `GetRecords` answered without a next iterator.
    ended: bool,
    /// A batch was not delivered: nothing after it is checkpointed.
    failed: bool,
    next_poll: Instant,
    backoff: Duration,
    /// The last answer's records and `MillisBehindLatest`.
    last_records: usize,
    behind_ms: i64,
}

impl Shard {
    fn new(lease: Lease) -> Shard {
        let now = Instant::now();
        Shard {
            lease,
            iterator: None,
            skip: None,
            latest_since: None,
            read_to: None,
            pending: VecDeque::new(),
            delivered: None,
            last_checkpoint: now,
            ended: false,
            failed: false,
            next_poll: now,
            backoff: POLL_BUSY,
            last_records: usize::MAX,
            behind_ms: i64::MAX,
        }
    }

    /// Moves every delivered batch at the front into `delivered`.
    fn settle_delivered(&mut self) {
        while let Some((waiter, _)) = self.pending.front_mut() {
            let status = match waiter {
                None => AckStatus::Delivered,
                Some(w) => match w.try_status() {
                    Some(status) => status,
                    None => break,
                },
            };
            let Some((_, checkpoint)) = self.pending.pop_front() else {
                break;
            };
            if status == AckStatus::Failed {
                self.failed = true;
                self.pending.clear();
                break;
            }
            self.delivered = Some(checkpoint);
        }
    }

    fn caught_up(&self) -> bool {
        self.failed || self.ended || (self.last_records == 0 && self.behind_ms == 0)
    }
}

/// One worker of the application: its clients, leases and shards.
struct Worker {
    cfg: KinesisConfig,
    me: String,
    stream: Arc<str>,
    rt: tokio::runtime::Handle,
    kinesis: aws_sdk_kinesis::Client,
    leases: LeaseTable,
    shards: HashMap<String, Shard>,
    /// Each other owner's lease as last seen, and since when unchanged.
    seen: HashMap<String, (Option<String>, u64, Instant)>,
    next_sync: Instant,
    next_leases: Instant,
    last_renewed: Instant,
    stats: ReadStats,
}

impl Worker {
    async fn connect(
        source: KinesisSource,
        rt: tokio::runtime::Handle,
    ) -> Result<Worker, SourceError> {
        let KinesisSource { cfg, worker_id } = source;
        let fail = |message: String| SourceError::Kinesis {
            stream: cfg.stream.clone(),
            message,
        };
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &cfg.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        let shared = loader.load().await;
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&shared);
        if let Some(endpoint) = &cfg.endpoint {
            kinesis = kinesis.endpoint_url(endpoint);
        }
        let kinesis = aws_sdk_kinesis::Client::from_conf(kinesis.build());
        let mut dynamo = aws_sdk_dynamodb::config::Builder::from(&shared);
        if let Some(endpoint) = &cfg.lease_endpoint {
            dynamo = dynamo.endpoint_url(endpoint);
        }
        let leases = LeaseTable::new(
            aws_sdk_dynamodb::Client::from_conf(dynamo.build()),
            &cfg.lease_table,
        );
        kinesis
            .describe_stream_summary()
            .stream_name(&cfg.stream)
            .send()
            .await
            .map_err(|e| {
                fail(format!(
                    "DescribeStreamSummary: {}",
                    DisplayErrorContext(&e)
                ))
            })?;
        leases.ensure().await.map_err(|e| fail(e.to_string()))?;
        tracing::info!(
            stream = %cfg.stream,
            "kinesis: worker {worker_id} joins lease table {}",
            cfg.lease_table
        );
        let now = Instant::now();
        Ok(Worker {
            stream: cfg.stream.as_str().into(),
            me: worker_id,
            rt,
            kinesis,
            leases,
            shards: HashMap::new(),
            seen: HashMap::new(),
            next_sync: now,
            next_leases: now,
            last_renewed: now,
            stats: ReadStats::default(),
            cfg,
        })
    }

    fn lease_timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.lease_timeout_secs)
    }

    fn run(&mut self, ctx: &contract::SourceContext) -> Result<ReadStats, SourceError> {
        let mut planned_nothing = false;
        loop {
            if ctx.shutdown.is_set() {
                break;
            }
            if Instant::now() >= self.next_leases {
                planned_nothing = self.keep_leases()?;
            }
            self.poll_due(ctx)?;
            self.checkpoint_delivered(false);
            // Batches still in the sinks are settled after the return, as on
            // shutdown; only an ended shard's wait for them (its children
            // are read once it is checkpointed as ended) keeps this running.
            if ctx.until_caught_up
                && self
                    .shards
                    .values()
                    .all(|s| s.caught_up() && (!s.ended || s.pending.is_empty()))
            {
                if planned_nothing {
                    break;
                }
                // Caught up with what it holds: ask the lease table again
                // soon rather than a third of a lease timeout after taking.
                self.next_leases = self.next_leases.min(Instant::now() + POLL_BUSY);
            }
            let wake = self
                .shards
                .values()
                .filter(|s| !s.ended && !s.failed)
                .map(|s| s.next_poll)
                .chain([self.next_leases])
                .min()
                .unwrap_or(self.next_leases);
            let nap = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            std::thread::sleep(nap);
        }
        Ok(self.stats)
    }

    /// Renews, syncs shards, takes what the plan offers. True when the plan
    /// had nothing for this worker.
    fn keep_leases(&mut self) -> Result<bool, SourceError> {
        let timeout = self.lease_timeout();
        self.next_leases = Instant::now() + timeout / 3;
        self.renew_all();
        if Instant::now() >= self.next_sync {
            self.sync_shards()?;
        }
        let all = match self.rt.block_on(self.leases.list()) {
            Ok(all) => all,
            Err(e) => {
                tracing::warn!(stream = %self.stream, "kinesis: listing leases: {e}");
                return Ok(false);
            }
        };
        let now = Instant::now();
        let mut expired = HashSet::new();
        for lease in &all {
            let key = (lease.owner.clone(), lease.counter);
            let entry =
                self.seen
                    .entry(lease.shard_id.clone())
                    .or_insert((key.0.clone(), key.1, now));
            if (entry.0.clone(), entry.1) != key {
                *entry = (key.0, key.1, now);
            } else if lease.owner.is_some() && now.duration_since(entry.2) >= timeout {
                expired.insert(lease.shard_id.clone());
            }
        }
        let ended: HashSet<&str> = all
            .iter()
            .filter(|l| l.checkpoint == Checkpoint::ShardEnd)
            .map(|l| l.shard_id.as_str())
            .collect();
        let known: HashSet<&str> = all.iter().map(|l| l.shard_id.as_str()).collect();
        let ready = |lease: &Lease| {
            lease
                .parents
                .iter()
                .all(|p| ended.contains(p.as_str()) || !known.contains(p.as_str()))
        };
        // This worker's own leases as it last wrote them.
        let current: Vec<Lease> = all
            .iter()
            .map(|l| match self.shards.get(&l.shard_id) {
                Some(shard) => shard.lease.clone(),
                None => l.clone(),
            })
            .collect();
        let wanted = plan(&current, &self.me, &expired, ready);
        let nothing = wanted.is_empty();
        for lease in wanted {
            let stolen = lease.owner.as_ref().is_some_and(|o| *o != self.me);
            match self.rt.block_on(self.leases.take(&lease, &self.me)) {
                Ok(taken) => {
                    tracing::info!(
                        stream = %self.stream,
                        shard = %taken.shard_id,
                        "kinesis: took the lease{}",
                        lease.owner.as_ref().map_or(String::new(), |o| format!(" from {o}"))
                    );
                    counter!(
                        "seclake_kinesis_lease_changes_total",
                        "stream" => self.stream.to_string(),
                        "shard" => taken.shard_id.clone(),
                        "change" => if stolen { "taken_over" } else { "taken" },
                    )
                    .increment(1);
                    self.shards
                        .insert(taken.shard_id.clone(), Shard::new(taken));
                }
                Err(LeaseError::Lost { .. }) => {}
                Err(e) => tracing::warn!(stream = %self.stream, "kinesis: taking a lease: {e}"),
            }
        }
        Ok(nothing)
    }

    /// Renews every held lease; drops the ones lost (never checkpointed
    /// again) and, after a lease timeout without a renewal, all of them.
    fn renew_all(&mut self) {
        let mut lost = Vec::new();
        let mut all_renewed = true;
        for (id, shard) in &mut self.shards {
            match self.rt.block_on(self.leases.renew(&shard.lease)) {
                Ok(lease) => shard.lease = lease,
                Err(LeaseError::Lost { .. }) => lost.push(id.clone()),
                Err(e) => {
                    all_renewed = false;
                    tracing::warn!(stream = %self.stream, shard = %id, "kinesis: renewing: {e}");
                }
            }
        }
        if all_renewed {
            self.last_renewed = Instant::now();
        } else if self.last_renewed.elapsed() >= self.lease_timeout() {
            lost.extend(self.shards.keys().cloned());
        }
        for id in lost {
            if self.shards.remove(&id).is_some() {
                tracing::warn!(
                    stream = %self.stream,
                    shard = %id,
                    "kinesis: lost the lease; its batches in flight will not be checkpointed here"
                );
                counter!(
                    "seclake_kinesis_lease_changes_total",
                    "stream" => self.stream.to_string(),
                    "shard" => id,
                    "change" => "lost",
                )
                .increment(1);
            }
        }
    }

    /// Every shard of the stream gets a lease: children start at their
    /// beginning, so nothing put after a reshard is skipped.
    fn sync_shards(&mut self) -> Result<(), SourceError> {
        self.next_sync = Instant::now() + SHARD_SYNC;
        let mut token: Option<String> = None;
        let mut shards = Vec::new();
        loop {
            let request = match &token {
                Some(t) => self.kinesis.list_shards().next_token(t),
                None => self.kinesis.list_shards().stream_name(&*self.stream),
            };
            let page = match self.rt.block_on(request.send()) {
                Ok(page) => page,
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    return Err(SourceError::Kinesis {
                        stream: self.stream.to_string(),
                        message: format!("ListShards: {}", DisplayErrorContext(&e)),
                    });
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream, "kinesis: ListShards: {}", DisplayErrorContext(&e));
                    self.next_sync = Instant::now() + POLL_IDLE;
                    return Ok(());
                }
            };
            shards.extend(page.shards().iter().cloned());
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        let start = match self.cfg.start {
            Start::TrimHorizon => Checkpoint::TrimHorizon,
            Start::Latest => Checkpoint::Latest,
            Start::AtTimestamp => Checkpoint::AtTimestamp,
        };
        for shard in shards {
            let parents: Vec<String> = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            let first = if parents.is_empty() {
                start.clone()
            } else {
                Checkpoint::TrimHorizon
            };
            if let Err(e) = self.rt.block_on(self.leases.create_if_absent(
                shard.shard_id(),
                &parents,
                first,
            )) {
                tracing::warn!(stream = %self.stream, "kinesis: adding a lease: {e}");
            }
        }
        Ok(())
    }

    /// Polls every due shard at once and hands the answers over.
    fn poll_due(&mut self, ctx: &contract::SourceContext) -> Result<(), SourceError> {
        let now = Instant::now();
        let due: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| !s.ended && !s.failed && s.next_poll <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut calls = Vec::with_capacity(due.len());
        for id in &due {
            let Some(shard) = self.shards.get(id) else {
                continue;
            };
            calls.push(self.get_records(id.clone(), shard));
        }
        let since = chrono::Utc::now().timestamp_millis() - LATEST_MARGIN_MS;
        for id in &due {
            if let Some(shard) = self.shards.get_mut(id)
                && shard.iterator.is_none()
                && shard.read_to.is_none()
                && shard.lease.checkpoint == Checkpoint::Latest
            {
                shard.latest_since.get_or_insert(since);
            }
        }
        let answers = self.rt.block_on(join_all(calls));
        for (id, answer) in answers {
            self.take_answer(ctx, &id, answer)?;
        }
        Ok(())
    }

    /// One `GetRecords` of `shard`, with a new iterator first when needed.
    fn get_records(
        &self,
        id: String,
        shard: &Shard,
    ) -> impl std::future::Future<Output = (String, Answer)> + use<> {
        let kinesis = self.kinesis.clone();
        let stream = self.stream.to_string();
        let iterator = shard.iterator.clone().map(|it| (it, shard.skip.clone()));
        let configured = self.cfg.start_time().ok().flatten();
        let start = match (&shard.read_to, &shard.lease.checkpoint) {
            (Some((seq, sub)), _) => Some(From::At(seq.clone(), *sub)),
            (
                None,
                Checkpoint::At {
                    sequence,
                    sub_sequence,
                },
            ) => Some(From::At(sequence.clone(), *sub_sequence)),
            (None, Checkpoint::TrimHorizon) => Some(From::TrimHorizon),
            (None, Checkpoint::Latest) => Some(match shard.latest_since {
                None => From::Latest,
                Some(since) => From::Timestamp(since),
            }),
            (None, Checkpoint::AtTimestamp) => Some(From::Timestamp(
                configured.map_or(0, |t| t.timestamp_millis()),
            )),
            (None, Checkpoint::ShardEnd) => None,
        };
        async move {
            let (iterator, skip) = match iterator {
                Some(current) => current,
                None => {
                    let Some(start) = start else {
                        return (id, Answer::Ended);
                    };
                    let mut request = kinesis
                        .get_shard_iterator()
                        .stream_name(&stream)
                        .shard_id(&id);
                    let mut skip = None;
                    request = match start {
                        From::At(seq, sub) => {
                            let request = request
                                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                                .starting_sequence_number(seq.as_str());
                            skip = Some((seq, sub));
                            request
                        }
                        From::TrimHorizon => {
                            request.shard_iterator_type(ShardIteratorType::TrimHorizon)
                        }
                        From::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
                        From::Timestamp(millis) => request
                            .shard_iterator_type(ShardIteratorType::AtTimestamp)
                            .timestamp(AwsDateTime::from_millis(millis)),
                    };
                    match request.send().await {
                        Ok(out) => match out.shard_iterator() {
                            Some(it) => (it.to_owned(), skip),
                            None => return (id, Answer::Ended),
                        },
                        Err(e) => {
                            let failed = Answer::Failed {
                                message: describe(&e),
                                throttled: throttled(&e),
                                retry: None,
                            };
                            return (id, failed);
                        }
                    }
                }
            };
            match kinesis
                .get_records()
                .shard_iterator(&iterator)
                .limit(GET_RECORDS_LIMIT)
                .send()
                .await
            {
                Ok(out) => (id, Answer::Records(Box::new(out), skip)),
                Err(SdkError::ServiceError(e))
                    if matches!(e.err(), GetRecordsError::ExpiredIteratorException(_)) =>
                {
                    (id, Answer::Expired)
                }
                // Only expiry invalidates an iterator: the next poll retries it.
                Err(e) => {
                    let failed = Answer::Failed {
                        message: describe(&e),
                        throttled: throttled(&e),
                        retry: Some((iterator, skip)),
                    };
                    (id, failed)
                }
            }
        }
    }

    /// Hands one answer over as a batch and moves the shard on.
    fn take_answer(
        &mut self,
        ctx: &contract::SourceContext,
        id: &str,
        answer: Answer,
    ) -> Result<(), SourceError> {
        let max = self.cfg.max_record_bytes;
        let format = self.cfg.format;
        let stream = Arc::clone(&self.stream);
        let Some(shard) = self.shards.get_mut(id) else {
            return Ok(());
        };
        let now = Instant::now();
        let (out, skip) = match answer {
            Answer::Records(out, skip) => (out, skip),
            Answer::Ended => {
                shard.ended = true;
                return Ok(());
            }
            Answer::Expired => {
                shard.iterator = None;
                shard.skip = None;
                shard.next_poll = now;
                return Ok(());
            }
            Answer::Failed {
                message,
                throttled,
                retry,
            } => {
                if !throttled {
                    tracing::warn!(stream = %stream, shard = %id, "kinesis: {message}");
                }
                (shard.iterator, shard.skip) = match retry {
                    Some((iterator, skip)) => (Some(iterator), skip),
                    None => (None, None),
                };
                shard.backoff = (shard.backoff * 2).min(BACKOFF_MAX);
                shard.next_poll = now + shard.backoff;
                return Ok(());
            }
        };
        shard.backoff = POLL_BUSY;
        shard.skip = None;
        shard.behind_ms = out.millis_behind_latest().unwrap_or(0);
        shard.last_records = out.records().len();
        gauge!(
            "seclake_kinesis_millis_behind_latest",
            "stream" => stream.to_string(),
            "shard" => id.to_owned(),
        )
        .set(shard.behind_ms as f64);
        // Sized for the payloads (what they unpack to, bar compression):
        // an answer can be megabytes, and growing by doubling copies it.
        let mut data =
            BytesMut::with_capacity(out.records().iter().map(|r| r.data().as_ref().len()).sum());
        let mut records = Vec::new();
        let mut sequences = Vec::new();
        let mut last = None;
        for record in out.records() {
            let Ok(seq) = SequenceNumber::new(record.sequence_number()) else {
                tracing::warn!(stream = %stream, shard = %id, "kinesis: a record without a valid sequence number: {:?}", record.sequence_number());
                continue;
            };
            let payload = record.data().as_ref();
            let unpacked = unpack(payload, max.saturating_mul(UNPACK_FACTOR));
            // Borrowed from the payload or the unpacked records: each user
            // record is copied once, into the batch.
            let users: Vec<(&[u8], Option<u32>, Option<Flaw>)> = match &unpacked {
                Unpacked::Plain => vec![(payload, None, None)],
                Unpacked::Empty => Vec::new(),
                Unpacked::Flawed(flaw) => vec![(payload, None, Some(Flaw::Payload(*flaw)))],
                Unpacked::Records(users) => users
                    .iter()
                    .map(|u| (u.data.as_ref(), u.sub_sequence, None))
                    .collect(),
            };
            let last_sub = users
                .iter()
                .filter_map(|(_, sub, _)| *sub)
                .max()
                .map_or(0, u64::from);
            // A new iterator starts at the checkpointed record: what of it
            // was delivered (through its checkpointed sub-record) is not again.
            let delivered_through = skip
                .as_ref()
                .filter(|(s, _)| *s == seq)
                .map(|(_, through)| *through);
            for (bytes, sub, flaw) in users {
                if delivered_through.is_some_and(|t| u64::from(sub.unwrap_or(0)) <= t) {
                    continue;
                }
                let (bytes, flaw) = if bytes.len() > max {
                    (&bytes[..max], flaw.or(Some(Flaw::Truncated)))
                } else {
                    (bytes, flaw)
                };
                let start = data.len();
                data.extend_from_slice(bytes);
                records.push(Record {
                    start: start as u32,
                    end: data.len() as u32,
                    seq: records.len() as u64,
                    flaw,
                });
                sequences.push((seq.clone(), sub));
            }
            last = Some((seq, last_sub));
        }
        match out.next_shard_iterator() {
            Some(next) => shard.iterator = Some(next.to_owned()),
            None => {
                shard.iterator = None;
                shard.ended = true;
            }
        }
        shard.next_poll = now
            + if out.records().is_empty() {
                POLL_IDLE
            } else {
                POLL_BUSY
            };
        let Some((seq, sub)) = last else {
            return Ok(());
        };
        shard.read_to = Some((seq.clone(), sub));
        let checkpoint = Checkpoint::At {
            sequence: seq,
            sub_sequence: sub,
        };
        if records.is_empty() {
            shard.pending.push_back((None, checkpoint));
            return Ok(());
        }
        counter!(
            "seclake_kinesis_records_total",
            "stream" => stream.to_string(),
            "shard" => id.to_owned(),
        )
        .increment(records.len() as u64);
        let (ack, waiter) = Ack::new();
        shard.pending.push_back((Some(waiter), checkpoint));
        self.stats.records += records.len() as u64;
        self.stats.bytes += data.len() as u64;
        self.stats.batches += 1;
        let mut batch = Batch {
            format,
            origin: Origin::Kinesis {
                stream,
                shard_id: id.into(),
                sequences,
            },
            data: Bytes::from(data),
            records,
            ack,
        };
        // Leases are renewed while the pipeline is full.
        loop {
            match ctx.out.send_timeout(batch, Duration::from_millis(500))? {
                None => return Ok(()),
                Some(back) => batch = back,
            }
            if Instant::now() >= self.next_leases {
                self.renew_all();
                self.next_leases = Instant::now() + self.lease_timeout() / 3;
                if !self.shards.contains_key(id) {
                    return Ok(());
                }
            }
        }
    }

    /// Writes each shard's delivered checkpoint: when due, or all of them
    /// when `now`; an ended shard fully delivered is checkpointed as ended.
    fn checkpoint_delivered(&mut self, now: bool) {
        let mut lost = Vec::new();
        for (id, shard) in &mut self.shards {
            shard.settle_delivered();
            let finished = shard.ended && !shard.failed && shard.pending.is_empty();
            if finished && shard.lease.checkpoint != Checkpoint::ShardEnd {
                shard.delivered = Some(Checkpoint::ShardEnd);
            }
            let due = now || finished || shard.last_checkpoint.elapsed() >= CHECKPOINT_EVERY;
            let Some(checkpoint) = shard.delivered.clone().filter(|_| due) else {
                continue;
            };
            match self
                .rt
                .block_on(self.leases.checkpoint(&shard.lease, checkpoint))
            {
                Ok(lease) => {
                    shard.lease = lease;
                    shard.delivered = None;
                    shard.last_checkpoint = Instant::now();
                }
                Err(LeaseError::Lost { .. }) => lost.push(id.clone()),
                Err(e) => {
                    tracing::warn!(stream = %self.stream, shard = %id, "kinesis: checkpointing: {e}")
                }
            }
        }
        for id in lost {
            self.shards.remove(&id);
            tracing::warn!(stream = %self.stream, shard = %id, "kinesis: lost the lease before checkpointing");
        }
        let done: Vec<String> = self
            .shards
            .iter()
            .filter(|(_, s)| s.lease.checkpoint == Checkpoint::ShardEnd)
            .map(|(id, _)| id.clone())
            .collect();
        for id in done {
            if let Some(shard) = self.shards.remove(&id) {
                tracing::info!(stream = %self.stream, shard = %id, "kinesis: shard read to its end");
                let _ = self.rt.block_on(self.leases.release(&shard.lease));
                // Its children may be read now.
                self.next_sync = Instant::now();
                self.next_leases = Instant::now();
            }
        }
    }

    fn into_outstanding(self) -> KinesisOutstanding {
        KinesisOutstanding { worker: self }
    }
}

/// What a stopped Kinesis source still owes: checkpoints of the batches in
/// flight, then its leases back, so another worker takes them at once.
struct KinesisOutstanding {
    worker: Worker,
}

impl contract::Outstanding for KinesisOutstanding {
    fn settle(self: Box<Self>) -> u64 {
        let mut worker = self.worker;
        let mut undelivered = 0;
        for shard in worker.shards.values_mut() {
            while let Some((waiter, checkpoint)) = shard.pending.pop_front() {
                let status = waiter.map_or(AckStatus::Delivered, AckWaiter::wait_blocking);
                if status == AckStatus::Failed || shard.failed {
                    shard.failed = true;
                    undelivered += 1;
                    continue;
                }
                shard.delivered = Some(checkpoint);
            }
        }
        worker.checkpoint_delivered(true);
        for shard in worker.shards.values() {
            if let Err(e) = worker.rt.block_on(worker.leases.release(&shard.lease)) {
                tracing::warn!(stream = %worker.stream, "kinesis: releasing {}: {e}", shard.lease.shard_id);
            }
        }
        undelivered
    }
}

/// Where a new iterator starts.
enum From {
    /// At this record, whose sub-records through this one were delivered.
    At(SequenceNumber, u64),
    TrimHorizon,
    Latest,
    /// At this time, epoch milliseconds.
    Timestamp(i64),
}

/// What one poll of a shard gave.
enum Answer {
    /// Records, and the checkpointed record to skip through, for a new
    /// iterator at the checkpoint.
    Records(Box<GetRecordsOutput>, Option<(SequenceNumber, u64)>),
    /// The shard has no more records and never will.
    Ended,
    /// The iterator expired: ask for a new one.
    Expired,
    /// Failed (throttled or not): back off, then retry with the same
    /// iterator (and its skip) when `GetRecords` failed, or ask for one
    /// again when `GetShardIterator` did.
    Failed {
        message: String,
        throttled: bool,
        retry: Option<(String, Option<(SequenceNumber, u64)>)>,
    },
}

fn describe<E: std::error::Error + 'static, R: std::fmt::Debug>(e: &SdkError<E, R>) -> String {
    DisplayErrorContext(e).to_string()
}

fn throttled<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(
        e.code(),
        Some("ProvisionedThroughputExceededException" | "LimitExceededException")
    )
}

async fn join_all<F>(calls: Vec<F>) -> Vec<(String, Answer)>
where
    F: std::future::Future<Output = (String, Answer)> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for call in calls {
        set.spawn(call);
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(answer) = joined {
            out.push(answer);
        }
    }
    out
}
