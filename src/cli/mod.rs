//! The `atbox` command line. Each subcommand group lives in its own module; this one
//! parses arguments (clap), sets up logging, and turns errors into one line on stderr
//! and a non-zero exit.

mod admin;
mod backup;
mod bench;
mod display;
mod doctor;
mod firstboot;
mod lan;
mod repo;
mod status;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "atbox",
    version,
    about = "A personal data server for the AT Protocol, for your home"
)]
struct Cli {
    /// Configuration file (default: /etc/atbox/atbox.toml if it exists, else the
    /// built-in development settings). ATBOX_* variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the PDS.
    Serve,
    /// Manage accounts (works on the data directory of a running or stopped server).
    #[command(subcommand)]
    Account(admin::AccountCommand),
    /// Manage invite codes.
    #[command(subcommand)]
    Invite(admin::InviteCommand),
    /// Manage an account's identity (did:plc).
    #[command(subcommand)]
    Identity(admin::IdentityCommand),
    /// Show accounts, the firehose and what the relays report.
    Status,
    /// Check that the world can reach this PDS and the network sees it (DNS, ports,
    /// certificate, clock, DID documents, handles, relays), and say what to fix.
    Doctor,
    /// Talk to relays.
    #[command(subcommand)]
    Relay(status::RelayCommand),
    /// Apply the boot partition's atbox.toml on the appliance's first boot (run by
    /// atbox-firstboot.service).
    Firstboot(firstboot::FirstbootArgs),
    /// Measure atbox on this machine.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// The OLED status display.
    #[command(subcommand)]
    Display(display::DisplayCommand),
    /// Find PDSes on this LAN by mDNS, and resolve .local names.
    Lan(lan::LanArgs),
    /// Work with repository CAR files (as exported by com.atproto.sync.getRepo).
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Back up, list, verify and restore (encrypted, to a USB drive or S3).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
}

/// The async runtime every command runs on: two workers (a Pi has four cores, and the
/// writer has a thread of its own) and a small pool for blocking work (SQLite reads,
/// password hashing), which bounds memory under load.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
}

/// Logs to stderr, filtered by `ATBOX_LOG` (`target=level` pairs and a default level,
/// comma-separated: `atbox=debug,warn`); unset or unreadable, `atbox=info,warn`.
fn init_logging() {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = || {
        "atbox=info,warn"
            .parse::<Targets>()
            .expect("a valid filter")
    };
    let filter = match std::env::var("ATBOX_LOG") {
        Ok(spec) => spec.parse().unwrap_or_else(|e| {
            eprintln!("ATBOX_LOG={spec:?} is not a log filter ({e}); using atbox=info,warn");
            default()
        }),
        Err(_) => default(),
    };
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Repo(cmd) => repo::run(cmd),
        Command::Bench(cmd) => bench::run(cmd),
        Command::Lan(args) => lan::run(args),
        Command::Firstboot(args) => {
            init_logging();
            firstboot::run(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Serve => serve(cli.config),
        Command::Account(cmd) => with_config(cli.config, |config| admin::account(config, cmd)),
        Command::Invite(cmd) => with_config(cli.config, |config| admin::invite(config, cmd)),
        Command::Status => with_config(cli.config, status::status),
        Command::Doctor => with_config(cli.config, doctor::run),
        Command::Identity(cmd) => with_config(cli.config, |config| admin::identity(config, cmd)),
        Command::Relay(cmd) => with_config(cli.config, |config| status::relay(config, cmd)),
        Command::Display(cmd) => with_config(cli.config, |config| display::run(config, cmd)),
        Command::Backup(cmd) => with_config(cli.config, |config| backup::run(config, cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("atbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `atbox serve`; when the server asks for a restart (the setup page saved settings),
/// atbox executes itself again with the same arguments: the same process for systemd
/// (`Type=notify` sees READY again), everything rebuilt from the new configuration.
/// At most two malloc arenas (glibc's default is eight per core). Every thread that
/// allocates while another holds an arena gets one of its own, and memory freed in an
/// arena stays resident in it: with the runtime's workers and the blocking threads
/// that read and export, four exports of a 50,000-record repo at once raised the
/// server's resident memory by 7–10 MiB instead of 4–6 MiB. Before any thread starts.
fn limit_malloc_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    limit_malloc_arenas();
    init_logging();
    let config = crate::config::load(path.as_deref(), &|k| std::env::var(k).ok())?;
    let runtime = runtime()?;
    let exit = runtime.block_on(crate::server::serve(config))?;
    // Background tasks end here, and with them the storage writer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    if exit == crate::server::Exit::Restart {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe()?;
        let err = std::process::Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .exec();
        anyhow::bail!(
            "could not restart {} ({err}); start atbox again: the new settings are saved",
            exe.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the configuration and runs `f` on a Tokio runtime.
fn with_config<F, Fut>(path: Option<PathBuf>, f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(crate::config::Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    init_logging();
    let config = crate::config::load(path.as_deref(), &|k| std::env::var(k).ok())?;
    let runtime = runtime()?;
    runtime.block_on(f(config))?;
    Ok(ExitCode::SUCCESS)
}
