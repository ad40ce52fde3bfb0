//! Serving: the layers around the routes, graceful shutdown, and the order
//! in which the store and the access log are closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;

use crate::access_log::{self, AccessLogger, OutputError, Outputs};
use crate::config::Config;
use crate::routes::{self, Api};
use crate::store::{Store, StoreError};

/// Why the server could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// An access-log output could not start.
    #[error("access log: {0}")]
    Output(#[from] OutputError),
    /// Accepting connections failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// How the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Whether in-flight requests outlived `shutdown_timeout` and were cut.
    pub cut_off: bool,
    /// Access-log lines Kafka had not taken when the producer was closed.
    pub undelivered_lines: usize,
}

/// The Prometheus recorder: installed once per process.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.078, 0.1, 0.145, 0.25,
                        0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("commerce_order_batch_size".into()),
                        &[
                            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                            2048.0,
                        ],
                    )
                });
            let builder = match builder {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("metrics buckets not set: {e}");
                    PrometheusBuilder::new()
                }
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("another metrics recorder is installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}

/// Opens the store and the access log, serves on `listener` until
/// `shutdown` completes, then drains: in-flight requests get
/// `config.shutdown_timeout`, the order writer finishes its queue, and the
/// access log is written out.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, ServeError> {
    let (db, storage) = (config.db.clone(), config.storage.clone());
    let (log, kafka) = (config.access_log.clone(), config.kafka.clone());
    let (store, outputs) = tokio::task::spawn_blocking(move || {
        let store = Store::open(&db, &storage)?;
        let outputs = Outputs::start(&log, &kafka)?;
        Ok::<_, ServeError>((store, outputs))
    })
    .await
    .map_err(|_| StoreError::Stopped)??;
    let logger = Arc::new(AccessLogger::new(
        config.service.clone(),
        config.trusted_proxies.clone(),
        outputs,
    ));
    let api = Arc::new(Api {
        store: store.clone(),
        metrics: prometheus(),
    });
    let app = app(api, Arc::clone(&logger), &config);

    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let server = axum::serve(
        listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let deadline = config.shutdown_timeout;
    let cut_off = tokio::select! {
        served = server => {
            served?;
            false
        }
        () = async {
            let _ = stopping.wait_for(|s| *s).await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!("in-flight requests still running after {deadline:?}: cut off");
            true
        }
    };
    let flush = config.shutdown_timeout;
    let undelivered_lines = tokio::task::spawn_blocking(move || {
        store.close();
        logger.outputs().close(flush)
    })
    .await
    .unwrap_or(0);
    Ok(Stopped {
        cut_off,
        undelivered_lines,
    })
}

/// The routes with their layers: the access log outermost, so it sees the
/// answers of the timeout and body limit too.
pub fn app(api: Arc<Api>, logger: Arc<AccessLogger>, config: &Config) -> Router {
    routes::router(api)
        .route_layer(axum::middleware::from_fn(access_log::route_template))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            config.request_timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            logger,
            access_log::log_request,
        ))
}
