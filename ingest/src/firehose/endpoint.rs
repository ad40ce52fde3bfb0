//! The HTTP side: AWS's "HTTP endpoint delivery request and response
//! specifications". A POST to any path is a delivery; it is answered 200
//! only once it is in the [`Buffer`]. GET on any path reports whether the
//! endpoint takes deliveries (for load balancer health checks).

use std::borrow::Cow;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crossbeam_channel::Sender;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::buffer::{Buffer, Image, StoreError};
use super::source::Handoff;
use crate::Shutdown;

const REQUEST_ID: &str = "x-amz-firehose-request-id";
const ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests under way may take to finish once the endpoint stops.
const GRACE: Duration = Duration::from_secs(30);
/// How often the accept loop looks at the pipeline's stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Deliveries handed to the drainer with their bytes while its queue is
/// shorter than this and they are no larger than `HANDOFF_BYTES`: at most
/// 128 MiB held in memory beside the buffer.
const HANDOFF_QUEUE: usize = 16;
const HANDOFF_BYTES: usize = 8 << 20;

/// What the endpoint's requests share.
pub(crate) struct Endpoint {
    /// The configured access key; `None` accepts every request.
    pub access_key: Option<Vec<u8>>,
    /// Largest body, before and after gzip.
    pub max_body_bytes: usize,
    pub buffer: Arc<Buffer>,
    /// Each stored delivery goes to the drainer.
    pub stored: Sender<Handoff>,
    /// Set when a sink failed: the pipeline is going down, so new
    /// deliveries are refused (503) and Firehose retries them elsewhere or later.
    pub refusing: Arc<AtomicBool>,
    pub shutdown: Shutdown,
}

/// The body Firehose sends.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryRequest<'a> {
    #[serde(borrow)]
    request_id: Cow<'a, str>,
    /// Milliseconds since the epoch; required by the spec, not used.
    #[allow(dead_code)]
    timestamp: u64,
    #[serde(borrow)]
    records: Vec<RecordIn<'a>>,
}

#[derive(Deserialize)]
struct RecordIn<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// The body Firehose expects back.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryResponse<'a> {
    request_id: &'a str,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<&'a str>,
}

/// Why a delivery was not accepted, as the status Firehose sees.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

/// The router: deliveries on POST, health on GET, any path.
pub(crate) fn router(endpoint: Arc<Endpoint>) -> Router {
    Router::new().fallback(handle).with_state(endpoint)
}

async fn handle(
    State(endpoint): State<Arc<Endpoint>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let header_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let outcome = match method {
        Method::POST => deliver(&endpoint, &headers, body).await,
        Method::GET | Method::HEAD => {
            return match endpoint.refusal() {
                Some(r) => answer(r.status, &header_id, Some(&r.message)),
                None => answer(StatusCode::OK, &header_id, None),
            };
        }
        _ => Err((
            None,
            Refusal::new(StatusCode::METHOD_NOT_ALLOWED, "deliveries are POSTed"),
        )),
    };
    let (status, request_id, message) = match outcome {
        Ok(request_id) => (StatusCode::OK, request_id, None),
        Err((body_id, refusal)) => {
            let request_id = body_id.unwrap_or(header_id);
            tracing::warn!(
                request_id,
                status = refusal.status.as_u16(),
                "firehose delivery refused: {}",
                refusal.message
            );
            (refusal.status, request_id, Some(refusal.message))
        }
    };
    metrics::counter!("seclake_firehose_requests_total", "status" => status.as_str().to_owned())
        .increment(1);
    answer(status, &request_id, message.as_deref())
}

/// Checks, reads and stores one delivery; the request id on success, or the
/// body's request id (when it was read) and the refusal.
async fn deliver(
    endpoint: &Arc<Endpoint>,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, (Option<String>, Refusal)> {
    if let Some(expected) = &endpoint.access_key {
        let given = headers.get(ACCESS_KEY).map(|v| v.as_bytes());
        match given {
            None => {
                return Err((
                    None,
                    Refusal::new(
                        StatusCode::UNAUTHORIZED,
                        "missing X-Amz-Firehose-Access-Key",
                    ),
                ));
            }
            Some(given) if !bool::from(given.ct_eq(expected)) => {
                return Err((
                    None,
                    Refusal::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid X-Amz-Firehose-Access-Key",
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(refusal) = endpoint.refusal() {
        return Err((None, refusal));
    }
    let gzip = match headers.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) {
        None | Some(b"identity") => false,
        Some(b"gzip") => true,
        Some(other) => {
            return Err((
                None,
                Refusal::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Encoding {:?}: only gzip is supported",
                        String::from_utf8_lossy(other)
                    ),
                ),
            ));
        }
    };
    let limit = endpoint.max_body_bytes;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than max_body_bytes ({limit})"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err((None, too_large()));
    }
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if over {
            (None, too_large())
        } else {
            (
                None,
                Refusal::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
            )
        }
    })?;
    let endpoint = Arc::clone(endpoint);
    // Decompressing, decoding and the fsync block: off the I/O threads.
    tokio::task::spawn_blocking(move || endpoint.store(&body, gzip))
        .await
        .unwrap_or_else(|e| {
            Err((
                None,
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, format!("storing: {e}")),
            ))
        })
}

impl Endpoint {
    /// Why new deliveries are refused right now, if they are.
    fn refusal(&self) -> Option<Refusal> {
        if self.refusing.load(Ordering::Acquire) {
            Some(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "a sink failed and seclake is stopping; retry later",
            ))
        } else if self.shutdown.is_set() {
            Some(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "seclake is stopping; retry later",
            ))
        } else {
            None
        }
    }

    fn store(&self, body: &[u8], gzip: bool) -> Result<String, (Option<String>, Refusal)> {
        let inflated;
        let json = if gzip {
            inflated = self.gunzip(body).map_err(|r| (None, r))?;
            &inflated[..]
        } else {
            body
        };
        let request: DeliveryRequest<'_> = serde_json::from_slice(json).map_err(|e| {
            (
                None,
                Refusal::new(StatusCode::BAD_REQUEST, format!("malformed delivery: {e}")),
            )
        })?;
        let request_id = request.request_id.into_owned();
        let bad = |message: String| {
            Err((
                Some(request_id.clone()),
                Refusal::new(StatusCode::BAD_REQUEST, message),
            ))
        };
        if request_id.is_empty() || request_id.len() > usize::from(u16::MAX) {
            return bad("requestId must be 1 to 65,535 bytes".into());
        }
        if request.records.is_empty() {
            return Ok(request_id);
        }
        // Decoded straight into the file's bytes.
        let mut image = match Image::new(&request_id, json.len() / 4 * 3) {
            Ok(image) => image,
            Err(e) => return bad(e.to_string()),
        };
        for (i, record) in request.records.iter().enumerate() {
            let input = record.data.as_bytes();
            // SIMD decoding: base64 is the endpoint's largest cost per byte.
            let engine = base64_simd::STANDARD;
            let decoded = image.push_with(engine.estimated_decoded_length(input.len()), |out| {
                engine
                    .decode(input, base64_simd::Out::from_slice(out))
                    .map(|d| d.len())
            });
            if decoded.is_err() {
                return bad(format!(
                    "records[{i}].data is not padded standard base64 (RFC 4648 §4)"
                ));
            }
        }
        let records = image.records() as u64;
        match self.buffer.store(image) {
            Ok(Some((stored, delivery))) => {
                metrics::counter!("seclake_firehose_records_total").increment(records);
                metrics::gauge!("seclake_firehose_buffer_bytes").set(self.buffer.used() as f64);
                // A short queue also gets the bytes, sparing the drainer a
                // read; a long one would hold too much memory.
                let in_memory =
                    self.stored.len() < HANDOFF_QUEUE && delivery.data.len() <= HANDOFF_BYTES;
                let delivery = in_memory.then_some(delivery);
                // The drainer is gone only when the source stops; the
                // delivery is on disk and is drained after a restart.
                let _ = self.stored.send(Handoff { stored, delivery });
                Ok(request_id)
            }
            Ok(None) => Ok(request_id),
            Err(e @ StoreError::Full { .. }) => Err((
                Some(request_id),
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            )),
            Err(e @ StoreError::Io(_)) => {
                tracing::error!("firehose: {e}");
                Err((
                    Some(request_id),
                    Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                ))
            }
        }
    }

    fn gunzip(&self, body: &[u8]) -> Result<Vec<u8>, Refusal> {
        let limit = self.max_body_bytes;
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
        flate2::read::MultiGzDecoder::new(body)
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, format!("broken gzip body: {e}")))?;
        if out.len() > limit {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body decompresses beyond max_body_bytes ({limit})"),
            ));
        }
        Ok(out)
    }
}

fn answer(status: StatusCode, request_id: &str, error_message: Option<&str>) -> Response {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let body = DeliveryResponse {
        request_id,
        timestamp,
        error_message,
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// Accepts connections (TLS when `tls` is set) until the pipeline stops, then
/// lets the requests under way finish.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let service = TowerToHyperService::new(router);
    let mut poll = tokio::time::interval(STOP_POLL);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: pass, don't spin.
                    tracing::warn!("firehose endpoint: accept: {e}");
                    tokio::time::sleep(STOP_POLL).await;
                    continue;
                }
            },
            _ = poll.tick() => {
                if shutdown.is_set() { break } else { continue }
            }
        };
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(stream), service);
                            log_end(peer, watcher.watch(conn.into_owned()).await);
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "firehose TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "firehose TLS handshake timed out"),
                    }
                }
                None => {
                    let conn = builder.serve_connection(TokioIo::new(tcp), service);
                    log_end(peer, watcher.watch(conn.into_owned()).await);
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("firehose endpoint: requests still open after {GRACE:?}; closing them");
    }
}

fn log_end(peer: SocketAddr, result: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = result {
        tracing::debug!(%peer, "firehose connection: {e}");
    }
}
