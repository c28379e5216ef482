//! When backups run: the server's loop (a run to every destination every
//! `backup_interval_secs`, and once a day a full check — the newest backup restored into
//! a scratch directory and verified), and `atbox backup run`. One run at a time per data
//! directory, whichever process asks (`Lock`), and every outcome recorded in
//! `status` for the screen, the LAN page and `atbox status`.

use super::status::BackupStatus;
use super::{BackupError, BackupKey, Destination, Progress, RunReport, Source};
use crate::config::Config;
use crate::storage::unix_now;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first run waits this long after start (the box has just booted; let it settle).
const FIRST_RUN_AFTER: Duration = Duration::from_secs(30);
/// A full check of the newest backup at most this often.
const VERIFY_EVERY_SECS: i64 = 24 * 3600;

/// The destinations `config` names: the directory first, then S3.
pub fn destinations(config: &Config) -> Vec<Destination> {
    let mut all = Vec::new();
    if let Some(dir) = &config.backup.dir {
        all.push(Destination::Dir(dir.clone()));
    }
    if let Some(s3) = &config.backup.s3 {
        all.push(Destination::S3(s3.clone()));
    }
    all
}

/// Held while a run or check is under way (an exclusive `flock` on
/// `data_dir/backup.lock`, released when the process dies however it dies).
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Waits for any other run on this data directory to finish.
    pub fn acquire(data_dir: &Path) -> std::io::Result<Lock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(data_dir.join("backup.lock"))?;
        file.lock()?;
        Ok(Lock { _file: file })
    }
}

async fn locked(data_dir: &Path) -> Result<Lock, BackupError> {
    let dir = data_dir.to_owned();
    tokio::task::spawn_blocking(move || Lock::acquire(&dir))
        .await
        .map_err(|e| BackupError::Local(e.to_string()))?
        .map_err(|e| BackupError::Local(format!("cannot lock {}: {e}", data_dir.display())))
}

fn source(config: &Config) -> Source {
    Source {
        data_dir: config.data_dir.clone(),
        hostname: config.hostname.clone(),
    }
}

/// Backs up to `dest` now, under the lock, and records the outcome.
pub async fn run_now(
    config: &Config,
    dest: &Destination,
    key: &BackupKey,
    progress: Progress,
) -> Result<RunReport, BackupError> {
    let _lock = locked(&config.data_dir).await?;
    let outcome = super::run(&source(config), dest, key, progress).await;
    record(&config.data_dir, |s| {
        s.record_run(dest, unix_now(), outcome.as_ref().map(|r| r.seq))
    });
    outcome
}

/// Backs up to every configured destination, one after the other.
pub async fn run_all(
    config: &Config,
    key: &BackupKey,
    progress: Progress,
) -> Vec<(Destination, Result<RunReport, BackupError>)> {
    let mut out = Vec::new();
    for dest in destinations(config) {
        let outcome = run_now(config, &dest, key, progress.clone()).await;
        out.push((dest, outcome));
    }
    out
}

/// Checks the newest backup at `dest` in full, under the lock, and records the outcome.
pub async fn check_now(
    config: &Config,
    dest: &Destination,
    key: &BackupKey,
    progress: Progress,
) -> Result<super::Restored, BackupError> {
    let _lock = locked(&config.data_dir).await?;
    let outcome = super::verify(dest, key, &scratch_for(dest, &config.data_dir), progress).await;
    record(&config.data_dir, |s| {
        s.record_verify(dest, unix_now(), outcome.as_ref().map(|_| ()))
    });
    outcome
}

/// Updates the saved status (under the lock the caller holds); a status that cannot be
/// saved is logged, never a failed backup.
fn record(data_dir: &Path, update: impl FnOnce(&mut BackupStatus)) {
    let mut status = BackupStatus::load(data_dir);
    update(&mut status);
    if let Err(e) = status.save(data_dir) {
        tracing::warn!("backup: cannot save its status: {e}");
    }
}

/// Where a full check restores to: the drive itself when the destination is one (no
/// wear on the card, and no RAM-backed /tmp filling up), else beside the data.
pub fn scratch_for(dest: &Destination, data_dir: &Path) -> PathBuf {
    match dest {
        Destination::Dir(dir) => dir.clone(),
        Destination::S3(_) => data_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
    }
}

/// The server's loop. Does nothing (but keep the key) when no destination is set.
pub async fn watch(config: Config) {
    let dests = destinations(&config);
    if dests.is_empty() {
        return;
    }
    let key = match BackupKey::load_or_create(&config.data_dir) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!("backup: cannot read or make the backup key: {e}");
            return;
        }
    };
    tokio::time::sleep(FIRST_RUN_AFTER).await;
    let mut every = tokio::time::interval(Duration::from_secs(config.backup.interval_secs));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for dest in &dests {
            match run_now(&config, dest, &key, super::quiet()).await {
                Ok(r) if r.wrote => tracing::info!(
                    "backup to {}: #{} ({} rows, {} blobs, {} bytes)",
                    dest.label(),
                    r.seq,
                    r.rows_shipped,
                    r.blobs_shipped,
                    r.bytes_shipped
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("backup to {} failed: {e}", dest.label());
                    continue;
                }
            }
            let due = BackupStatus::load(&config.data_dir)
                .last_checked(dest)
                .is_none_or(|t| unix_now() - t >= VERIFY_EVERY_SECS);
            if due {
                match check_now(&config, dest, &key, super::quiet()).await {
                    Ok(r) => tracing::info!(
                        "backup at {}: #{} checked in full ({} accounts, {} records)",
                        dest.label(),
                        r.seq,
                        r.accounts,
                        r.records
                    ),
                    Err(e) => {
                        tracing::error!("backup at {}: the full check failed: {e}", dest.label())
                    }
                }
            }
        }
    }
}
