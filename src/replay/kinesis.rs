//! `seclake replay --to kinesis`: every line a Kinesis record (or packed into
//! KPL aggregated records) through PutRecords, a few calls in flight, and
//! only the entries a call did not take sent again, with backoff and jitter.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aws_config::BehaviorVersion;
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use backon::BackoffBuilder as _;
use indicatif::ProgressBar;
use seclake_ingest::Flaw;
use seclake_ingest::kinesis::aggregate::aggregate;
use tokio::task::JoinSet;

use super::{Pacer, ReplayReport, ReplayTarget, for_each_line, progress_bar};

/// The most a Kinesis record holds: its data and partition key together.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// The most records in one PutRecords call.
const MAX_CALL_RECORDS: usize = 500;
/// The most data and partition key bytes in one PutRecords call.
const MAX_CALL_BYTES: usize = 5 << 20;
/// The most user records in one KPL aggregate.
const MAX_AGGREGATE_RECORDS: usize = 500;
/// Partition keys are 128 random bits in hex.
const KEY_LEN: usize = 32;
/// PutRecords calls in flight at once.
const IN_FLIGHT: usize = 4;
/// How long a paced replay lets a partial batch wait before sending it.
const LINGER: Duration = Duration::from_millis(200);
/// The time one PutRecords attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Per-entry error codes worth another try (all PutRecords documents).
const RETRYABLE_ENTRY: [&str; 2] = ["ProvisionedThroughputExceededException", "InternalFailure"];
/// Whole-call error codes worth another try: throttling and server trouble.
const RETRYABLE_CALL: [&str; 10] = [
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "KMSThrottlingException",
    "ThrottlingException",
    "Throttling",
    "InternalFailure",
    "InternalFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
];

/// What to send to which Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisOptions {
    /// The stream's name or ARN.
    pub stream: String,
    /// The region; else the standard AWS chain's (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Another endpoint than AWS's (kinesis-local, a VPC endpoint).
    pub endpoint: Option<String>,
    /// Pack the lines into KPL aggregated records.
    pub aggregate: bool,
    /// Lines per second; `None` sends as fast as the stream takes them.
    pub rate: Option<f64>,
    /// NDJSON files, plain or `.gz`, sent in this order, line by line.
    pub files: Vec<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// Sends every line of the files to the stream, paced to `rate`, and waits
/// until each PutRecords entry is accepted or refused. The files are read
/// twice: first to refuse a line no Kinesis record can hold before sending.
pub fn replay_kinesis(opts: &KinesisOptions) -> Result<ReplayReport> {
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (client, shards) = rt.block_on(connect(opts))?;
    let max_line = max_line(opts.aggregate);
    for_each_line(
        &opts.files,
        max_line,
        None,
        |path, line, _, flaw| match flaw {
            Some(Flaw::Truncated) => Err(too_long(path, line, max_line, opts.aggregate)
                .context("nothing was sent: every line is checked first")),
            _ => Ok(()),
        },
    )?;

    let bar = progress_bar(opts.progress);
    let counters = Arc::new(Counters {
        bar: bar.clone(),
        ..Counters::default()
    });
    let put = Arc::new(KinesisPut {
        client,
        stream: opts.stream.clone(),
    });
    let mut sender = Sender {
        rt,
        put,
        counters: Arc::clone(&counters),
        policy: RetryPolicy::DEFAULT,
        keys: Keys::new(),
        aggregator: opts.aggregate.then(Aggregator::default),
        batch: Batch::default(),
        pending_since: None,
        in_flight: JoinSet::new(),
    };
    let pacer = Pacer::new(opts.rate);
    let mut sent = 0u64;
    for_each_line(
        &opts.files,
        usize::MAX >> 1,
        bar.as_ref(),
        |path, n, line, _| {
            if line.len() > max_line {
                // Grown since it was checked.
                return Err(too_long(path, n, max_line, opts.aggregate));
            }
            sender.push_line(line)?;
            sent += 1;
            if let Some(ahead) = pacer.ahead(sent) {
                sender.linger()?;
                std::thread::sleep(ahead);
            }
            Ok(())
        },
    )?;
    sender.finish()?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }

    let failed = counters.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = counters
            .first_refusal
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        tracing::error!("{failed} records were refused by the stream; the first because: {first}");
    }
    Ok(ReplayReport::new(
        counters.lines.load(Ordering::Relaxed),
        counters.line_bytes.load(Ordering::Relaxed),
        failed,
        started,
        ReplayTarget::Kinesis {
            stream: opts.stream.clone(),
            shards,
            kinesis_records: counters.kinesis_records.load(Ordering::Relaxed),
            aggregated: opts.aggregate,
            retried: counters.retried.load(Ordering::Relaxed),
        },
    ))
}

fn too_long(path: &Path, line: u64, max_line: usize, aggregated: bool) -> anyhow::Error {
    let framing = if aggregated { ", its KPL framing" } else { "" };
    anyhow!(
        "{}:{line}: the line is longer than {max_line} bytes, more than a Kinesis record \
         holds (1 MiB with its partition key{framing})",
        path.display()
    )
}

/// The client, after checking the stream exists and takes records; its open
/// shard count when DescribeStreamSummary is allowed.
async fn connect(opts: &KinesisOptions) -> Result<(Client, Option<i32>)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &opts.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let shared = loader.load().await;
    let Some(region) = shared.region().cloned() else {
        bail!("no AWS region: pass --region, or set AWS_REGION or a profile's region");
    };
    let mut config = aws_sdk_kinesis::config::Builder::from(&shared);
    if let Some(endpoint) = &opts.endpoint {
        config = config.endpoint_url(endpoint);
    }
    let client = Client::from_conf(config.build());
    let place = match &opts.endpoint {
        Some(endpoint) => format!("{region} at {endpoint}"),
        None => region.to_string(),
    };
    let stream = &opts.stream;
    let request = client.describe_stream_summary();
    let request = if is_arn(stream) {
        request.stream_arn(stream)
    } else {
        request.stream_name(stream)
    };
    match request.send().await {
        Ok(answer) => {
            let Some(summary) = answer.stream_description_summary() else {
                return Ok((client, None));
            };
            match summary.stream_status() {
                StreamStatus::Creating | StreamStatus::Deleting => bail!(
                    "Kinesis stream {stream:?} in {place} is {}: it takes records once ACTIVE",
                    summary.stream_status()
                ),
                _ => Ok((client, Some(summary.open_shard_count()))),
            }
        }
        Err(e) => match e.code() {
            Some("ResourceNotFoundException") => {
                bail!("Kinesis stream {stream:?} not found in {place}")
            }
            Some("AccessDeniedException") => {
                tracing::warn!(
                    "cannot describe Kinesis stream {stream:?} ({}); sending anyway",
                    DisplayErrorContext(&e)
                );
                Ok((client, None))
            }
            _ => Err(anyhow!("{}", DisplayErrorContext(&e))).with_context(|| {
                format!("DescribeStreamSummary of Kinesis stream {stream:?} in {place}")
            }),
        },
    }
}

fn is_arn(stream: &str) -> bool {
    stream.starts_with("arn:")
}

/// One Kinesis record to put: a line, or a KPL aggregate of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    data: Vec<u8>,
    /// The lines in it.
    lines: u64,
    /// Their bytes.
    line_bytes: u64,
}

impl Entry {
    /// What it counts toward the record and call limits.
    fn size(&self) -> usize {
        self.key.len() + self.data.len()
    }
}

/// Random partition keys: SipHash with this process's random keys over a
/// counter, 128 bits in hex. They spread records evenly over the shards.
struct Keys {
    state: RandomState,
    n: u64,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            state: RandomState::new(),
            n: 0,
        }
    }

    fn next_key(&mut self) -> String {
        self.n += 1;
        let high = self.state.hash_one((self.n, 0u8));
        let low = self.state.hash_one((self.n, 1u8));
        format!("{high:016x}{low:016x}")
    }
}

/// A protobuf varint's length.
fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut rest = n >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// A KPL aggregate with no user records: the magic, a partition key table of
/// one key, and the MD5 digest.
const EMPTY_AGGREGATE_LEN: usize = 4 + (1 + 1 + KEY_LEN) + 16;

/// What a user record of `len` bytes adds to an aggregate: its key index
/// (always 0) and data, framed.
fn user_record_len(len: usize) -> usize {
    let inner = 2 + 1 + varint_len(len) + len;
    1 + varint_len(inner) + inner
}

/// The longest line a Kinesis record holds, alone in an aggregate or not.
fn max_line(aggregated: bool) -> usize {
    if !aggregated {
        return MAX_RECORD_BYTES - KEY_LEN;
    }
    let fits = |len| EMPTY_AGGREGATE_LEN + user_record_len(len) + KEY_LEN <= MAX_RECORD_BYTES;
    // Framing a line takes fewer than 16 bytes.
    let mut len = MAX_RECORD_BYTES - EMPTY_AGGREGATE_LEN - KEY_LEN - 16;
    while fits(len + 1) {
        len += 1;
    }
    len
}

/// Lines gathered into one KPL aggregate, all under one random key.
#[derive(Default)]
struct Aggregator {
    key: String,
    data: Vec<u8>,
    ends: Vec<usize>,
    /// The aggregate's length so far.
    len: usize,
}

impl Aggregator {
    /// Adds a line (at most [`max_line`]); the aggregate it closed first, if
    /// the line did not fit in it.
    fn push(&mut self, line: &[u8], keys: &mut Keys) -> Option<Entry> {
        let full = self.ends.len() >= MAX_AGGREGATE_RECORDS
            || self.len + user_record_len(line.len()) + KEY_LEN > MAX_RECORD_BYTES;
        let closed = if full { self.take() } else { None };
        if self.ends.is_empty() {
            self.key = keys.next_key();
            self.len = EMPTY_AGGREGATE_LEN;
        }
        self.len += user_record_len(line.len());
        self.data.extend_from_slice(line);
        self.ends.push(self.data.len());
        closed
    }

    /// The aggregate of the lines so far, if any; empties this.
    fn take(&mut self) -> Option<Entry> {
        if self.ends.is_empty() {
            return None;
        }
        let mut start = 0;
        let records: Vec<(&str, &[u8])> = self
            .ends
            .iter()
            .map(|&end| {
                let record = (self.key.as_str(), &self.data[start..end]);
                start = end;
                record
            })
            .collect();
        let data = aggregate(&records);
        let entry = Entry {
            key: std::mem::take(&mut self.key),
            data,
            lines: self.ends.len() as u64,
            line_bytes: self.data.len() as u64,
        };
        self.data.clear();
        self.ends.clear();
        self.len = 0;
        Some(entry)
    }
}

/// Entries for one PutRecords call, within its count and size limits.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    bytes: usize,
}

impl Batch {
    /// Adds an entry; the batch before it, if the entry did not fit in it.
    fn add(&mut self, entry: Entry) -> Option<Vec<Entry>> {
        let full =
            self.entries.len() >= MAX_CALL_RECORDS || self.bytes + entry.size() > MAX_CALL_BYTES;
        let closed = if full && !self.entries.is_empty() {
            Some(self.take())
        } else {
            None
        };
        self.bytes += entry.size();
        self.entries.push(entry);
        closed
    }

    fn is_full(&self) -> bool {
        self.entries.len() >= MAX_CALL_RECORDS
    }

    fn take(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

/// What was accepted, retried and refused, across the calls in flight.
#[derive(Default)]
struct Counters {
    lines: AtomicU64,
    line_bytes: AtomicU64,
    kinesis_records: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    bar: Option<ProgressBar>,
}

impl Counters {
    fn accepted(&self, entry: &Entry) {
        self.lines.fetch_add(entry.lines, Ordering::Relaxed);
        self.line_bytes
            .fetch_add(entry.line_bytes, Ordering::Relaxed);
        self.kinesis_records.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(entry.lines);
        }
    }

    fn refused(&self, entry: &Entry, why: String) {
        self.failed.fetch_add(entry.lines, Ordering::Relaxed);
        let mut first = self.first_refusal.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }
}

/// Sends lines as they come: aggregates, batches, and PutRecords calls in
/// flight on the runtime.
struct Sender {
    rt: tokio::runtime::Runtime,
    put: Arc<KinesisPut>,
    counters: Arc<Counters>,
    policy: RetryPolicy,
    keys: Keys,
    aggregator: Option<Aggregator>,
    batch: Batch,
    /// When the oldest line not yet handed to a call came.
    pending_since: Option<Instant>,
    in_flight: JoinSet<Result<()>>,
}

impl Sender {
    fn push_line(&mut self, line: &[u8]) -> Result<()> {
        self.pending_since.get_or_insert_with(Instant::now);
        let entry = match &mut self.aggregator {
            Some(aggregator) => aggregator.push(line, &mut self.keys),
            None => Some(Entry {
                key: self.keys.next_key(),
                data: line.to_vec(),
                lines: 1,
                line_bytes: line.len() as u64,
            }),
        };
        match entry {
            Some(entry) => self.push_entry(entry),
            None => Ok(()),
        }
    }

    fn push_entry(&mut self, entry: Entry) -> Result<()> {
        if let Some(full) = self.batch.add(entry) {
            self.submit(full)?;
        }
        if self.batch.is_full() {
            let full = self.batch.take();
            self.submit(full)?;
        }
        Ok(())
    }

    /// Starts a PutRecords call of `entries`, once fewer than [`IN_FLIGHT`]
    /// are running.
    fn submit(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.pending_since = None;
        if entries.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.join_one()?;
        }
        let put = Arc::clone(&self.put);
        let counters = Arc::clone(&self.counters);
        let policy = self.policy;
        self.in_flight.spawn_on(
            async move { put_all(&*put, entries, policy, &counters).await },
            self.rt.handle(),
        );
        Ok(())
    }

    /// Waits for one call in flight; its error, if it gave up.
    fn join_one(&mut self) -> Result<()> {
        match self.rt.block_on(self.in_flight.join_next()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(anyhow!("a PutRecords task failed: {e}")),
        }
    }

    /// Sends what is gathered: the open aggregate and the batch.
    fn flush(&mut self) -> Result<()> {
        if let Some(entry) = self.aggregator.as_mut().and_then(Aggregator::take) {
            self.push_entry(entry)?;
        }
        let rest = self.batch.take();
        self.submit(rest)
    }

    /// [`Sender::flush`] when the oldest line gathered waited [`LINGER`].
    fn linger(&mut self) -> Result<()> {
        match self.pending_since {
            Some(since) if since.elapsed() >= LINGER => self.flush(),
            _ => Ok(()),
        }
    }

    /// Sends the rest and waits for every call.
    fn finish(mut self) -> Result<()> {
        self.flush()?;
        while !self.in_flight.is_empty() {
            self.join_one()?;
        }
        Ok(())
    }
}

/// Backoff between attempts, and when to give up.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    min_delay: Duration,
    max_delay: Duration,
    /// How long attempts may fail (taking nothing) before giving up.
    give_up: Duration,
}

impl RetryPolicy {
    const DEFAULT: RetryPolicy = RetryPolicy {
        min_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(10),
        give_up: Duration::from_secs(300),
    };

    fn backoff(&self) -> impl Iterator<Item = Duration> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

/// Why a whole PutRecords call failed.
#[derive(Debug)]
enum CallError {
    /// Throttling, a server error, a timeout, a lost connection: try again.
    Transient(String),
    /// Anything else: the replay stops.
    Fatal(anyhow::Error),
}

/// Per entry of a call, `None` if the stream took it, else its error code
/// and message.
type Answers = Vec<Option<(String, String)>>;

/// One PutRecords call.
trait Put {
    fn put(&self, entries: &[Entry]) -> impl Future<Output = Result<Answers, CallError>> + Send;
}

/// PutRecords on a Kinesis stream, without the SDK's own retries:
/// [`put_all`] retries.
struct KinesisPut {
    client: Client,
    stream: String,
}

impl Put for KinesisPut {
    async fn put(&self, entries: &[Entry]) -> Result<Answers, CallError> {
        let records = entries
            .iter()
            .map(|entry| {
                PutRecordsRequestEntry::builder()
                    .partition_key(&entry.key)
                    .data(Blob::new(entry.data.clone()))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CallError::Fatal(anyhow!(e).context("a PutRecords entry")))?;
        let request = self.client.put_records().set_records(Some(records));
        let request = if is_arn(&self.stream) {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let answer = request
            .customize()
            .config_override(
                aws_sdk_kinesis::Config::builder()
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    ),
            )
            .send()
            .await;
        match answer {
            Ok(answer) => Ok(answer
                .records()
                .iter()
                .map(|record| {
                    record.error_code().map(|code| {
                        let message = record.error_message().unwrap_or_default();
                        (code.to_owned(), message.to_owned())
                    })
                })
                .collect()),
            Err(e) => Err(classify(&e, &self.stream)),
        }
    }
}

fn classify<E>(e: &SdkError<E, HttpResponse>, stream: &str) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = DisplayErrorContext(e).to_string();
    let fatal = |text: String| CallError::Fatal(anyhow!("PutRecords to {stream:?}: {text}"));
    match e {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let status = service.raw().status().as_u16();
            if RETRYABLE_CALL.contains(&code) || status >= 500 || status == 429 {
                CallError::Transient(text)
            } else if code == "ResourceNotFoundException" {
                fatal(format!("the stream is gone ({text})"))
            } else {
                fatal(text)
            }
        }
        SdkError::ConstructionFailure(_) => fatal(text),
        SdkError::DispatchFailure(failure) if failure.is_user() => fatal(text),
        _ => CallError::Transient(text),
    }
}

/// Puts `todo` until every entry is accepted or refused, sending again only
/// the entries a call did not take (in their order) after a backoff. Gives up
/// with an error after `policy.give_up` of attempts that took nothing.
async fn put_all<P: Put>(
    put: &P,
    mut todo: Vec<Entry>,
    policy: RetryPolicy,
    counters: &Counters,
) -> Result<()> {
    let mut backoff = policy.backoff();
    let mut failing_since: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        match put.put(&todo).await {
            Ok(answers) => {
                if answers.len() != todo.len() {
                    bail!(
                        "PutRecords answered for {} records of {}",
                        answers.len(),
                        todo.len()
                    );
                }
                let mut retry = Vec::new();
                for (entry, answer) in todo.into_iter().zip(answers) {
                    match answer {
                        None => {
                            counters.accepted(&entry);
                            failing_since = None;
                        }
                        Some((code, message)) if RETRYABLE_ENTRY.contains(&code.as_str()) => {
                            last_error = format!("{code}: {message}");
                            retry.push(entry);
                        }
                        Some((code, message)) => {
                            counters.refused(&entry, format!("{code}: {message}"))
                        }
                    }
                }
                todo = retry;
            }
            Err(CallError::Transient(text)) => last_error = text,
            Err(CallError::Fatal(e)) => return Err(e),
        }
        if todo.is_empty() {
            return Ok(());
        }
        let failing = failing_since.get_or_insert_with(Instant::now).elapsed();
        if failing >= policy.give_up {
            let lines: u64 = todo.iter().map(|entry| entry.lines).sum();
            bail!(
                "gave up after {} s of failures: {} Kinesis records ({lines} lines) not accepted; \
                 the last error: {last_error}",
                failing.as_secs(),
                todo.len()
            );
        }
        tracing::debug!("PutRecords: {} entries to retry: {last_error}", todo.len());
        counters
            .retried
            .fetch_add(todo.len() as u64, Ordering::Relaxed);
        let wait = backoff.next().unwrap_or(policy.max_delay);
        tokio::time::sleep(wait.min(policy.give_up - failing)).await;
    }
}

#[cfg(test)]
mod tests {
    use seclake_ingest::kinesis::aggregate::{Unpacked, unpack};

    use super::*;

    fn line(i: usize, len: usize) -> Vec<u8> {
        let mut line = format!("{{\"n\":{i}}}").into_bytes();
        line.resize(len.max(line.len()), b' ');
        line
    }

    fn unpacked(entry: &Entry) -> Vec<Vec<u8>> {
        match unpack(&entry.data, usize::MAX) {
            Unpacked::Records(records) => records.into_iter().map(|r| r.data.to_vec()).collect(),
            other => panic!("not an aggregate: {other:?}"),
        }
    }

    #[test]
    fn aggregate_lengths_are_predicted_exactly() {
        let key = "0123456789abcdef0123456789abcdef";
        for len in [
            0,
            1,
            100,
            120,
            121,
            127,
            128,
            16_380,
            16_384,
            70_000,
            max_line(true),
        ] {
            for n in [1, 2, 3] {
                let data = vec![b'x'; len];
                let records = vec![(key, data.as_slice()); n];
                assert_eq!(
                    aggregate(&records).len(),
                    EMPTY_AGGREGATE_LEN + n * user_record_len(len),
                    "{n} records of {len} bytes"
                );
            }
        }
        let longest = max_line(true);
        assert_eq!(
            EMPTY_AGGREGATE_LEN + user_record_len(longest) + KEY_LEN,
            MAX_RECORD_BYTES
        );
        assert!(EMPTY_AGGREGATE_LEN + user_record_len(longest + 1) + KEY_LEN > MAX_RECORD_BYTES);
    }

    #[test]
    fn aggregates_close_at_500_lines_or_1_mib_and_keep_the_order() {
        let mut keys = Keys::new();
        let mut aggregator = Aggregator::default();
        let lines: Vec<Vec<u8>> = (0..1_200).map(|i| line(i, 50)).collect();
        let mut entries: Vec<Entry> = lines
            .iter()
            .filter_map(|l| aggregator.push(l, &mut keys))
            .collect();
        entries.extend(aggregator.take());
        assert!(aggregator.take().is_none());
        assert_eq!(
            entries.iter().map(|e| e.lines).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        let back: Vec<Vec<u8>> = entries.iter().flat_map(unpacked).collect();
        assert_eq!(back, lines);

        let lines: Vec<Vec<u8>> = (0..10).map(|i| line(i, 300_000)).collect();
        let mut entries: Vec<Entry> = lines
            .iter()
            .filter_map(|l| aggregator.push(l, &mut keys))
            .collect();
        entries.extend(aggregator.take());
        assert_eq!(
            entries.iter().map(|e| e.lines).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        for entry in &entries {
            assert!(entry.size() <= MAX_RECORD_BYTES);
            assert_eq!(entry.key.len(), KEY_LEN);
        }
        let back: Vec<Vec<u8>> = entries.iter().flat_map(unpacked).collect();
        assert_eq!(back, lines);

        let longest = line(0, max_line(true));
        let entry = aggregator
            .push(&longest, &mut keys)
            .or_else(|| aggregator.take())
            .expect("an aggregate");
        assert_eq!(entry.size(), MAX_RECORD_BYTES);
    }

    #[test]
    fn batches_hold_at_most_500_records_and_5_mib() {
        let mut keys = Keys::new();
        let entry = |keys: &mut Keys, len: usize| Entry {
            key: keys.next_key(),
            data: vec![b'x'; len],
            lines: 1,
            line_bytes: len as u64,
        };
        let mut batch = Batch::default();
        let mut calls = Vec::new();
        for _ in 0..1_100 {
            calls.extend(batch.add(entry(&mut keys, 10)));
        }
        calls.push(batch.take());
        assert_eq!(
            calls.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 100]
        );

        let largest = MAX_RECORD_BYTES - KEY_LEN;
        let mut calls = Vec::new();
        for _ in 0..12 {
            calls.extend(batch.add(entry(&mut keys, largest)));
        }
        calls.push(batch.take());
        assert_eq!(calls.iter().map(Vec::len).collect::<Vec<_>>(), [5, 5, 2]);
        for call in &calls {
            assert!(call.iter().map(Entry::size).sum::<usize>() <= MAX_CALL_BYTES);
        }
    }

    #[test]
    fn keys_are_32_hex_digits_and_differ() {
        let mut keys = Keys::new();
        let all: std::collections::HashSet<String> = (0..10_000).map(|_| keys.next_key()).collect();
        assert_eq!(all.len(), 10_000);
        assert!(
            all.iter()
                .all(|k| k.len() == KEY_LEN && k.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    /// A scripted call's answer: per entry its error code, or the call's error.
    type ScriptedAnswer = Result<Vec<Option<&'static str>>, &'static str>;

    /// Answers calls from a script, noting the keys each carried.
    struct Scripted {
        answers: Mutex<Vec<ScriptedAnswer>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(mut answers: Vec<ScriptedAnswer>) -> Scripted {
            answers.reverse();
            Scripted {
                answers: Mutex::new(answers),
                calls: Mutex::new(Vec::new()),
            }
        }
    }

    impl Put for Scripted {
        async fn put(&self, entries: &[Entry]) -> Result<Answers, CallError> {
            self.calls
                .lock()
                .unwrap()
                .push(entries.iter().map(|e| e.key.clone()).collect());
            // Past the script: every call throttled.
            let answer = self
                .answers
                .lock()
                .unwrap()
                .pop()
                .unwrap_or(Err("throttled"));
            match answer {
                Ok(codes) => Ok(codes
                    .into_iter()
                    .map(|c| c.map(|c| (c.to_owned(), "m".to_owned())))
                    .collect()),
                Err("fatal") => Err(CallError::Fatal(anyhow!("AccessDenied"))),
                Err(text) => Err(CallError::Transient(text.to_owned())),
            }
        }
    }

    fn entries(keys: &[&str]) -> Vec<Entry> {
        keys.iter()
            .map(|k| Entry {
                key: (*k).to_owned(),
                data: k.as_bytes().to_vec(),
                lines: 2,
                line_bytes: 7,
            })
            .collect()
    }

    const QUICK: RetryPolicy = RetryPolicy {
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        give_up: Duration::from_millis(200),
    };

    fn run(put: &Scripted, keys: &[&str]) -> (Result<()>, Counters) {
        let counters = Counters::default();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(put_all(put, entries(keys), QUICK, &counters));
        (result, counters)
    }

    const PTE: Option<&str> = Some("ProvisionedThroughputExceededException");

    #[test]
    fn only_the_entries_a_call_did_not_take_are_sent_again_in_order() {
        let put = Scripted::new(vec![
            Ok(vec![None, PTE, None, Some("InternalFailure"), PTE]),
            Err("503"),
            Ok(vec![None, PTE, None]),
            Ok(vec![None]),
        ]);
        let (result, counters) = run(&put, &["a", "b", "c", "d", "e"]);
        result.unwrap();
        assert_eq!(
            *put.calls.lock().unwrap(),
            [
                vec!["a", "b", "c", "d", "e"],
                vec!["b", "d", "e"],
                vec!["b", "d", "e"],
                vec!["d"],
            ]
        );
        assert_eq!(counters.kinesis_records.load(Ordering::Relaxed), 5);
        assert_eq!(counters.lines.load(Ordering::Relaxed), 10);
        assert_eq!(counters.line_bytes.load(Ordering::Relaxed), 35);
        assert_eq!(counters.retried.load(Ordering::Relaxed), 3 + 3 + 1);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_entry_refused_for_good_is_counted_not_retried() {
        let put = Scripted::new(vec![Ok(vec![None, Some("KMSDisabledException"), None])]);
        let (result, counters) = run(&put, &["a", "b", "c"]);
        result.unwrap();
        assert_eq!(put.calls.lock().unwrap().len(), 1);
        assert_eq!(counters.kinesis_records.load(Ordering::Relaxed), 2);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 2);
        assert_eq!(
            counters.first_refusal.lock().unwrap().as_deref(),
            Some("KMSDisabledException: m")
        );
    }

    #[test]
    fn failures_past_the_deadline_give_up_with_the_last_error() {
        let put = Scripted::new(vec![Ok(vec![None, PTE])]);
        let started = Instant::now();
        let (result, counters) = run(&put, &["a", "b"]);
        let error = format!("{:#}", result.unwrap_err());
        assert!(error.contains("gave up"), "{error}");
        assert!(error.contains("1 Kinesis records (2 lines)"), "{error}");
        assert!(error.contains("throttled"), "{error}");
        assert!(started.elapsed() >= QUICK.give_up);
        assert!(started.elapsed() < QUICK.give_up * 10);
        assert_eq!(counters.kinesis_records.load(Ordering::Relaxed), 1);
        assert!(put.calls.lock().unwrap().len() > 3);
    }

    #[test]
    fn a_fatal_call_error_stops_at_once() {
        let put = Scripted::new(vec![Err("503"), Err("fatal")]);
        let (result, _) = run(&put, &["a"]);
        assert!(format!("{:#}", result.unwrap_err()).contains("AccessDenied"));
        assert_eq!(put.calls.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_short_answer_is_an_error() {
        let put = Scripted::new(vec![Ok(vec![None])]);
        let (result, _) = run(&put, &["a", "b"]);
        assert!(result.is_err());
    }
}
