//! `seclake-bench e2e --kinesis ENDPOINT`: the same records as the file run,
//! replayed once into fresh Kinesis streams (KPL aggregates, as high-volume
//! producers send), read back each round by a `[[source]] type = "kinesis"`
//! with a fresh lease table on the DynamoDB at `--kinesis-lease-endpoint`.
//! The streams and lease tables it creates are deleted when it is dropped.
//!
//! Each round also times the server alone ([`KinesisStreams::read_alone`]):
//! every shard read to its end with plain `GetRecords` calls whose answers
//! are counted and dropped. No consumer can be faster against that server
//! on this machine, so its time over the file run's is the ceiling of the
//! Kinesis → lake ratio here.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use memchr::memmem;
use seclake_benches::Format;
use seclake_fixtures::services::unique_name;
use serde::{Deserialize, Serialize};

use super::{Input, read_json, toml_str};

/// The credentials the bench and its `seclake` children sign with: the
/// local stand-ins (kinesalite, moto) accept any.
pub(crate) const CREDENTIALS: [(&str, &str); 2] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
];

/// How long a new stream may stay `CREATING`.
const ACTIVE_WAIT: Duration = Duration::from_secs(60);

/// Where the Kinesis side of `e2e` runs.
pub(crate) struct KinesisSetup<'a> {
    /// The Kinesis endpoint URL (kinesalite's).
    pub endpoint: &'a str,
    /// The lease tables' DynamoDB endpoint URL (moto's).
    pub lease_endpoint: &'a str,
    /// The region of both.
    pub region: &'a str,
    /// Shards of each stream.
    pub shards: i32,
}

/// The bench's streams, one per input, and the lease tables its runs name.
pub(crate) struct KinesisStreams {
    rt: tokio::runtime::Runtime,
    kinesis: aws_sdk_kinesis::Client,
    dynamo: aws_sdk_dynamodb::Client,
    endpoint: String,
    lease_endpoint: String,
    region: String,
    streams: Vec<(Format, String)>,
    tables: Vec<String>,
}

/// One read of every stream by the server alone.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct ServerRead {
    /// Kinesis records (KPL aggregates) answered.
    pub records: u64,
    /// Bytes of the `GetRecords` answers (JSON, base64 data).
    pub answer_bytes: u64,
    /// From the first `GetRecords` to each shard's first empty answer.
    pub seconds: f64,
}

/// The fields of `seclake replay --report-json` printed here.
#[derive(Deserialize)]
struct ReplayReport {
    records: u64,
    kinesis_records: u64,
    failed: u64,
    seconds: f64,
}

impl KinesisStreams {
    /// Creates a stream per input (`shards` each, waiting until ACTIVE) and
    /// replays the input into it with `seclake replay --to kinesis
    /// --aggregate`, untimed.
    pub(crate) fn replay(
        seclake: &Path,
        setup: &KinesisSetup<'_>,
        inputs: &[Input],
        scratch: &Path,
    ) -> Result<KinesisStreams> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting a tokio runtime")?;
        let credentials = Credentials::new(CREDENTIALS[0].1, CREDENTIALS[1].1, None, None, "bench");
        let region = Region::new(setup.region.to_owned());
        let kinesis = aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region.clone())
                .endpoint_url(setup.endpoint)
                .credentials_provider(credentials.clone())
                .build(),
        );
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(region)
                .endpoint_url(setup.lease_endpoint)
                .credentials_provider(credentials)
                .build(),
        );
        let mut streams = KinesisStreams {
            rt,
            kinesis,
            dynamo,
            endpoint: setup.endpoint.to_owned(),
            lease_endpoint: setup.lease_endpoint.to_owned(),
            region: setup.region.to_owned(),
            streams: Vec::new(),
            tables: Vec::new(),
        };
        for input in inputs {
            let stream = unique_name(&format!("seclake-bench-{}", input.format.as_str()));
            // Listed first, so that it is deleted however creating it ends.
            streams.streams.push((input.format, stream.clone()));
            streams.create(&stream, setup.shards)?;
            let report = tempfile::Builder::new()
                .prefix("replay-")
                .suffix(".json")
                .tempfile_in(scratch)
                .with_context(|| format!("creating a file in {}", scratch.display()))?;
            let status = Command::new(seclake)
                .args([
                    "replay",
                    "--to",
                    "kinesis",
                    "--aggregate",
                    "--stream",
                    &stream,
                ])
                .args(["--endpoint", setup.endpoint, "--region", setup.region])
                .arg("--report-json")
                .arg(report.path())
                .arg(&input.path)
                .envs(CREDENTIALS)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .status()
                .with_context(|| format!("running {} replay", seclake.display()))?;
            if !status.success() {
                bail!("seclake replay into Kinesis stream {stream} failed ({status})");
            }
            let sent: ReplayReport = read_json(report.path())?;
            if sent.failed > 0 || sent.records != input.lines {
                bail!(
                    "seclake replay put {} of {} lines into {stream} ({} failed)",
                    sent.records,
                    input.lines,
                    sent.failed
                );
            }
            println!(
                "kinesis: {} lines of {} replayed into {stream} ({} shards) as {} KPL aggregates in {:.1} s",
                input.lines,
                input.format.as_str(),
                setup.shards,
                sent.kinesis_records,
                sent.seconds
            );
        }
        Ok(streams)
    }

    /// CreateStream, then DescribeStreamSummary until it is ACTIVE (the SDK's
    /// waiter first waits 10 s; kinesalite takes 0.5 s).
    fn create(&self, stream: &str, shards: i32) -> Result<()> {
        self.rt.block_on(async {
            self.kinesis
                .create_stream()
                .stream_name(stream)
                .shard_count(shards)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "CreateStream {stream} at {}: {}",
                        self.endpoint,
                        DisplayErrorContext(&e)
                    )
                })?;
            let deadline = Instant::now() + ACTIVE_WAIT;
            loop {
                let summary = self
                    .kinesis
                    .describe_stream_summary()
                    .stream_name(stream)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "DescribeStreamSummary {stream}: {}",
                            DisplayErrorContext(&e)
                        )
                    })?;
                let status = summary
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                if status == Some(StreamStatus::Active) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("stream {stream} not ACTIVE after {ACTIVE_WAIT:?}: {status:?}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// Reads every shard of every stream from its start to its first empty
    /// answer (kinesalite's end of a shard), a thread per shard, with plain
    /// `GetRecords` calls over HTTP whose answers are counted, not decoded.
    /// The iterators are taken before the clock starts.
    pub(crate) fn read_alone(&self) -> Result<ServerRead> {
        let iterators = self.rt.block_on(async {
            let mut iterators = Vec::new();
            for (_, stream) in &self.streams {
                let shards = self
                    .kinesis
                    .list_shards()
                    .stream_name(stream)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow::anyhow!("ListShards {stream}: {}", DisplayErrorContext(&e))
                    })?;
                for shard in shards.shards() {
                    let iterator = self
                        .kinesis
                        .get_shard_iterator()
                        .stream_name(stream)
                        .shard_id(shard.shard_id())
                        .shard_iterator_type(ShardIteratorType::TrimHorizon)
                        .send()
                        .await
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "GetShardIterator {stream}: {}",
                                DisplayErrorContext(&e)
                            )
                        })?;
                    if let Some(iterator) = iterator.shard_iterator {
                        iterators.push(iterator);
                    }
                }
            }
            anyhow::Ok(iterators)
        })?;
        let http = reqwest::blocking::Client::new();
        let started = Instant::now();
        let shards = std::thread::scope(|scope| {
            let readers: Vec<_> = iterators
                .into_iter()
                .map(|iterator| scope.spawn(|| self.read_shard(&http, iterator)))
                .collect();
            readers
                .into_iter()
                .map(|r| {
                    r.join()
                        .map_err(|_| anyhow::anyhow!("a shard reader panicked"))?
                })
                .collect::<Result<Vec<(u64, u64)>>>()
        })?;
        Ok(ServerRead {
            records: shards.iter().map(|s| s.0).sum(),
            answer_bytes: shards.iter().map(|s| s.1).sum(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// `(records, answer bytes)` of one shard. kinesalite checks that a
    /// request is signed, not the signature.
    fn read_shard(
        &self,
        http: &reqwest::blocking::Client,
        mut iterator: String,
    ) -> Result<(u64, u64)> {
        let now = chrono::Utc::now();
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}/{}/kinesis/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={}",
            CREDENTIALS[0].1,
            now.format("%Y%m%d"),
            self.region,
            "0".repeat(64)
        );
        let date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let next_key = memmem::Finder::new(b"\"NextShardIterator\":\"");
        let record_key = memmem::Finder::new(b"\"SequenceNumber\"");
        let (mut records, mut bytes) = (0, 0);
        loop {
            let answer = http
                .post(&self.endpoint)
                .header("Content-Type", "application/x-amz-json-1.1")
                .header("X-Amz-Target", "Kinesis_20131202.GetRecords")
                .header("X-Amz-Date", &date)
                .header("Authorization", &authorization)
                .body(serde_json::json!({ "ShardIterator": iterator }).to_string())
                .send()
                .context("GetRecords")?;
            let status = answer.status();
            let body = answer.bytes().context("reading a GetRecords answer")?;
            if !status.is_success() {
                bail!(
                    "GetRecords answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            let n = record_key.find_iter(&body).count() as u64;
            if n == 0 {
                return Ok((records, bytes));
            }
            records += n;
            bytes += body.len() as u64;
            // Base64 data holds no quote, so the first match is the key.
            let next = next_key
                .find(&body)
                .map(|at| &body[at + next_key.needle().len()..])
                .and_then(|rest| Some(&rest[..memchr::memchr(b'"', rest)?]))
                .context("a GetRecords answer without NextShardIterator")?;
            iterator = String::from_utf8_lossy(next).into_owned();
        }
    }

    /// `[[source]]` tables reading every stream from its start, each with a
    /// lease table of its own that no earlier run used (deleted on drop).
    pub(crate) fn sources(&mut self) -> String {
        let mut text = String::new();
        for (format, stream) in &self.streams {
            let table = unique_name("seclake-bench-leases");
            let _ = write!(
                text,
                "[[source]]\ntype = \"kinesis\"\nformat = \"{}\"\nstream = {}\nregion = {}\n\
                 endpoint = {}\nlease_table = {}\nlease_endpoint = {}\n\n",
                format.as_str(),
                toml_str(stream),
                toml_str(&self.region),
                toml_str(&self.endpoint),
                toml_str(&table),
                toml_str(&self.lease_endpoint),
            );
            self.tables.push(table);
        }
        text
    }
}

impl Drop for KinesisStreams {
    fn drop(&mut self) {
        let Self {
            rt,
            kinesis,
            dynamo,
            streams,
            tables,
            ..
        } = self;
        rt.block_on(async {
            for (_, stream) in streams.iter() {
                let deleted = kinesis.delete_stream().stream_name(stream).send().await;
                warn_unless_gone(&format!("Kinesis stream {stream}"), deleted);
            }
            // A run that failed before creating its table leaves none.
            for table in tables.iter() {
                let deleted = dynamo.delete_table().table_name(table).send().await;
                warn_unless_gone(&format!("lease table {table}"), deleted);
            }
        });
    }
}

/// Warns about a failed delete of `what`, unless it was not there.
fn warn_unless_gone<T, E, R>(what: &str, deleted: Result<T, SdkError<E, R>>)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if let Err(e) = deleted
        && e.code() != Some("ResourceNotFoundException")
    {
        eprintln!("warning: deleting {what}: {}", DisplayErrorContext(&e));
    }
}
