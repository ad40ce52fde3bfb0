//! `seclake replay --to kinesis`: every line a Kinesis record (or packed into
//! KPL aggregated records) through PutRecords, a few calls in flight, and
//! only the entries a call did not take sent again, with backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher as _;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, anyhow, bail};
use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, StreamStatus};
use seclake_ingest::Flaw;
use seclake_ingest::kinesis::aggregate::aggregate;

use super::aws::{
    Answers, Aws, AwsOptions, Call, CallError, Calls, Entry, Limits, Line, Lines, Put, answer,
    build_records, classify,
};
use super::{ReplayReport, ReplayTarget, for_each_line};

/// The most a Kinesis record holds: its data and partition key together.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// PutRecords: 500 records and 5 MiB of data and partition keys a call; the
/// entry errors it documents are worth another try.
const PUT_RECORDS: Call = Call {
    name: "PutRecords",
    records: "Kinesis records",
    limits: Limits::new(500, 5 << 20),
    retryable: &["ProvisionedThroughputExceededException", "InternalFailure"],
};
/// The most user records in one KPL aggregate.
const MAX_AGGREGATE_RECORDS: usize = 500;
/// Partition keys are 128 random bits in hex.
const KEY_LEN: usize = 32;

/// What to send to which Kinesis stream.
#[derive(Debug, Clone)]
pub struct KinesisOptions {
    /// The stream's name or ARN.
    pub stream: String,
    /// Pack the lines into KPL aggregated records.
    pub aggregate: bool,
    /// The files, the rate, the region and endpoint.
    pub aws: AwsOptions,
}

/// Sends every line of the files to the stream, paced to `rate`, and waits
/// until each PutRecords entry is accepted or refused. The files are read
/// twice: first to refuse a line no Kinesis record can hold before sending.
pub fn replay_kinesis(opts: &KinesisOptions) -> Result<ReplayReport> {
    let started = Instant::now();
    let rt = super::aws::runtime()?;
    let (client, shards) = rt.block_on(connect(opts))?;
    let max_line = max_line(opts.aggregate);
    for_each_line(
        &opts.aws.files,
        max_line,
        None,
        |path, line, _, flaw| match flaw {
            Some(Flaw::Truncated) => Err(too_long(path, line, max_line, opts.aggregate)
                .context("nothing was sent: every line is checked first")),
            _ => Ok(()),
        },
    )?;

    let mut lines = KinesisLines {
        max_line,
        keys: Keys::new(),
        aggregator: opts.aggregate.then(Aggregator::default),
    };
    let counters = super::aws::send_lines(rt, client, &opts.stream, &mut lines, &opts.aws)?;
    Ok(counters.report(
        started,
        ReplayTarget::Kinesis {
            stream: opts.stream.clone(),
            shards,
            kinesis_records: counters.records.load(Ordering::Relaxed),
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

/// The client for PutRecords, after checking the stream exists and takes
/// records; its open shard count when DescribeStreamSummary is allowed.
async fn connect(opts: &KinesisOptions) -> Result<(Client, Option<i32>)> {
    let aws = Aws::load(&opts.aws).await?;
    let client = Client::new(&aws.puts);
    let stream = &opts.stream;
    let what = format!("Kinesis stream {stream:?}");
    let request = Client::new(&aws.checks).describe_stream_summary();
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
                    "{what} in {} is {}: it takes records once ACTIVE",
                    aws.place,
                    summary.stream_status()
                ),
                _ => Ok((client, Some(summary.open_shard_count()))),
            }
        }
        Err(e) => aws
            .check_failed(&e, &what, "DescribeStreamSummary")
            .map(|()| (client, None)),
    }
}

fn is_arn(stream: &str) -> bool {
    stream.starts_with("arn:")
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

/// Lines to Kinesis records: one each, or packed into KPL aggregates.
struct KinesisLines {
    /// The longest line a record holds (checked before sending).
    max_line: usize,
    keys: Keys,
    aggregator: Option<Aggregator>,
}

impl Lines for KinesisLines {
    type Put = Client;

    fn max_line(&self) -> usize {
        // Lines come whole: `push` refuses one grown since the check.
        usize::MAX >> 1
    }

    fn push(&mut self, calls: &mut Calls<Client>, line: Line<'_>) -> Result<()> {
        let Line { path, n, data, .. } = line;
        if data.len() > self.max_line {
            // Grown since it was checked.
            return Err(too_long(path, n, self.max_line, self.aggregator.is_some()));
        }
        let entry = match &mut self.aggregator {
            Some(aggregator) => aggregator.push(data, &mut self.keys),
            None => Some(Entry {
                key: self.keys.next_key(),
                data: data.to_vec(),
                lines: 1,
                line_bytes: data.len() as u64,
            }),
        };
        match entry {
            Some(entry) => calls.push(entry),
            None => Ok(()),
        }
    }

    fn flush(&mut self, calls: &mut Calls<Client>) -> Result<()> {
        match self.aggregator.as_mut().and_then(Aggregator::take) {
            Some(entry) => calls.push(entry),
            None => Ok(()),
        }
    }
}

/// PutRecords to a Kinesis stream.
impl Put for Client {
    const CALL: Call = PUT_RECORDS;

    async fn put(&self, stream: &str, entries: &[Entry]) -> Result<Answers, CallError> {
        let records = build_records(entries, |entry| {
            PutRecordsRequestEntry::builder()
                .partition_key(&entry.key)
                .data(Blob::new(entry.data.clone()))
                .build()
        })?;
        let request = self.put_records().set_records(Some(records));
        let request = if is_arn(stream) {
            request.stream_arn(stream)
        } else {
            request.stream_name(stream)
        };
        match request.send().await {
            Ok(sent) => Ok(sent
                .records()
                .iter()
                .map(|record| answer(record.error_code(), record.error_message()))
                .collect()),
            Err(e) => Err(classify(&e, PUT_RECORDS.name, stream)),
        }
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
    fn keys_are_32_hex_digits_and_differ() {
        let mut keys = Keys::new();
        let all: std::collections::HashSet<String> = (0..10_000).map(|_| keys.next_key()).collect();
        assert_eq!(all.len(), 10_000);
        assert!(
            all.iter()
                .all(|k| k.len() == KEY_LEN && k.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
