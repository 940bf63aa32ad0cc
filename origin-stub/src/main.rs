//! The `origin-stub` binary: flags and binding; the behaviour is in the library.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// origin-stub: a registration site with a finite capacity, to protect and to test against.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// Requests served at once.
    #[arg(long, default_value_t = 50)]
    capacity: usize,
    /// Time to serve one request, in milliseconds.
    #[arg(long, default_value_t = 50)]
    service_time_ms: u64,
    /// Requests that may wait for a free slot; more get 503 at once.
    #[arg(long, default_value_t = 200)]
    backlog: usize,
    /// Longest wait for a free slot before a 503, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    queue_timeout_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let options = origin_stub::Options {
        capacity: cli.capacity,
        service_time: Duration::from_millis(cli.service_time_ms),
        backlog: cli.backlog,
        queue_timeout: Duration::from_millis(cli.queue_timeout_ms),
    };
    tracing::info!(listen = %listener.local_addr()?, ?options, "origin-stub serving");
    origin_stub::run(listener, options, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
