//! `/metrics` (Prometheus text format) and `/healthz`.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder and binds `addr`; the returned future
/// serves until the process ends.
pub async fn serve(addr: SocketAddr) -> anyhow::Result<impl Future<Output = ()> + Send> {
    let handle: PrometheusHandle = PrometheusBuilder::new().install_recorder()?;
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| std::future::ready("ok\n")));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("metrics on http://{addr}/metrics");
    Ok(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics server stopped: {e}");
        }
    })
}
