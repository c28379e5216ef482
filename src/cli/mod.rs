//! The `atbox` command line. Each subcommand lives in its own module; this one parses
//! arguments (clap) and turns errors into one line on stderr and a non-zero exit.

mod repo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "atbox",
    version,
    about = "A personal data server for the AT Protocol, for your home"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with repository CAR files (as exported by com.atproto.sync.getRepo).
    #[command(subcommand)]
    Repo(repo::RepoCommand),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Repo(cmd) => repo::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("atbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
