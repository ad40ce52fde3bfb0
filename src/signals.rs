//! Process signals: SIGINT/SIGTERM stop the sources (the pipeline then
//! drains and commits everything); SIGHUP reloads the GeoIP databases.

use std::sync::Arc;

use metrics::counter;
use seclake_enrich::geoip::GeoIp;
use seclake_ingest::Shutdown;
use tokio::signal::unix::{SignalKind, signal};

/// Watches for signals until the process ends.
pub async fn watch(shutdown: Shutdown, geo: Option<Arc<GeoIp>>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers; SIGTERM will not flush");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => stop(&shutdown, "SIGTERM"),
            _ = int.recv() => stop(&shutdown, "SIGINT"),
            _ = hup.recv() => {
                // Opening and verifying the databases takes up to a second.
                let geo = geo.clone();
                let _ = tokio::task::spawn_blocking(move || reload(geo.as_deref())).await;
            }
        }
    }
}

fn stop(shutdown: &Shutdown, name: &str) {
    tracing::info!("{name}: stopping sources, flushing sinks");
    shutdown.trigger();
}

fn reload(geo: Option<&GeoIp>) {
    let Some(geo) = geo else {
        tracing::info!("SIGHUP: no GeoIP databases configured, nothing to reload");
        return;
    };
    match geo.reload() {
        Ok(()) => {
            tracing::info!("SIGHUP: GeoIP databases reloaded");
            counter!("seclake_geoip_reloads_total", "result" => "ok").increment(1);
        }
        Err(e) => {
            tracing::error!("SIGHUP: GeoIP reload failed, keeping the loaded databases: {e}");
            counter!("seclake_geoip_reloads_total", "result" => "error").increment(1);
        }
    }
}
