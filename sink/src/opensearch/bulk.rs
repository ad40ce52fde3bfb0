//! One `_bulk` job: sends its items, retries the ones that may still
//! succeed, alone, with backoff and jitter, and settles every item as
//! indexed, rejected for good, or left unsent when the retry time ran out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::BackoffBuilder as _;
use bytes::{Bytes, BytesMut};
use opensearch::OpenSearch;
use opensearch::http::Method;
use opensearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::encode::Item;

/// The cluster every job of a sink talks to, and how long it has been failing.
pub(crate) struct Cluster {
    pub client: OpenSearch,
    /// When the current run of whole-request failures began.
    failing_since: Mutex<Option<Instant>>,
    /// How long a request may take.
    pub timeout: Duration,
    /// How long items are retried before they go to the backup.
    pub max_retry: Duration,
}

impl Cluster {
    pub fn new(client: OpenSearch, timeout: Duration, max_retry: Duration) -> Cluster {
        Cluster {
            client,
            failing_since: Mutex::new(None),
            timeout,
            max_retry,
        }
    }

    fn answered(&self) {
        *self.failing_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn failed(&self) {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
    }

    /// True once the cluster has been failing for the whole retry time: a
    /// job then gives up after one attempt instead of waiting again.
    fn down_too_long(&self) -> bool {
        self.failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|since| since.elapsed() >= self.max_retry)
    }
}

/// Items sent together (their Acks stay with the sink, see `OpenSearchSink`).
pub(crate) struct Job {
    pub items: Vec<Item>,
}

/// How a job ended; every item is in exactly one place.
pub(crate) struct Outcome {
    /// Items OpenSearch holds.
    pub indexed: u64,
    /// Item attempts after the first.
    pub retried: u64,
    /// Requests sent.
    pub requests: u64,
    /// Bytes sent, retries included.
    pub bytes: u64,
    /// Items that can never be indexed, with OpenSearch's status and reason.
    pub rejected: Vec<(Item, u16, String)>,
    /// Items still not indexed when the retry time ran out, with the last error.
    pub unsent: Vec<(Item, String)>,
}

#[derive(Deserialize)]
struct Head {
    errors: bool,
}

#[derive(Deserialize)]
struct Full {
    items: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    caused_by: Option<Box<ItemError>>,
}

impl ItemError {
    fn describe(&self) -> String {
        let mut text = self.kind.clone();
        if let Some(reason) = &self.reason {
            text.push_str(": ");
            text.push_str(reason);
        }
        if let Some(cause) = &self.caused_by {
            text.push_str(" (caused by ");
            text.push_str(&cause.describe());
            text.push(')');
        }
        text
    }
}

/// What became of one item in one response.
enum Verdict {
    Done,
    Retry(String),
    Reject(u16, String),
}

/// Whether a failed item may succeed later: the cluster was busy (429,
/// a full write queue) or failed (5xx); anything else is the document's fault.
fn verdict(result: &ItemResult, create: bool) -> Verdict {
    let reason = || {
        result
            .error
            .as_ref()
            .map_or_else(|| format!("status {}", result.status), ItemError::describe)
    };
    match result.status {
        200..=299 => Verdict::Done,
        // The document exists: a re-delivery into a data stream.
        409 if create => Verdict::Done,
        429 | 500..=599 => Verdict::Retry(reason()),
        _ if result
            .error
            .as_ref()
            .is_some_and(|e| e.kind.contains("rejected_execution_exception")) =>
        {
            Verdict::Retry(reason())
        }
        status => Verdict::Reject(status, reason()),
    }
}

/// A request failed as a whole; every item is retried.
enum Failure {
    Transport(String),
    Status(u16, String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Transport(e) => format!("request failed: {e}"),
            Failure::Status(status, body) => format!("HTTP {status}: {body}"),
        }
    }
}

/// Runs a job to its end: every item indexed, rejected or unsent.
pub(crate) async fn run(cluster: Arc<Cluster>, job: Job, create: bool) -> Outcome {
    let started = Instant::now();
    let mut outcome = Outcome {
        indexed: 0,
        retried: 0,
        requests: 0,
        bytes: 0,
        rejected: Vec::new(),
        unsent: Vec::new(),
    };
    let mut backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build();
    let mut todo = job.items;
    let mut last_error = String::new();
    loop {
        let body = concat(&todo);
        outcome.requests += 1;
        outcome.bytes += body.len() as u64;
        match send(&cluster, body).await {
            Err(failure) => {
                cluster.failed();
                last_error = failure.describe();
                tracing::debug!("opensearch bulk: {last_error}");
            }
            Ok(response) => {
                cluster.answered();
                match settle(&response, &todo, create) {
                    Some(verdicts) => {
                        let mut retry = Vec::new();
                        for (item, verdict) in todo.into_iter().zip(verdicts) {
                            match verdict {
                                Verdict::Done => outcome.indexed += 1,
                                Verdict::Retry(reason) => {
                                    last_error = reason;
                                    retry.push(item);
                                }
                                Verdict::Reject(status, reason) => {
                                    outcome.rejected.push((item, status, reason));
                                }
                            }
                        }
                        todo = retry;
                    }
                    None => {
                        last_error = "the bulk response does not match the request".into();
                    }
                }
            }
        }
        if todo.is_empty() {
            break;
        }
        let elapsed = started.elapsed();
        if elapsed >= cluster.max_retry || cluster.down_too_long() {
            outcome
                .unsent
                .extend(todo.into_iter().map(|item| (item, last_error.clone())));
            break;
        }
        outcome.retried += todo.len() as u64;
        let wait = backoff.next().unwrap_or(Duration::from_secs(10));
        tokio::time::sleep(wait.min(cluster.max_retry - elapsed)).await;
    }
    outcome
}

fn concat(items: &[Item]) -> Bytes {
    let mut body = BytesMut::with_capacity(items.iter().map(|i| i.line.len()).sum());
    for item in items {
        body.extend_from_slice(&item.line);
    }
    body.freeze()
}

async fn send(cluster: &Cluster, body: Bytes) -> Result<Bytes, Failure> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    let response = cluster
        .client
        .transport()
        .send(
            Method::Post,
            "/_bulk",
            headers,
            Some(&[("filter_path", "errors,items.*.status,items.*.error")]),
            Some(body),
            Some(cluster.timeout),
        )
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    let status = response.status_code().as_u16();
    let text = response
        .bytes()
        .await
        .map_err(|e| Failure::Transport(e.to_string()))?;
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        let shown = String::from_utf8_lossy(&text[..text.len().min(512)]).into_owned();
        Err(Failure::Status(status, shown))
    }
}

/// One verdict per item, or `None` when the response can't be read or has a
/// different number of items.
fn settle(response: &[u8], items: &[Item], create: bool) -> Option<Vec<Verdict>> {
    let head: Head = serde_json::from_slice(response).ok()?;
    if !head.errors {
        return Some((0..items.len()).map(|_| Verdict::Done).collect());
    }
    let full: Full = serde_json::from_slice(response).ok()?;
    if full.items.len() != items.len() {
        return None;
    }
    Some(
        full.items
            .iter()
            .map(|e| verdict(&e.index, create))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(json: &str) -> ItemResult {
        serde_json::from_str(json).expect("item")
    }

    #[test]
    fn busy_and_failing_items_are_retried_and_bad_documents_rejected() {
        let queue_full = result(
            r#"{"status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}"#,
        );
        assert!(matches!(verdict(&queue_full, false), Verdict::Retry(_)));
        let unavailable =
            result(r#"{"status":503,"error":{"type":"unavailable_shards_exception"}}"#);
        assert!(matches!(verdict(&unavailable, false), Verdict::Retry(_)));
        let mapping = result(
            r#"{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [status]","caused_by":{"type":"number_format_exception","reason":"For input string: \"x\""}}}"#,
        );
        match verdict(&mapping, false) {
            Verdict::Reject(400, reason) => assert_eq!(
                reason,
                "mapper_parsing_exception: failed to parse field [status] (caused by number_format_exception: For input string: \"x\")"
            ),
            _ => panic!("a mapping error is final"),
        }
        let exists =
            result(r#"{"status":409,"error":{"type":"version_conflict_engine_exception"}}"#);
        assert!(matches!(verdict(&exists, true), Verdict::Done));
        assert!(matches!(verdict(&exists, false), Verdict::Reject(409, _)));
    }

    #[test]
    fn a_response_without_errors_settles_every_item_and_a_short_one_none() {
        let item = Item {
            line: Bytes::from_static(b"{\"index\":{}}\n{}\n"),
            doc_at: 13,
            index: "i".into(),
            format: seclake_ingest::Format::Waf,
        };
        let items = vec![item.clone(), item];
        let ok = br#"{"errors":false}"#;
        assert_eq!(settle(ok, &items, false).map(|v| v.len()), Some(2));
        let short = br#"{"errors":true,"items":[{"index":{"status":201}}]}"#;
        assert!(settle(short, &items, false).is_none());
    }
}
