//! The `loadtest` binary: replays arrival spikes against a target (being built).

use clap::{Parser, Subcommand};

/// loadtest: replays arrival spikes against a target and reports what users and the origin saw.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay a spike of visitors against a target.
    Spike {
        /// The URL visitors open.
        #[arg(long)]
        target: String,
        /// How many visitors arrive.
        #[arg(long)]
        users: u32,
        /// Over how many seconds they arrive.
        #[arg(long)]
        over: f64,
        /// Write summary.json and report.html here.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Spike { .. } => anyhow::bail!("loadtest spike is not implemented yet (issue 3)"),
    }
}
