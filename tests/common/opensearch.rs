//! The real OpenSearch node for the sink's tests: its URL, requests, a guard
//! that deletes what a test made, and a proxy that plays a busy or failing
//! cluster in front of it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The node `scripts/services up` starts (`SECLAKE_OPENSEARCH_URL` to point elsewhere).
pub fn url() -> Option<String> {
    seclake_fixtures::services::service(
        "opensearch",
        "SECLAKE_OPENSEARCH_URL",
        "http://127.0.0.1:9200",
    )
}

/// A blocking JSON request; the status and the parsed body.
pub fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::blocking::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Documents in `<prefix>-*` after a refresh.
pub fn count(base: &str, prefix: &str) -> u64 {
    call("POST", &format!("{base}/{prefix}-*/_refresh"), None);
    let (status, body) = call("GET", &format!("{base}/{prefix}-*/_count"), None);
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().expect("count")
}

/// Documents in `<prefix>-*` matching a query.
pub fn count_matching(base: &str, prefix: &str, query: Value) -> u64 {
    call("POST", &format!("{base}/{prefix}-*/_refresh"), None);
    let (status, body) = call(
        "POST",
        &format!("{base}/{prefix}-*/_count"),
        Some(json!({ "query": query })),
    );
    assert_eq!(status, 200, "{body}");
    body["count"].as_u64().expect("count")
}

/// A unique index prefix whose indices, data streams and templates are
/// deleted when the guard drops, whether the test passed or not.
pub struct Indices {
    pub base: String,
    pub prefix: String,
}

impl Indices {
    pub fn new(base: &str) -> Indices {
        let prefix = seclake_fixtures::services::unique_name("seclake-test");
        Indices {
            base: base.to_owned(),
            prefix,
        }
    }
}

impl Drop for Indices {
    fn drop(&mut self) {
        let (base, p) = (&self.base, &self.prefix);
        for path in [
            format!("/_data_stream/{p}-*"),
            format!("/{p}-*?expand_wildcards=all"),
            format!("/_index_template/{p}-events"),
            format!("/_index_template/{p}-test"),
            format!("/_component_template/{p}-mappings"),
            format!("/_component_template/{p}-settings"),
        ] {
            let _ = reqwest::blocking::Client::new()
                .delete(format!("{base}{path}"))
                .send();
        }
    }
}

/// What the proxy does with requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forwards everything.
    Pass = 0,
    /// Answers every request 503, like a load balancer before a dead cluster.
    Down = 1,
    /// Answers every third bulk item 429 (`es_rejected_execution_exception`,
    /// a full write queue) the first time it is sent, forwarding only the others.
    Busy = 2,
}

struct Shared {
    upstream: String,
    mode: AtomicU8,
    client: reqwest::Client,
    seen: AtomicU64,
    /// How often each document id reached the real node.
    forwarded: Mutex<HashMap<String, u32>>,
    /// Ids answered 429 once.
    refused: Mutex<HashMap<String, u32>>,
}

/// An HTTP proxy in front of a real server (the OpenSearch node, moto), on a
/// port of its own.
pub struct Proxy {
    pub url: String,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            mode: AtomicU8::new(Mode::Pass as u8),
            client: reqwest::Client::new(),
            seen: AtomicU64::new(0),
            forwarded: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move { axum::serve(listener, app).await });
        Proxy {
            url: format!("http://{addr}"),
            shared,
            _runtime: runtime,
        }
    }

    pub fn set(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Bulk items that reached the real node, by document id.
    pub fn forwarded(&self) -> HashMap<String, u32> {
        self.shared.forwarded.lock().expect("lock").clone()
    }

    /// Ids the proxy answered 429.
    pub fn refused(&self) -> HashMap<String, u32> {
        self.shared.refused.lock().expect("lock").clone()
    }
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let mode = shared.mode.load(Ordering::SeqCst);
    let (parts, body) = request.into_parts();
    // The body is read even when the answer is 503: answering before a large
    // upload ends makes hyper close the connection, and the client would see a
    // reset instead of the status a load balancer sends.
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if mode == Mode::Down as u8 {
        return (StatusCode::SERVICE_UNAVAILABLE, "test proxy: cluster down").into_response();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let is_bulk = parts.uri.path() == "/_bulk";
    let (body, refused_at) = if is_bulk {
        shared.seen.fetch_add(1, Ordering::SeqCst);
        split_bulk(&shared, &body, mode == Mode::Busy as u8)
    } else {
        (body, Vec::new())
    };
    let items_forwarded = !is_bulk || !body.is_empty();
    let mut upstream_answer = (
        StatusCode::OK,
        Bytes::from_static(br#"{"errors":false,"items":[]}"#),
    );
    if items_forwarded {
        let mut forwarded = shared
            .client
            .request(parts.method.clone(), format!("{}{path}", shared.upstream))
            .body(body);
        // The body's type and, for AWS APIs behind it (moto), the signature
        // and the `x-amz-target` they route on. Not `accept-encoding`: the
        // proxy hands the answer on as it gets it, without its encoding.
        for (name, value) in &parts.headers {
            let name = name.as_str();
            if name == "content-type"
                || name == "authorization"
                || name.starts_with("x-amz-")
                || name.starts_with("amz-sdk-")
            {
                forwarded = forwarded.header(name, value);
            }
        }
        match forwarded.send().await {
            Ok(response) => {
                let status = response.status();
                let bytes = response.bytes().await.unwrap_or_default();
                upstream_answer = (
                    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                    bytes,
                );
            }
            Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    if refused_at.is_empty() {
        return (
            upstream_answer.0,
            [("content-type", "application/json")],
            upstream_answer.1,
        )
            .into_response();
    }
    let answer: Value = serde_json::from_slice(&upstream_answer.1).unwrap_or(json!({}));
    let mut real = answer["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter();
    let total = real.len() + refused_at.len();
    let mut items = Vec::with_capacity(total);
    for at in 0..total {
        if refused_at.contains(&at) {
            items.push(json!({"index": {"status": 429, "error": {
                "type": "es_rejected_execution_exception",
                "reason": "rejected execution of coordinating operation (test proxy)"}}}));
        } else {
            items.push(real.next().unwrap_or(json!({"index": {"status": 500}})));
        }
    }
    let merged = json!({"errors": true, "items": items});
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        merged.to_string(),
    )
        .into_response()
}

/// The bulk body to forward, and the positions of the items answered 429
/// instead (every third item never refused before, in `busy` mode).
fn split_bulk(shared: &Shared, body: &[u8], busy: bool) -> (Bytes, Vec<usize>) {
    let lines: Vec<&[u8]> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut kept = Vec::with_capacity(body.len());
    let mut refused_at = Vec::new();
    let mut forwarded = shared.forwarded.lock().expect("lock");
    let mut refused = shared.refused.lock().expect("lock");
    for (at, pair) in lines.chunks(2).enumerate() {
        let action: Value = serde_json::from_slice(pair[0]).unwrap_or_default();
        let id = action
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|a| a["_id"].as_str())
            .unwrap_or_default()
            .to_owned();
        if busy && at % 3 == 0 && !refused.contains_key(&id) {
            *refused.entry(id).or_default() += 1;
            refused_at.push(at);
            continue;
        }
        *forwarded.entry(id).or_default() += 1;
        for line in pair {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    (Bytes::from(kept), refused_at)
}
