//! The `loadtest` binary: flags; the work is in the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use loadtest::profile::Profile;
use loadtest::run::{self, Spike};
use loadtest::visitor::Behaviour;

/// loadtest: replays arrival spikes against a target and reports what users and the origin saw.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a spike of visitors against one target.
    Spike {
        /// The URL visitors open (waitroom's public URL, or the origin itself).
        #[arg(long)]
        target: String,
        /// The origin-stub's URL, for its counters (default: the target, unless a
        /// --journey is given: any site then, and no origin-stub counters).
        #[arg(long)]
        origin: Option<String>,
        #[command(flatten)]
        crowd: Crowd,
    },
    /// Run the same spike twice, straight at the origin and through waitroom, side by side.
    Compare {
        /// The origin-stub's URL.
        #[arg(long)]
        origin: String,
        /// waitroom's public URL (in front of that origin).
        #[arg(long)]
        proxy: String,
        #[command(flatten)]
        crowd: Crowd,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ProfileArg {
    /// Evenly over the window.
    Uniform,
    /// Front-loaded: the opening minute's rush, decaying.
    Spike,
}

#[derive(Args)]
struct Crowd {
    /// How many visitors arrive.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Over how many seconds they arrive.
    #[arg(long, default_value_t = 60.0)]
    over: f64,
    /// How arrivals are spread.
    #[arg(long, value_enum, default_value_t = ProfileArg::Uniform)]
    profile: ProfileArg,
    /// Replay arrival times from a CSV file (seconds from the start, first column).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Write summary.json and report.html into this directory.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// waitroom's admin URL, for the configured rate and the queue length over time.
    #[arg(long)]
    admin: Option<String>,
    /// The admin bearer token (or WAITROOM_ADMIN_TOKEN).
    #[arg(long, env = "WAITROOM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Share of visitors who walk away while waiting (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    abandon: f64,
    /// A walking-away visitor leaves after this many status polls.
    #[arg(long, default_value_t = 2)]
    abandon_after_polls: u32,
    /// Share of waiting visitors who also reload the page now and then.
    #[arg(long, default_value_t = 0.1)]
    reload: f64,
    /// Share of visitors who retry a failed step.
    #[arg(long, default_value_t = 0.8)]
    retry: f64,
    /// How many times a retrying visitor tries a failed step again.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Think time between pages, milliseconds, low end.
    #[arg(long, default_value_t = 500)]
    think_min_ms: u64,
    /// Think time between pages, milliseconds, high end.
    #[arg(long, default_value_t = 2000)]
    think_max_ms: u64,
    /// Poll every this many milliseconds, ignoring the waiting room's poll_after_ms.
    #[arg(long)]
    poll_ms: Option<u64>,
    /// A request gives up after this many seconds.
    #[arg(long, default_value_t = 15.0)]
    request_timeout: f64,
    /// Keep the origin's counters and registrations from earlier runs.
    #[arg(long)]
    no_reset: bool,
    /// What visitors do on the site: a TOML journey file (steps with method, path,
    /// form, expected status and text, think times; see docs/loadtest.md). Default:
    /// origin-stub's registration.
    #[arg(long, value_name = "FILE")]
    journey: Option<PathBuf>,
    /// End the run this many seconds after it starts, with a partial report of
    /// whatever is under way.
    #[arg(long, value_name = "SECONDS")]
    max_duration: Option<f64>,
    /// Present each visitor from an address of its own (10.x.y.z, in
    /// X-Forwarded-For), as real visitors behind a load balancer are: a waitroom
    /// that trusts this host (clients.trusted_proxies) then limits each on its own.
    /// Without it, every visitor is this one host, as behind one carrier's NAT.
    #[arg(long)]
    spread_addresses: bool,
}

impl Crowd {
    fn spike(&self, label: &str, target: &str, origin: Option<String>) -> anyhow::Result<Spike> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.abandon),
            "--abandon must be between 0 and 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.reload),
            "--reload must be between 0 and 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.retry),
            "--retry must be between 0 and 1"
        );
        anyhow::ensure!(
            self.over > 0.0 || self.trace.is_some(),
            "--over must be positive"
        );
        anyhow::ensure!(
            self.think_min_ms <= self.think_max_ms,
            "--think-min-ms must not exceed --think-max-ms"
        );
        if let Some(d) = self.max_duration {
            anyhow::ensure!(
                d > 0.0 && d.is_finite(),
                "--max-duration must be a positive number of seconds"
            );
        }
        let steps = match &self.journey {
            Some(path) => loadtest::steps::Steps::read(path)?,
            None => loadtest::steps::Steps::origin_stub(),
        };
        let profile = match (&self.trace, self.profile) {
            (Some(path), _) => Profile::read_trace(path)?,
            (None, ProfileArg::Uniform) => Profile::Uniform,
            (None, ProfileArg::Spike) => Profile::Spike,
        };
        let admin = match (&self.admin, &self.admin_token) {
            (Some(a), Some(t)) => Some((a.trim_end_matches('/').to_owned(), t.clone())),
            (Some(_), None) => {
                anyhow::bail!("--admin needs --admin-token (or WAITROOM_ADMIN_TOKEN)")
            }
            _ => None,
        };
        Ok(Spike {
            label: label.to_owned(),
            target: target.trim_end_matches('/').to_owned(),
            profile,
            users: self.users,
            over: self.over,
            behaviour: Behaviour {
                abandon_share: self.abandon,
                abandon_after_polls: self.abandon_after_polls,
                reload_share: self.reload,
                retry_share: self.retry,
                retries: self.retries,
                think: (
                    Duration::from_millis(self.think_min_ms),
                    Duration::from_millis(self.think_max_ms),
                ),
                fixed_poll: self.poll_ms.map(Duration::from_millis),
                ..Behaviour::default()
            },
            origin: origin.map(|o| o.trim_end_matches('/').to_owned()),
            admin,
            reset_origin: !self.no_reset,
            request_timeout: Duration::from_secs_f64(self.request_timeout),
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            steps: std::sync::Arc::new(steps),
            max_duration: self.max_duration.map(Duration::from_secs_f64),
            spread_addresses: self.spread_addresses,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Spike {
            target,
            origin,
            crowd,
        } => {
            let origin = match (&origin, &crowd.journey) {
                (None, None) => Some(target.clone()),
                _ => origin,
            };
            let spike = crowd.spike("run", &target, origin)?;
            let outcome = run::run(&spike).await?;
            print!("{}", loadtest::report::table(&[&outcome.summary]));
            print!("\n{}", loadtest::report::step_table(&outcome.summary));
            if let Some(dir) = &crowd.report {
                run::write_report(dir, "loadtest spike", &[&outcome])
                    .context("writing the report")?;
                eprintln!("report: {}", dir.join("report.html").display());
            }
        }
        Command::Compare {
            origin,
            proxy,
            crowd,
        } => {
            let mut direct = crowd.spike("direct", &origin, Some(origin.clone()))?;
            direct.admin = None; // no waiting room in this run
            let mut through = crowd.spike("waitroom", &proxy, Some(origin.clone()))?;
            eprintln!(
                "1/2: {} visitors straight at the origin {origin}",
                direct.users
            );
            let a = run::run(&direct).await?;
            eprintln!("2/2: the same through waitroom {proxy}");
            through.label = "waitroom".into();
            let b = run::run(&through).await?;
            print!("{}", loadtest::report::table(&[&a.summary, &b.summary]));
            for s in [&a.summary, &b.summary] {
                print!("\n{}:\n{}", s.label, loadtest::report::step_table(s));
            }
            if let Some(dir) = &crowd.report {
                run::write_report(
                    dir,
                    "loadtest compare: straight at the origin vs through waitroom",
                    &[&a, &b],
                )
                .context("writing the report")?;
                eprintln!("report: {}", dir.join("report.html").display());
            }
        }
    }
    Ok(())
}
