//! The access log: one line in the app log schema
//! ([`seclake_format::app_log`]) per request, and the per-route request
//! metrics, written by one middleware around every route.

mod output;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use seclake_format::app_log::AccessLog;

use crate::config::is_trusted;

pub use output::{OutputError, Outputs};

/// What a handler knows about its request that the log should say; handlers
/// put it in the response's extensions.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// The user the request acted for.
    pub user_id: Option<String>,
    /// The order request's idempotency key.
    pub idempotency_key: Option<String>,
    /// The order created or read.
    pub order_id: Option<String>,
    /// The order's amount in won (creations only, so revenue sums once).
    pub amount_krw: Option<i64>,
    /// Why the request failed.
    pub error: Option<String>,
}

/// The route template a request matched, carried out to the log.
#[derive(Clone)]
struct Route(MatchedPath);

/// The log's settings and outputs, shared by every request.
pub struct AccessLogger {
    service: String,
    trusted: Vec<IpNet>,
    outputs: Outputs,
}

impl AccessLogger {
    /// Logs as `service`, believing `X-Forwarded-For` from `trusted` peers.
    pub fn new(service: String, trusted: Vec<IpNet>, outputs: Outputs) -> AccessLogger {
        AccessLogger {
            service,
            trusted,
            outputs,
        }
    }

    /// The outputs, to close at shutdown.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The client's address: the peer's, or behind trusted proxies the
    /// right-most `X-Forwarded-For` entry that is not a trusted proxy.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !is_trusted(&self.trusted, peer) {
            return peer;
        }
        let mut client = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage a trusted proxy passed on: the last address it
                // vouched for is the best we know.
                break;
            };
            client = ip;
            if !is_trusted(&self.trusted, ip) {
                break;
            }
        }
        client
    }
}

/// Copies the matched route template into the response (inner layer, which
/// runs after routing).
pub async fn route_template(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(Route(m));
    }
    resp
}

/// Logs and measures one request (outer layer).
pub async fn log_request(
    State(log): State<Arc<AccessLogger>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req.headers();
    let user_agent = header(headers, "user-agent").map(str::to_owned);
    let trace_id = header(headers, "traceparent")
        .and_then(trace_id_of)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let request_id = header(headers, "x-request-id")
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let client_ip = log.client_ip(peer.ip(), headers).to_string();

    let mut resp = next.run(req).await;
    let latency = started.elapsed();

    let fields = resp.extensions_mut().remove::<Fields>().unwrap_or_default();
    let route = resp.extensions_mut().remove::<Route>();
    let route = route.as_ref().map(|Route(m)| m.as_str());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let bytes = axum::body::HttpBody::size_hint(resp.body()).exact();
    let (method_label, route_label) = (
        method.as_str().to_owned(),
        route.unwrap_or("unmatched").to_owned(),
    );
    metrics::histogram!("http_request_duration_seconds", "method" => method_label.clone(), "route" => route_label.clone())
        .record(latency.as_secs_f64());
    metrics::counter!("http_requests_total", "method" => method_label, "route" => route_label, "status" => status.to_string())
        .increment(1);

    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let line = AccessLog {
        ts: &ts,
        level: match status {
            500.. => "error",
            400..500 => "warn",
            _ => "info",
        },
        service: &log.service,
        method: method.as_str(),
        route,
        path: &path,
        status,
        latency_ms: (latency.as_secs_f64() * 1e6).round() / 1e3,
        bytes,
        client_ip: Some(&client_ip),
        user_agent: user_agent.as_deref(),
        user_id: fields.user_id.as_deref(),
        trace_id: &trace_id,
        request_id: &request_id,
        idempotency_key: fields.idempotency_key.as_deref(),
        order_id: fields.order_id.as_deref(),
        amount_krw: fields.amount_krw,
        error: fields.error.as_deref(),
        msg: None,
    };
    match serde_json::to_vec(&line) {
        Ok(bytes) => log.outputs.send(bytes),
        Err(e) => tracing::error!("access log line not written: {e}"),
    }
    resp
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32
        && trace
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && trace.bytes().any(|b| b != b'0');
    valid.then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessLogConfig, KafkaConfig};

    fn logger(trusted: &[&str]) -> AccessLogger {
        let off = AccessLogConfig {
            stdout: false,
            ..AccessLogConfig::default()
        };
        AccessLogger::new(
            "t".into(),
            trusted.iter().map(|n| n.parse().unwrap()).collect(),
            Outputs::start(&off, &KafkaConfig::default()).unwrap(),
        )
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let none = logger(&[]);
        assert_eq!(
            none.client_ip(ip("10.0.0.5"), &xff("203.0.113.9")),
            ip("10.0.0.5")
        );
        let lb = logger(&["10.0.0.0/8"]);
        assert_eq!(
            lb.client_ip(ip("10.0.0.5"), &xff("203.0.113.9")),
            ip("203.0.113.9")
        );
        // A client cannot forge its address by sending its own header: the
        // right-most untrusted hop is the one the proxy saw.
        assert_eq!(
            lb.client_ip(ip("10.0.0.5"), &xff("1.1.1.1, 203.0.113.9, 10.0.0.7")),
            ip("203.0.113.9")
        );
        assert_eq!(lb.client_ip(ip("10.0.0.5"), &xff("junk")), ip("10.0.0.5"));
        assert_eq!(
            lb.client_ip(ip("10.0.0.5"), &HeaderMap::new()),
            ip("10.0.0.5")
        );
        assert_eq!(
            lb.client_ip(ip("192.0.2.1"), &xff("203.0.113.9")),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn trace_ids_come_from_traceparent() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }
}
