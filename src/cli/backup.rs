//! `atbox backup run|list|verify|restore|key`: backups by hand, on the data directory of
//! a running or stopped server (a run waits for the server's own to finish).

use crate::backup::{self, BackupKey, Destination, Progress};
use crate::config::{Config, S3Target};
use anyhow::{bail, Context};
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub(crate) enum BackupCommand {
    /// Back up now to every configured destination (backup_dir, backup_s3_url).
    Run,
    /// List the backups at each configured destination, or at --from.
    List {
        /// A directory (the drive's mount point) or s3://bucket/prefix?endpoint=…
        #[arg(long)]
        from: Option<String>,
        /// The recovery phrase (default: this box's key; or ATBOX_BACKUP_KEY).
        #[arg(long)]
        key: Option<String>,
    },
    /// Read the newest backup back in full: every hash, a restore into a scratch
    /// directory, every repo's head and signature.
    Verify {
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        key: Option<String>,
    },
    /// Restore a backup into a new, empty data directory (then point data_dir at it,
    /// or move it into place, and start atbox).
    Restore {
        /// A directory (the drive's mount point) or s3://bucket/prefix?endpoint=…
        /// (credentials from ATBOX_BACKUP_S3_ACCESS_KEY_ID / _SECRET_ACCESS_KEY).
        #[arg(long)]
        from: String,
        /// The new data directory (missing or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The 24-word recovery phrase (or ATBOX_BACKUP_KEY).
        #[arg(long)]
        key: Option<String>,
        /// Which backup (its number in `atbox backup list`; default: the newest).
        #[arg(long)]
        seq: Option<u64>,
    },
    /// Print this box's recovery phrase: write it down; a restore needs it.
    Key,
}

pub(crate) async fn run(config: Config, cmd: BackupCommand) -> anyhow::Result<()> {
    // What a restore writes is the box's own data: private, as the server makes it.
    crate::server::restrict_umask();
    match cmd {
        BackupCommand::Run => run_all(&config).await,
        BackupCommand::List { from, key } => {
            let key = key_for(&config, key)?;
            for dest in chosen(&config, from)? {
                println!("{} ({}):", dest.label(), dest.kind());
                let all = backup::list(&dest, &key)
                    .await
                    .with_context(|| format!("listing {}", dest.label()))?;
                if all.is_empty() {
                    println!("  no backups yet");
                }
                for m in all {
                    println!(
                        "  #{:<6} {}  {} accounts  {}  from {}",
                        m.seq,
                        when(m.created_unix),
                        m.repos.len(),
                        crate::device::screens::human_bytes(m.size()),
                        m.hostname
                    );
                }
            }
            Ok(())
        }
        BackupCommand::Verify { from, key } => {
            let key = key_for(&config, key)?;
            let mut failed = false;
            for dest in chosen(&config, from.clone())? {
                eprintln!("checking the newest backup at {} …", dest.label());
                let outcome = if from.is_some() {
                    let scratch = backup::scratch_for(&dest, &config.data_dir);
                    backup::verify(&dest, &key, &scratch, printer()).await
                } else {
                    backup::check_now(&config, &dest, &key, printer()).await
                };
                match outcome {
                    Ok(r) => println!(
                        "{}: backup #{} of {} ({}) is good: {} accounts, {} records, {} blobs; every hash, head and signature checked",
                        dest.label(),
                        r.seq,
                        r.hostname,
                        when(r.created_unix),
                        r.accounts,
                        r.records,
                        r.blobs
                    ),
                    Err(e) => {
                        eprintln!("{}: {e}", dest.label());
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("a backup failed its check");
            }
            Ok(())
        }
        BackupCommand::Restore {
            from,
            data_dir,
            key,
            seq,
        } => {
            let phrase = key
                .or_else(|| std::env::var("ATBOX_BACKUP_KEY").ok())
                .context(
                    "give the recovery phrase with --key \"word1 word2 …\" or ATBOX_BACKUP_KEY",
                )?;
            let key = BackupKey::from_phrase(&phrase)?;
            let dest = destination(&from)?;
            let r = backup::restore(&dest, &key, &data_dir, seq, printer()).await?;
            println!(
                "restored backup #{} of {} ({}) into {}: {} accounts, {} records, {} blobs; every repo verified",
                r.seq,
                r.hostname,
                when(r.created_unix),
                data_dir.display(),
                r.accounts,
                r.records,
                r.blobs
            );
            if let Some(next) = r.next_seq {
                println!("the firehose goes on from #{next}; relays were told to resync each repo");
            }
            println!(
                "next: set data_dir = \"{}\" (or move it into place) and start atbox",
                data_dir.display()
            );
            Ok(())
        }
        BackupCommand::Key => {
            let key = BackupKey::load_or_create(&config.data_dir)
                .with_context(|| format!("the backup key in {}", config.data_dir.display()))?;
            println!("The recovery phrase of this box's backups. Write it down and keep it");
            println!("away from the box: restoring a backup needs it, and nothing else can");
            println!("open one.\n");
            for (i, word) in key.phrase().iter().enumerate() {
                print!("{:>2}. {word:<10}", i + 1);
                if i % 4 == 3 {
                    println!();
                }
            }
            Ok(())
        }
    }
}

async fn run_all(config: &Config) -> anyhow::Result<()> {
    if backup::destinations(config).is_empty() {
        bail!("no backup destination is set: set backup_dir (a USB drive) or backup_s3_url (README \"Backups\")");
    }
    let key = BackupKey::load_or_create(&config.data_dir)
        .with_context(|| format!("the backup key in {}", config.data_dir.display()))?;
    let mut failed = false;
    for (dest, outcome) in backup::run_all(config, &key, printer()).await {
        match outcome {
            Ok(r) if r.wrote => println!(
                "{} ({}): backup #{} written: {} accounts, {} new log rows, {} new blobs, {} sent",
                dest.label(),
                dest.kind(),
                r.seq,
                r.accounts,
                r.rows_shipped,
                r.blobs_shipped,
                crate::device::screens::human_bytes(r.bytes_shipped)
            ),
            Ok(r) => println!(
                "{} ({}): nothing new since backup #{}",
                dest.label(),
                dest.kind(),
                r.seq
            ),
            Err(e) => {
                eprintln!("{} ({}): {e}", dest.label(), dest.kind());
                failed = true;
            }
        }
    }
    println!(
        "{}",
        backup::status::summary_now(config, crate::storage::unix_now()).line
    );
    if failed {
        bail!("a backup failed");
    }
    Ok(())
}

/// The key to open backups with: `--key`, else ATBOX_BACKUP_KEY, else this box's own.
fn key_for(config: &Config, given: Option<String>) -> anyhow::Result<BackupKey> {
    if let Some(phrase) = given.or_else(|| std::env::var("ATBOX_BACKUP_KEY").ok()) {
        return Ok(BackupKey::from_phrase(&phrase)?);
    }
    BackupKey::load(&config.data_dir)
        .with_context(|| format!("the backup key in {}", config.data_dir.display()))?
        .context("this data directory has no backup key: give the recovery phrase with --key")
}

/// `--from` if given, else every configured destination.
fn chosen(config: &Config, from: Option<String>) -> anyhow::Result<Vec<Destination>> {
    match from {
        Some(f) => Ok(vec![destination(&f)?]),
        None => {
            let all = backup::destinations(config);
            if all.is_empty() {
                bail!(
                    "no backup destination is set: give --from, or set backup_dir or backup_s3_url"
                );
            }
            Ok(all)
        }
    }
}

/// A destination named on the command line: `s3://…` (credentials from the
/// environment), else a directory — the drive's mount point, or the `atbox-backup`
/// folder on it.
fn destination(from: &str) -> anyhow::Result<Destination> {
    if from.starts_with("s3://") {
        let id = std::env::var("ATBOX_BACKUP_S3_ACCESS_KEY_ID").unwrap_or_default();
        let secret = std::env::var("ATBOX_BACKUP_S3_SECRET_ACCESS_KEY").unwrap_or_default();
        if id.is_empty() || secret.is_empty() {
            bail!("set ATBOX_BACKUP_S3_ACCESS_KEY_ID and ATBOX_BACKUP_S3_SECRET_ACCESS_KEY to read {from}");
        }
        let target =
            S3Target::parse(from, &id, &secret).map_err(|e| anyhow::anyhow!("{from}: {e}"))?;
        return Ok(Destination::S3(target));
    }
    let path = Path::new(from);
    let dir = match path.file_name() {
        Some(name) if name == backup::DIR_FOLDER => path.parent().unwrap_or(path),
        _ => path,
    };
    let dir = std::fs::canonicalize(dir).with_context(|| format!("{from} is not there"))?;
    if !dir.join(backup::DIR_FOLDER).is_dir() {
        bail!(
            "{} holds no atbox backup (no {}/ folder): is the drive mounted?",
            dir.display(),
            backup::DIR_FOLDER
        );
    }
    Ok(Destination::Dir(dir))
}

/// Progress on stderr.
fn printer() -> Progress {
    Arc::new(|line: String| eprintln!("  {line}"))
}

fn when(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| unix.to_string())
}
