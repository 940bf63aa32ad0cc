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
    /// Requests served at once (change it at run time with PUT /__capacity).
    #[arg(long, default_value_t = 50)]
    capacity: usize,
    /// Time to serve one request when not overloaded, in milliseconds.
    #[arg(long, default_value_t = 50)]
    service_time_ms: u64,
    /// Requests that may wait for a free slot; more get 503 at once.
    #[arg(long, default_value_t = 200)]
    backlog: usize,
    /// Longest wait for a free slot before a 503, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    queue_timeout_ms: u64,
    /// How much service slows per capacity's worth of waiting requests (0: flat).
    #[arg(long, default_value_t = 1.0)]
    collapse: f64,
    /// Refuse page requests without a valid waitroom admission token, verified with
    /// the keys at this URL (e.g. http://127.0.0.1:8080/_waitroom/jwks.json).
    #[arg(long, value_name = "URL")]
    verify_jwks: Option<String>,
    /// The cookie holding the admission token (with --verify-jwks).
    #[arg(long, default_value = "waitroom")]
    cookie_name: String,
    /// Keep registrations in this file too (one JSON line each), as a site with a
    /// database: they survive a restart of the process.
    #[arg(long, value_name = "FILE")]
    data: Option<std::path::PathBuf>,
    /// Answer a confirmed registration with `waitroom-command: release`: the
    /// waiting room then lets the next visitor in at once.
    #[arg(long)]
    release_after_register: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    anyhow::ensure!(cli.capacity >= 1, "--capacity must be at least 1");
    anyhow::ensure!(cli.collapse >= 0.0, "--collapse must not be negative");
    let listener = tokio::net::TcpListener::bind(&cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    let options = origin_stub::Options {
        capacity: cli.capacity,
        service_time: Duration::from_millis(cli.service_time_ms),
        backlog: cli.backlog,
        queue_timeout: Duration::from_millis(cli.queue_timeout_ms),
        collapse: cli.collapse,
    };
    tracing::info!(listen = %listener.local_addr()?, ?options, "origin-stub serving");
    let mut site = origin_stub::Site::new(options);
    if let Some(path) = &cli.data {
        let registry = origin_stub::registry::Registry::in_file(path)
            .with_context(|| format!("--data {}", path.display()))?;
        site = site.with_registry(registry);
    }
    if cli.release_after_register {
        site = site.releasing();
    }
    if let Some(url) = cli.verify_jwks {
        let url = url
            .parse()
            .with_context(|| format!("--verify-jwks {url}"))?;
        site = site.verifying(origin_stub::verify::Verifier::new(url, cli.cookie_name));
    }
    site.serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
