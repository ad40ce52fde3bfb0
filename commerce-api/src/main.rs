//! `commerce-api --listen 127.0.0.1:8080 --db orders.db`

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use commerce_api::config::{Config, Overrides};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The order API. Flags override `COMMERCE_API_*` environment variables,
/// which override the config file (see the README's config reference).
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// TOML config file.
    #[arg(long, env = "COMMERCE_API_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on [config: listen; default 127.0.0.1:8080].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// SQLite database file, created if missing [config: db].
    #[arg(long)]
    db: Option<PathBuf>,
    /// Kafka bootstrap servers for the access log; off if unset [config: kafka.brokers].
    #[arg(long)]
    kafka_brokers: Option<String>,
    /// Kafka topic of the access log [config: kafka.topic; default app-logs].
    #[arg(long)]
    kafka_topic: Option<String>,
}

fn main() -> anyhow::Result<()> {
    // stdout is the access log; our own messages go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let flags = Overrides {
        listen: args.listen,
        db: args.db,
        kafka_brokers: args.kafka_brokers,
        kafka_topic: args.kafka_topic,
    };
    let config = Config::load(args.config.as_deref(), std::env::vars(), &flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = listen(config.listen)
            .with_context(|| format!("cannot listen on {} (key `listen`)", config.listen))?;
        tracing::info!(
            "serving on http://{} (db {}, kafka {})",
            listener.local_addr()?,
            config.db.display(),
            config.kafka.brokers.as_deref().unwrap_or("off")
        );
        let stopped = commerce_api::serve(config, listener, shutdown_signal()).await?;
        if stopped.undelivered_lines > 0 {
            tracing::warn!(
                "{} access-log lines were not delivered to Kafka",
                stopped.undelivered_lines
            );
        }
        Ok(())
    })
}

/// Binds with a listen backlog of 4096 (the kernel caps it at
/// `net.core.somaxconn`) instead of 1024: a burst of new connections waits
/// in the queue rather than being dropped and retried a second later.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("SIGTERM not handled: {e}");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
