//! A stand-in Slack incoming webhook for the alert tests: it answers from a
//! script (then 200 `ok`), keeps every request, and reads the alerts back
//! out of the messages. It runs on a thread of its own, so synchronous and
//! async tests use it alike. Shared with the root crate's tests through
//! `#[path]`.
#![allow(dead_code)] // each test binary uses its own share of these

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::Value;

/// One scripted answer.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: &'static str,
}

/// One request the hook got.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    /// What the hook answered.
    pub status: u16,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<Request>>,
}

/// The webhook, on 127.0.0.1 until dropped.
pub struct Hook {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hook {
    /// A hook that answers `script` in order, then 200.
    pub fn start(script: &[Answer]) -> Hook {
        let shared = Arc::new(Shared::default());
        shared
            .script
            .lock()
            .expect("script")
            .extend(script.iter().copied());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route("/hook", axum::routing::post(answer))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        Hook {
            url,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// The messages it accepted (answered 2xx).
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.body)
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn answer(State(shared): State<Arc<Shared>>, body: String) -> impl IntoResponse {
    let answer = shared
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(Answer {
            status: 200,
            retry_after: None,
            body: "ok",
        });
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    shared.requests.lock().expect("requests").push(Request {
        at: Instant::now(),
        status: answer.status,
        body,
    });
    let mut headers = HeaderMap::new();
    if let Some(seconds) = answer.retry_after {
        headers.insert("retry-after", seconds.into());
    }
    (
        StatusCode::from_u16(answer.status).expect("a status"),
        headers,
        answer.body,
    )
}

/// The alert sections of a message (one per alert shown).
pub fn sections(message: &Value) -> Vec<String> {
    message["blocks"]
        .as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b["type"] == "section")
                .filter_map(|b| b["text"]["text"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The alerts a message counts without showing (`and N more alerts`).
pub fn more(message: &Value) -> u64 {
    let notes = message["blocks"].as_array().into_iter().flatten();
    notes
        .filter(|b| b["type"] == "context")
        .filter_map(|b| b["elements"][0]["text"].as_str())
        .filter_map(|t| t.strip_prefix("and "))
        .filter_map(|t| t.split(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The alerts a message stands for: shown and counted.
pub fn alerts(message: &Value) -> u64 {
    sections(message).len() as u64 + more(message)
}

/// The event id an alert section names (`event `<id>``).
pub fn event_id(section: &str) -> Option<String> {
    let start = section.find("event `")? + "event `".len();
    let len = section[start..].find('`')?;
    Some(section[start..start + len].to_owned())
}
