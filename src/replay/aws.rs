//! What the AWS targets of `seclake replay` (Kinesis, Firehose) share: the
//! clients' config, batches within a call's limits, a few calls in flight, and
//! only the entries a call did not take sent again, with backoff and jitter.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
// Every AWS SDK's `SdkError` and `HttpResponse` are aws-smithy-runtime-api's:
// these are Firehose's as much as Kinesis's.
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use backon::BackoffBuilder as _;
use indicatif::ProgressBar;
use seclake_ingest::Flaw;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use super::{Pacer, ReplayReport, ReplayTarget, for_each_line, log_failed, progress_bar};

/// Put calls in flight at once.
const IN_FLIGHT: usize = 4;
/// How long a paced replay lets a partial batch wait before sending it.
const LINGER: Duration = Duration::from_millis(200);
/// The time one put attempt may take before it counts as failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
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

/// What a replay to Kinesis or Firehose sends, how fast, and where its
/// clients go.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// The region; else the standard AWS chain's (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Another endpoint than AWS's (kinesis-local, moto, a VPC endpoint).
    pub endpoint: Option<String>,
    /// Lines per second; `None` sends as fast as the stream takes them.
    pub rate: Option<f64>,
    /// NDJSON files, plain or `.gz`, sent in this order, line by line.
    pub files: Vec<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
}

/// The runtime a replay's clients and calls run on.
pub(super) fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// A replay's AWS config: region and credentials from the standard chain
/// unless given, and the endpoint if not AWS's.
pub(super) struct Aws {
    /// For the checks before sending, with the SDK's own retries.
    pub checks: SdkConfig,
    /// For the put calls: no SDK retries ([`put_all`] retries only what a
    /// call did not take) and a time limit per attempt.
    pub puts: SdkConfig,
    /// The region, and the endpoint when given, for messages.
    pub place: String,
}

impl Aws {
    /// Loads the chain; fails when it yields no region.
    pub async fn load(opts: &AwsOptions) -> Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &opts.region {
            loader = loader.region(Region::new(region.clone()));
        }
        let endpoint = opts.endpoint.as_deref();
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let checks = loader.load().await;
        let Some(region) = checks.region() else {
            bail!("no AWS region: pass --region, or set AWS_REGION or a profile's region");
        };
        let place = match endpoint {
            Some(endpoint) => format!("{region} at {endpoint}"),
            None => region.to_string(),
        };
        let timeouts = checks
            .timeout_config()
            .map(TimeoutConfig::to_builder)
            .unwrap_or_default()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let puts = checks
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .build();
        Ok(Aws {
            checks,
            puts,
            place,
        })
    }

    /// What a failed check that `what` exists (`check`, the call) means:
    /// `Ok` with a warning when the check was not allowed, else the error.
    pub fn check_failed<E>(
        &self,
        e: &SdkError<E, HttpResponse>,
        what: &str,
        check: &str,
    ) -> Result<()>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let place = &self.place;
        match e.code() {
            Some("ResourceNotFoundException") => bail!("{what} not found in {place}"),
            Some("AccessDeniedException") => {
                tracing::warn!(
                    "cannot describe {what} ({}); sending anyway",
                    DisplayErrorContext(e)
                );
                Ok(())
            }
            _ => Err(anyhow!("{}", DisplayErrorContext(e)))
                .with_context(|| format!("{check} of {what} in {place}")),
        }
    }
}

/// One record to put: a line, or (Kinesis) a KPL aggregate of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Kinesis's partition key; empty for Firehose, which has none.
    pub key: String,
    pub data: Vec<u8>,
    /// The lines in it.
    pub lines: u64,
    /// Their bytes.
    pub line_bytes: u64,
}

impl Entry {
    /// What it counts toward the record and call limits.
    pub fn size(&self) -> usize {
        self.key.len() + self.data.len()
    }
}

/// The most one put call takes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Records.
    pub records: usize,
    /// Bytes of data (and partition keys).
    pub bytes: usize,
}

impl Limits {
    /// At most `records` records and `bytes` bytes a call.
    pub const fn new(records: usize, bytes: usize) -> Limits {
        Limits { records, bytes }
    }
}

/// Entries for one put call, within its limits.
struct Batch {
    limits: Limits,
    entries: Vec<Entry>,
    bytes: usize,
}

impl Batch {
    fn new(limits: Limits) -> Batch {
        Batch {
            limits,
            entries: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an entry; the batch before it, if the entry did not fit in it.
    fn add(&mut self, entry: Entry) -> Option<Vec<Entry>> {
        let full = self.entries.len() >= self.limits.records
            || self.bytes + entry.size() > self.limits.bytes;
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
        self.entries.len() >= self.limits.records
    }

    fn take(&mut self) -> Vec<Entry> {
        self.bytes = 0;
        std::mem::take(&mut self.entries)
    }
}

/// What was accepted, retried and refused, across the calls in flight.
#[derive(Default)]
pub(super) struct Counters {
    pub lines: AtomicU64,
    pub line_bytes: AtomicU64,
    /// Entries accepted: a KPL aggregate counts once.
    pub records: AtomicU64,
    /// Put calls made, retries included.
    pub calls: AtomicU64,
    /// Entries sent again after a refusal or a failed call.
    pub retried: AtomicU64,
    /// Lines refused, given up on or not sent.
    pub failed: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    bar: Option<ProgressBar>,
}

impl Counters {
    fn accepted(&self, entry: &Entry) {
        self.lines.fetch_add(entry.lines, Ordering::Relaxed);
        self.line_bytes
            .fetch_add(entry.line_bytes, Ordering::Relaxed);
        self.records.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(entry.lines);
        }
    }

    /// Counts `lines` as failed, for `why`.
    pub fn refused(&self, lines: u64, why: String) {
        self.failed.fetch_add(lines, Ordering::Relaxed);
        let mut first = self.first_refusal.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(why);
    }

    /// The replay's report: what was accepted, and the lines that failed.
    pub fn report(&self, started: Instant, target: ReplayTarget) -> ReplayReport {
        ReplayReport::new(
            self.lines.load(Ordering::Relaxed),
            self.line_bytes.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            started,
            target,
        )
    }
}

/// Backoff between attempts, and when to give up.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
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

/// Why a whole put call failed.
#[derive(Debug)]
pub(super) enum CallError {
    /// Throttling, a server error, a timeout, a lost connection: try again.
    Transient(String),
    /// Anything else: the replay stops.
    Fatal(anyhow::Error),
}

/// Per entry of a call, `None` if the target took it, else its error code
/// and message.
pub(super) type Answers = Vec<Option<(String, String)>>;

/// One entry's answer from the error code and message a call gave it.
pub(super) fn answer(code: Option<&str>, message: Option<&str>) -> Option<(String, String)> {
    code.map(|code| (code.to_owned(), message.unwrap_or_default().to_owned()))
}

/// The SDK's records of `entries`, each made by `build`.
pub(super) fn build_records<T, E>(
    entries: &[Entry],
    build: impl Fn(&Entry) -> Result<T, E>,
) -> Result<Vec<T>, CallError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    entries
        .iter()
        .map(build)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CallError::Fatal(anyhow!(e).context("building a record")))
}

/// A target's put call: its name and limits, and the refusals of an entry
/// worth another try.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call {
    /// The call's name, for messages.
    pub name: &'static str,
    /// What the target calls its records, for messages.
    pub records: &'static str,
    /// The most one call takes.
    pub limits: Limits,
    /// Per-entry error codes worth another try.
    pub retryable: &'static [&'static str],
}

/// One put call (PutRecords, PutRecordBatch) by a client without the SDK's
/// own retries: [`put_all`] retries.
pub(super) trait Put: Send + Sync + 'static {
    /// Which call, and its limits.
    const CALL: Call;

    /// Puts `entries` to `target`, the stream's name (or ARN).
    fn put(
        &self,
        target: &str,
        entries: &[Entry],
    ) -> impl Future<Output = Result<Answers, CallError>> + Send;
}

/// Whether a whole call to `target` that failed with `e` is worth another try.
pub(super) fn classify<E>(e: &SdkError<E, HttpResponse>, call: &str, target: &str) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = DisplayErrorContext(e).to_string();
    let fatal = |text: String| CallError::Fatal(anyhow!("{call} to {target:?}: {text}"));
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
    target: &str,
    mut todo: Vec<Entry>,
    policy: RetryPolicy,
    counters: &Counters,
) -> Result<()> {
    let mut backoff = policy.backoff();
    let mut failing_since: Option<Instant> = None;
    let mut last_error = String::new();
    loop {
        counters.calls.fetch_add(1, Ordering::Relaxed);
        match put.put(target, &todo).await {
            Ok(answers) => {
                if answers.len() != todo.len() {
                    bail!(
                        "{} answered for {} records of {}",
                        P::CALL.name,
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
                        Some((code, message)) if P::CALL.retryable.contains(&code.as_str()) => {
                            last_error = format!("{code}: {message}");
                            retry.push(entry);
                        }
                        Some((code, message)) => {
                            counters.refused(entry.lines, format!("{code}: {message}"))
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
                "gave up after {} s of failures: {} {} ({lines} lines) not accepted; \
                 the last error: {last_error}",
                failing.as_secs(),
                todo.len(),
                P::CALL.records
            );
        }
        tracing::debug!(
            "{}: {} entries to retry: {last_error}",
            P::CALL.name,
            todo.len()
        );
        counters
            .retried
            .fetch_add(todo.len() as u64, Ordering::Relaxed);
        let wait = backoff.next().unwrap_or(policy.max_delay);
        tokio::time::sleep(wait.min(policy.give_up - failing)).await;
    }
}

/// Batches entries as they come, and runs put calls of them on the runtime,
/// [`IN_FLIGHT`] at most.
pub(super) struct Calls<P> {
    rt: Runtime,
    put: Arc<P>,
    /// The stream's name (or ARN).
    target: Arc<str>,
    counters: Arc<Counters>,
    policy: RetryPolicy,
    batch: Batch,
    /// When the oldest line not yet handed to a call came.
    pending_since: Option<Instant>,
    in_flight: JoinSet<Result<()>>,
}

impl<P: Put> Calls<P> {
    /// What the calls counted so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Adds an entry, starting a call of the batch it filled or closed.
    pub fn push(&mut self, entry: Entry) -> Result<()> {
        if let Some(full) = self.batch.add(entry) {
            self.submit(full)?;
        }
        if self.batch.is_full() {
            let full = self.batch.take();
            self.submit(full)?;
        }
        Ok(())
    }

    /// Starts a call of `entries`, once fewer than [`IN_FLIGHT`] are running.
    fn submit(&mut self, entries: Vec<Entry>) -> Result<()> {
        self.pending_since = None;
        if entries.is_empty() {
            return Ok(());
        }
        while self.in_flight.len() >= IN_FLIGHT {
            self.join_one()?;
        }
        let put = Arc::clone(&self.put);
        let target = Arc::clone(&self.target);
        let counters = Arc::clone(&self.counters);
        let policy = self.policy;
        self.in_flight.spawn_on(
            async move { put_all(&*put, &target, entries, policy, &counters).await },
            self.rt.handle(),
        );
        Ok(())
    }

    /// Waits for one call in flight; its error, if it gave up.
    fn join_one(&mut self) -> Result<()> {
        match self.rt.block_on(self.in_flight.join_next()) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(e)) => Err(anyhow!("a {} task failed: {e}", P::CALL.name)),
        }
    }

    /// Whether the oldest line not yet in a call waited [`LINGER`].
    fn lingered(&self) -> bool {
        self.pending_since
            .is_some_and(|since| since.elapsed() >= LINGER)
    }

    /// Starts a call of the batch so far.
    fn flush(&mut self) -> Result<()> {
        let rest = self.batch.take();
        self.submit(rest)
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

/// A line of a file, with where it is for messages.
pub(super) struct Line<'a> {
    pub path: &'a Path,
    /// Its line number.
    pub n: u64,
    pub data: &'a [u8],
    /// [`Flaw::Truncated`] when longer than [`Lines::max_line`].
    pub flaw: Option<Flaw>,
}

/// A target's way from lines to entries.
pub(super) trait Lines {
    type Put: Put;

    /// The longest line it reads whole; a longer one comes cut, with
    /// [`Flaw::Truncated`].
    fn max_line(&self) -> usize;

    /// Hands `line` to `calls`, as an entry or into one it holds.
    fn push(&mut self, calls: &mut Calls<Self::Put>, line: Line<'_>) -> Result<()>;

    /// Hands `calls` the entry it holds, if any.
    fn flush(&mut self, _calls: &mut Calls<Self::Put>) -> Result<()> {
        Ok(())
    }
}

/// Sends every line of the files through `lines` and `put` to `target`,
/// paced to the rate, and waits until each entry is accepted or refused; what
/// was counted.
pub(super) fn send_lines<L: Lines>(
    rt: Runtime,
    put: L::Put,
    target: &str,
    lines: &mut L,
    opts: &AwsOptions,
) -> Result<Arc<Counters>> {
    let bar = progress_bar(opts.progress);
    let counters = Arc::new(Counters {
        bar: bar.clone(),
        ..Counters::default()
    });
    let mut calls = Calls {
        rt,
        put: Arc::new(put),
        target: target.into(),
        counters: Arc::clone(&counters),
        policy: RetryPolicy::DEFAULT,
        batch: Batch::new(L::Put::CALL.limits),
        pending_since: None,
        in_flight: JoinSet::new(),
    };
    let pacer = Pacer::new(opts.rate);
    let mut sent = 0u64;
    for_each_line(
        &opts.files,
        lines.max_line(),
        bar.as_ref(),
        |path, n, data, flaw| {
            calls.pending_since.get_or_insert_with(Instant::now);
            let line = Line {
                path,
                n,
                data,
                flaw,
            };
            lines.push(&mut calls, line)?;
            sent += 1;
            if let Some(ahead) = pacer.ahead(sent) {
                if calls.lingered() {
                    lines.flush(&mut calls)?;
                    calls.flush()?;
                }
                std::thread::sleep(ahead);
            }
            Ok(())
        },
    )?;
    lines.flush(&mut calls)?;
    calls.finish()?;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let failed = counters.failed.load(Ordering::Relaxed);
    log_failed(failed, &counters.first_refusal, "accepted");
    Ok(counters)
}

#[cfg(test)]
mod tests {
    use aws_sdk_firehose::Client as FirehoseClient;
    use aws_sdk_kinesis::Client as KinesisClient;

    use super::*;

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

    /// Kinesis's names and codes.
    impl Put for Scripted {
        const CALL: Call = <KinesisClient as Put>::CALL;

        async fn put(&self, _: &str, entries: &[Entry]) -> Result<Answers, CallError> {
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
        let result = rt.block_on(put_all(put, "s", entries(keys), QUICK, &counters));
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
        assert_eq!(counters.records.load(Ordering::Relaxed), 5);
        assert_eq!(counters.lines.load(Ordering::Relaxed), 10);
        assert_eq!(counters.line_bytes.load(Ordering::Relaxed), 35);
        assert_eq!(counters.calls.load(Ordering::Relaxed), 4);
        assert_eq!(counters.retried.load(Ordering::Relaxed), 3 + 3 + 1);
        assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_entry_refused_for_good_is_counted_not_retried() {
        let put = Scripted::new(vec![Ok(vec![None, Some("KMSDisabledException"), None])]);
        let (result, counters) = run(&put, &["a", "b", "c"]);
        result.unwrap();
        assert_eq!(put.calls.lock().unwrap().len(), 1);
        assert_eq!(counters.records.load(Ordering::Relaxed), 2);
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
        assert_eq!(counters.records.load(Ordering::Relaxed), 1);
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

    #[test]
    fn batches_keep_to_the_call_limits() {
        let entry = |len: usize| Entry {
            key: String::new(),
            data: vec![b'x'; len],
            lines: 1,
            line_bytes: len as u64,
        };
        // The limits, the largest record, and the calls 12 of those make.
        let cases = [
            (<KinesisClient as Put>::CALL.limits, 1 << 20, [5, 5, 2]),
            (<FirehoseClient as Put>::CALL.limits, 1_024_000, [4, 4, 4]),
        ];
        for (limits, largest, calls_of_largest) in cases {
            let mut batch = Batch::new(limits);
            let mut calls = Vec::new();
            for _ in 0..1_100 {
                calls.extend(batch.add(entry(10)));
            }
            calls.push(batch.take());
            assert_eq!(
                calls.iter().map(Vec::len).collect::<Vec<_>>(),
                [500, 500, 100]
            );

            let mut calls = Vec::new();
            for _ in 0..12 {
                calls.extend(batch.add(entry(largest)));
            }
            calls.extend(Some(batch.take()).filter(|rest| !rest.is_empty()));
            let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
            assert_eq!(sizes, calls_of_largest, "{limits:?}");
            for call in &calls {
                assert!(call.iter().map(Entry::size).sum::<usize>() <= limits.bytes);
            }
        }
    }
}
