//! The `waitroom` binary: flags, config, tracing, binding; everything else is in the library.

mod admin_cli;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use waitroom::config::Config;

/// waitroom: a virtual waiting room in front of your site.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Run the proxy from this TOML file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How log lines are written: `text` (colours only on a terminal, never with
    /// NO_COLOR set) or `json` (one object a line, for log shippers).
    #[arg(
        long,
        value_enum,
        env = "WAITROOM_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to standard output at `RUST_LOG` (default `info`) in `format`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => {
            let colour = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy and a built-in origin-stub with demo settings (memory store).
    Demo {
        /// Public port; admin is on PORT+1 and the origin on PORT+2.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// No simulated crowd: the line is only who opens the page.
        #[arg(long)]
        no_crowd: bool,
    },
    /// Validate a configuration file; exits non-zero with the key and the reason.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Talk to a running instance's admin API: state, set, pause, resume, watch…
    Admin(admin_cli::AdminArgs),
    /// Recompute a lottery opening's order from its published seed and places
    /// (GET /_waitroom/lottery): prints the places in the order they are called.
    VerifyLottery {
        /// The seed (64 hexadecimal digits), published after the opening.
        #[arg(long)]
        seed: String,
        /// The pre-queue's first place.
        #[arg(long)]
        first: u64,
        /// The pre-queue's last place.
        #[arg(long)]
        last: u64,
        /// Also check the commitment published before the opening (64 hex digits).
        #[arg(long)]
        commitment: Option<String>,
    },
}

fn load(path: &PathBuf) -> anyhow::Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let env_token = std::env::var("WAITROOM_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Config::from_toml(&text, env_token)
        .with_context(|| format!("invalid configuration {}", path.display()))
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// The listeners: taken over from a process still running with this state
/// directory (a restart that refuses no connection), or bound anew.
async fn listeners(config: &Config) -> anyhow::Result<(TcpListener, TcpListener)> {
    match waitroom::handover::take_over(&config.state_dir, config.public, config.admin).await {
        Ok(Some(taken)) => {
            tracing::info!("took the listening sockets over from the running process");
            return Ok((taken.public, taken.admin));
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "no handover; binding the listeners anew"),
    }
    Ok((
        bind(config.public, "public").await?,
        bind(config.admin, "admin").await?,
    ))
}

/// Serves `config`; with `path`, a new configuration is read from it on SIGHUP
/// and whenever the file changes (see [`watch_config`]).
async fn serve(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let (public, admin) = listeners(&config).await?;
    tracing::info!(public = %config.public, admin = %config.admin, origin = %config.origin, "waitroom serving");
    let (trigger, shutdown) = waitroom::shutdown::channel();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        trigger.fire();
    });
    let reload = match path {
        Some(path) => {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tokio::spawn(watch_config(path, tx));
            Some(rx)
        }
        None => {
            // No file to read again (the demo): SIGHUP is noted, never fatal.
            #[cfg(unix)]
            if let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: no configuration file to reload");
                    }
                });
            }
            None
        }
    };
    let options = waitroom::app::Options {
        keys: None,
        clock: waitroom::clock::Clock::system(),
        reload,
    };
    waitroom::app::run_with(config, public, admin, options, shutdown).await?;
    tracing::info!("stopped; the line is saved");
    Ok(())
}

/// How often the configuration file is checked for a change.
const CONFIG_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the configuration at `path` again on SIGHUP and whenever the file's
/// modification time or size changes, and sends what is valid to `reloads`; a
/// file that is not valid is refused with the key and the reason.
async fn watch_config(path: PathBuf, reloads: tokio::sync::mpsc::Sender<Config>) {
    let stamp = |p: &PathBuf| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut seen = stamp(&path);
    // A change is read once the file has stayed the same for a whole check, so
    // that a file caught half-written is never read.
    let mut settling = None;
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGHUP handler: reload by changing the file");
            None
        }
    };
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<()>();
        let why = tokio::select! {
            _ = signalled => "SIGHUP",
            _ = tokio::time::sleep(CONFIG_CHECK_EVERY) => {
                let now = stamp(&path);
                if now == seen {
                    continue;
                }
                if settling != Some(now) {
                    settling = Some(now);
                    continue;
                }
                "the file changed"
            }
        };
        seen = stamp(&path);
        settling = None;
        match load(&path) {
            Ok(config) => {
                tracing::info!(file = %path.display(), why, "reloading the configuration");
                if reloads.send(config).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(
                file = %path.display(),
                why,
                "configuration not reloaded, what was in force stays: {e:#}"
            ),
        }
    }
}

/// Prints the order of a lottery's pre-queue, checking the seed against its
/// commitment when given.
fn verify_lottery(
    seed: &str,
    first: u64,
    last: u64,
    commitment: Option<&str>,
) -> anyhow::Result<()> {
    use waitroom::admission::lottery;
    let seed = lottery::from_hex(seed).context("--seed: 64 hexadecimal digits")?;
    anyhow::ensure!(first <= last, "--first must not be after --last");
    anyhow::ensure!(
        last - first < 100_000_000,
        "--first..--last: too many places"
    );
    if let Some(c) = commitment {
        let published = lottery::from_hex(c).context("--commitment: 64 hexadecimal digits")?;
        anyhow::ensure!(
            lottery::commitment(&seed) == published,
            "the seed does not match the commitment: SHA-256(seed) is {}",
            lottery::hex(&lottery::commitment(&seed))
        );
        eprintln!("the seed matches the commitment");
    }
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for place in lottery::order(&seed, first, last) {
        writeln!(out, "{place}")?;
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Visitors the demo's simulated crowd keeps in line.
const DEMO_CROWD: usize = 8;

async fn demo(port: u16, crowd: bool) -> anyhow::Result<()> {
    let config = waitroom::app::demo_config(port);
    let origin_addr = config
        .origin
        .authority()
        .map(|a| a.as_str().to_owned())
        .context("demo origin address")?;
    let origin = TcpListener::bind(&origin_addr)
        .await
        .with_context(|| format!("binding the demo origin to {origin_addr}"))?;
    let options = origin_stub::Options::default();
    tokio::spawn(origin_stub::run(origin, options, std::future::pending()));
    println!(
        "waitroom demo: open http://{}/ (private windows or other browsers join the line too)",
        config.public
    );
    println!(
        "  console and admin: http://{}/  (admin token: {})",
        config.admin, config.admin_token
    );
    println!("  origin-stub:       http://{origin_addr}/__stats");
    let (admin, token) = (
        format!("http://{}", config.admin),
        config.admin_token.clone(),
    );
    let public = config.public;
    // The crowd goes while the demo runs (its trigger is held until then).
    let (_stop_crowd, crowd_shutdown) = waitroom::shutdown::channel();
    tokio::spawn(async move {
        // The limits in force, once serving: the demo's saved line may hold ones
        // changed at run time, which win over the file's.
        for _ in 0..100 {
            if let Ok(s) = admin_cli::state(&admin, &token).await {
                println!(
                    "  limits in force: {} new users per minute, {} active at once",
                    s["new_users_per_minute"], s["max_active_users"]
                );
                if crowd {
                    let crowd = waitroom::crowd::Crowd {
                        waiting: DEMO_CROWD,
                    };
                    let n = waitroom::crowd::start(public, crowd, crowd_shutdown).await;
                    println!(
                        "  a simulated crowd of {n} is in line ahead of you (--no-crowd: none)"
                    );
                }
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    serve(config, None).await
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match (cli.command, cli.config) {
        (Some(Command::CheckConfig { file }), _) => load(&file)
            .and_then(|c| {
                for room in c.all_rooms() {
                    waitroom::queue_page::Page::load(&room.page).with_context(|| {
                        format!(
                            "invalid configuration {} (room {})",
                            file.display(),
                            room.name
                        )
                    })?;
                }
                Ok(c)
            })
            .map(|c| {
                println!(
                    "{}: ok (public {}, origin {}, {} new users per minute, {} active)",
                    file.display(),
                    c.public,
                    c.origin,
                    c.settings.new_users_per_minute,
                    c.settings.max_active_users
                );
            }),
        (Some(Command::Demo { port, no_crowd }), _) => demo(port, !no_crowd).await,
        (Some(Command::Admin(args)), _) => admin_cli::run(args).await,
        (
            Some(Command::VerifyLottery {
                seed,
                first,
                last,
                commitment,
            }),
            _,
        ) => verify_lottery(&seed, first, last, commitment.as_deref()),
        (None, Some(path)) => match load(&path) {
            Ok(config) => serve(config, Some(path)).await,
            Err(e) => Err(e),
        },
        (None, None) => Err(anyhow::anyhow!(
            "nothing to do: give --config FILE, or a command (see --help)"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("waitroom: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
