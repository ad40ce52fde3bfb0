//! `seclake replay --to firehose`: every line a Firehose record, a newline
//! appended, through PutRecordBatch, a few calls in flight, and only the
//! records a call did not take sent again, with backoff and jitter.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, bail};
use aws_sdk_firehose::Client;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::{DeliveryStreamStatus, DeliveryStreamType, Record};
use seclake_ingest::Flaw;

use super::aws::{
    Answers, Aws, AwsOptions, Call, CallError, Calls, Entry, Limits, Line, Lines, Put, answer,
    build_records, classify,
};
use super::{ReplayReport, ReplayTarget};

/// The most data a Firehose record holds: 1,000 KiB.
const MAX_RECORD_BYTES: usize = 1_000 * 1024;
/// The longest line sent: its record holds it and the newline.
const MAX_LINE: usize = MAX_RECORD_BYTES - 1;
/// PutRecordBatch: 500 records and 4 MiB of data a call; the entry error it
/// documents (throughput exceeded) and an internal failure are worth another
/// try.
const PUT_RECORD_BATCH: Call = Call {
    name: "PutRecordBatch",
    records: "Firehose records",
    limits: Limits::new(500, 4 << 20),
    retryable: &["ServiceUnavailableException", "InternalFailure"],
};

/// What to send to which Firehose delivery stream.
#[derive(Debug, Clone)]
pub struct FirehoseOptions {
    /// The delivery stream's name; it must exist and take direct puts.
    pub delivery_stream: String,
    /// The files, the rate, the region and endpoint.
    pub aws: AwsOptions,
}

/// Sends every line of the files to the delivery stream, each as a record
/// ending in a newline, paced to `rate`, and waits until each is accepted or
/// refused. A line too long for a record is counted failed, not sent.
pub fn replay_firehose(opts: &FirehoseOptions) -> Result<ReplayReport> {
    let started = Instant::now();
    let rt = super::aws::runtime()?;
    let client = rt.block_on(connect(opts))?;
    let counters = super::aws::send_lines(
        rt,
        client,
        &opts.delivery_stream,
        &mut FirehoseLines,
        &opts.aws,
    )?;
    let target = ReplayTarget::Firehose {
        delivery_stream: opts.delivery_stream.clone(),
        calls: counters.calls.load(Ordering::Relaxed),
        retried: counters.retried.load(Ordering::Relaxed),
    };
    Ok(counters.report(started, target))
}

/// The client for PutRecordBatch, after checking the delivery stream exists
/// and takes direct puts.
async fn connect(opts: &FirehoseOptions) -> Result<Client> {
    let aws = Aws::load(&opts.aws).await?;
    let name = &opts.delivery_stream;
    let what = format!("Firehose delivery stream {name:?}");
    let described = Client::new(&aws.checks)
        .describe_delivery_stream()
        .delivery_stream_name(name)
        .send()
        .await;
    let client = Client::new(&aws.puts);
    let answer = match described {
        Ok(answer) => answer,
        Err(e) => {
            return aws
                .check_failed(&e, &what, "DescribeDeliveryStream")
                .map(|()| client);
        }
    };
    let Some(description) = answer.delivery_stream_description() else {
        return Ok(client);
    };
    let place = &aws.place;
    let status = description.delivery_stream_status();
    if matches!(
        status,
        DeliveryStreamStatus::Creating
            | DeliveryStreamStatus::CreatingFailed
            | DeliveryStreamStatus::Deleting
            | DeliveryStreamStatus::DeletingFailed
    ) {
        bail!("{what} in {place} is {status}: it takes records once ACTIVE");
    }
    match description.delivery_stream_type() {
        source @ (DeliveryStreamType::KinesisStreamAsSource
        | DeliveryStreamType::MskAsSource
        | DeliveryStreamType::DatabaseAsSource) => {
            bail!("{what} in {place} reads from its source ({source}), it takes no PutRecordBatch")
        }
        _ => Ok(client),
    }
}

/// The record of `line`: the line and a newline, which keeps the records
/// line-delimited where Firehose concatenates them (S3 objects).
fn record_of(line: &[u8]) -> Entry {
    let mut data = Vec::with_capacity(line.len() + 1);
    data.extend_from_slice(line);
    data.push(b'\n');
    Entry {
        key: String::new(),
        data,
        lines: 1,
        line_bytes: line.len() as u64,
    }
}

/// Lines to Firehose records, one each.
struct FirehoseLines;

impl Lines for FirehoseLines {
    type Put = Client;

    fn max_line(&self) -> usize {
        MAX_LINE
    }

    fn push(&mut self, calls: &mut Calls<Client>, line: Line<'_>) -> Result<()> {
        if !matches!(line.flaw, Some(Flaw::Truncated)) {
            return calls.push(record_of(line.data));
        }
        let why = format!(
            "{}:{}: the line is longer than {MAX_LINE} bytes, more than a Firehose record \
             holds (1,000 KiB with its newline)",
            line.path.display(),
            line.n
        );
        tracing::warn!("{why}; not sent");
        calls.counters().refused(1, why);
        Ok(())
    }
}

/// PutRecordBatch to a Firehose delivery stream.
impl Put for Client {
    const CALL: Call = PUT_RECORD_BATCH;

    async fn put(&self, delivery_stream: &str, entries: &[Entry]) -> Result<Answers, CallError> {
        let records = build_records(entries, |entry| {
            Record::builder()
                .data(Blob::new(entry.data.clone()))
                .build()
        })?;
        let sent = self
            .put_record_batch()
            .delivery_stream_name(delivery_stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| classify(&e, PUT_RECORD_BATCH.name, delivery_stream))?;
        if sent.failed_put_count() == 0 {
            return Ok(vec![None; entries.len()]);
        }
        let responses = sent.request_responses().iter();
        Ok(responses
            .map(|r| answer(r.error_code(), r.error_message()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_the_line_and_a_newline_within_1000_kib() {
        let record = record_of(br#"{"n":1}"#);
        assert_eq!(record.data, b"{\"n\":1}\n");
        assert_eq!((record.lines, record.line_bytes), (1, 7));
        assert!(record.key.is_empty());
        let longest = record_of(&vec![b'x'; MAX_LINE]);
        assert_eq!(longest.size(), 1_024_000);
        assert!(longest.size() <= PUT_RECORD_BATCH.limits.bytes / 4);
    }
}
