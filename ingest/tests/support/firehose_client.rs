//! A client that delivers as Amazon Data Firehose does to an HTTP endpoint,
//! per AWS's "HTTP endpoint delivery request and response specifications":
//! the protocol headers, a JSON body with `requestId`, a `timestamp` in
//! milliseconds and base64 `records`, optional gzip, and on any answer but
//! 200 a retry of the same request (same id) after a backoff. Every answer
//! is checked against the response specification. Shared by the ingest and
//! the root crate's tests (`#[path]`).
#![allow(dead_code)] // each test crate uses its own share

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The stream ARN the client says it delivers for.
pub const SOURCE_ARN: &str =
    "arn:aws:firehose:ap-northeast-2:123456789012:deliverystream/seclake-test";

/// One answer of the endpoint, already checked against the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// `requestId` of the answer's body.
    pub request_id: String,
    /// `timestamp` of the answer's body, milliseconds since the epoch.
    pub timestamp: u64,
    pub error_message: Option<String>,
}

/// What the client sends with each request.
#[derive(Debug, Clone)]
pub struct FirehoseClient {
    pub url: String,
    pub access_key: Option<String>,
    pub gzip: bool,
    /// Attempts of one delivery before the client gives up.
    pub attempts: u32,
    /// The first backoff; it doubles per attempt.
    pub backoff: Duration,
    http: reqwest::blocking::Client,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A request id unique in this test process (Firehose sends a GUID).
pub fn new_request_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        (nanos >> 32) as u32,
        std::process::id() & 0xffff,
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The JSON body of a delivery.
pub fn body(request_id: &str, records: &[&[u8]]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({ "data": STANDARD.encode(r) }))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "requestId": request_id,
        "timestamp": now_millis(),
        "records": records,
    }))
    .expect("json")
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

impl FirehoseClient {
    /// A client for `url` (e.g. `http://127.0.0.1:8443/`), no key, no gzip,
    /// one attempt.
    pub fn new(url: &str) -> FirehoseClient {
        FirehoseClient::with_http(url, reqwest::blocking::Client::new())
    }

    /// The same with a client of the caller's (TLS roots).
    pub fn with_http(url: &str, http: reqwest::blocking::Client) -> FirehoseClient {
        FirehoseClient {
            url: url.to_owned(),
            access_key: None,
            gzip: false,
            attempts: 1,
            backoff: Duration::from_millis(100),
            http,
        }
    }

    pub fn key(mut self, key: &str) -> FirehoseClient {
        self.access_key = Some(key.to_owned());
        self
    }

    pub fn gzipped(mut self) -> FirehoseClient {
        self.gzip = true;
        self
    }

    pub fn retrying(mut self, attempts: u32) -> FirehoseClient {
        self.attempts = attempts;
        self
    }

    /// Delivers `records` under a new request id, retrying on anything but
    /// 200 as Firehose does; the request id and every answer.
    pub fn deliver(&self, records: &[&[u8]]) -> (String, Vec<Answer>) {
        let request_id = new_request_id();
        let answers = self.deliver_as(&request_id, records);
        (request_id, answers)
    }

    /// [`FirehoseClient::deliver`] under a given request id (a retry of an
    /// earlier delivery).
    pub fn deliver_as(&self, request_id: &str, records: &[&[u8]]) -> Vec<Answer> {
        let json = body(request_id, records);
        let mut answers = Vec::new();
        let mut pause = self.backoff;
        for attempt in 0..self.attempts.max(1) {
            if attempt > 0 {
                // The client's own backoff between attempts, as Firehose's.
                std::thread::sleep(pause);
                pause *= 2;
            }
            let answer = self.send(request_id, json.clone(), &[]);
            let ok = answer.status == 200;
            answers.push(answer);
            if ok {
                break;
            }
        }
        answers
    }

    /// One request with `body` as the JSON (gzipped when the client is),
    /// the protocol headers and `extra` headers; the checked answer.
    pub fn send(&self, request_id: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Answer {
        let mut request = self
            .http
            .post(&self.url)
            .header("X-Amz-Firehose-Protocol-Version", "1.0")
            .header("X-Amz-Firehose-Request-Id", request_id)
            .header("X-Amz-Firehose-Source-Arn", SOURCE_ARN)
            .header("Content-Type", "application/json")
            .header("User-Agent", "Amazon Kinesis Data Firehose Agent/1.0");
        if let Some(key) = &self.access_key {
            request = request.header("X-Amz-Firehose-Access-Key", key);
        }
        let body = if self.gzip {
            request = request.header("Content-Encoding", "gzip");
            gzip(&body)
        } else {
            body
        };
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = request
            .body(body)
            .timeout(Duration::from_secs(180))
            .send()
            .expect("the endpoint answers");
        check(request_id, response)
    }
}

/// Checks an answer against the response specification and returns it.
fn check(request_id: &str, response: reqwest::blocking::Response) -> Answer {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "Content-Type of a {status} answer: {content_type:?}"
    );
    let text = response.text().expect("body");
    assert!(text.len() <= 1 << 20, "answers are at most 1 MiB");
    let json: serde_json::Value = serde_json::from_str(&text).expect("the answer is JSON");
    let answer_id = json["requestId"].as_str().expect("requestId").to_owned();
    assert_eq!(answer_id, request_id, "the answer echoes the request id");
    let timestamp = json["timestamp"].as_u64().expect("timestamp");
    let now = now_millis();
    assert!(
        timestamp > now - 600_000 && timestamp <= now + 60_000,
        "timestamp {timestamp} is not milliseconds of now ({now})"
    );
    let error_message = json["errorMessage"].as_str().map(str::to_owned);
    assert_eq!(
        status != 200,
        error_message.is_some(),
        "an errorMessage exactly when refused: {text}"
    );
    Answer {
        status,
        request_id: answer_id,
        timestamp,
        error_message,
    }
}
