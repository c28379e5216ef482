//! Backups: continuous, incremental, encrypted copies of the data directory to a USB
//! drive or S3-compatible storage, that restore onto a fresh card.
//!
//! - `key`: the age key every piece is sealed to, and its 24-word recovery phrase.
//! - `dest`: the destinations (a directory, S3) behind one `object_store` interface.
//! - `manifest`: what a backup holds; written last, so the newest is always complete.
//! - `run`: one run — ship only what the last manifest lacks (repo-log rows, blobs, the
//!   small tables when they changed), each piece read back and checked.
//! - `restore`: unpack into a fresh data directory, check every hash, head and
//!   signature; a restore then continues the firehose above the old box's numbers.
//! - `status`: what the screen, the LAN page and `atbox status` say about backups.
//! - `schedule`: the server's loop: a run every `backup_interval_secs`, a full
//!   verification (restore into a scratch directory) once a day.
//!
//! The database side (a consistent picture without writing to the card, rows put back)
//! is `storage::backup`.

mod dest;
mod key;
mod manifest;
mod restore;
mod run;
mod schedule;
pub mod status;

pub use dest::{Destination, Store, DIR_FOLDER};
pub use key::{BackupKey, BadPhrase, OpenError};
pub use manifest::Manifest;
pub use restore::{restore, verify, Restored};
pub use run::{run, RunReport, Source};
pub use schedule::{check_now, destinations, run_all, run_now, scratch_for, watch, Lock};

use crate::storage::StorageError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a long run reports how far it got (the CLI prints it; the server logs nothing).
pub type Progress = Arc<dyn Fn(String) + Send + Sync>;

/// A progress sink that says nothing.
pub fn quiet() -> Progress {
    Arc::new(|_| {})
}

/// Runs `work` on a blocking thread (SQLite, files, sealing), giving it the runtime's
/// handle to call the async store with; `what` names it if the thread dies.
async fn on_a_blocking_thread<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce(tokio::runtime::Handle) -> Result<T, BackupError> + Send + 'static,
) -> Result<T, BackupError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || work(handle))
        .await
        .map_err(|e| BackupError::Destination(format!("the {what} task failed: {e}")))?
}

/// Why a backup, restore or verification failed — each worded for the owner.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackupError {
    /// The USB drive (or directory) is not there.
    #[error("{0}")]
    Absent(String),
    #[error("the backup drive is full: {0}")]
    Full(String),
    #[error("the backup destination failed: {0}")]
    Destination(String),
    #[error("not found at the destination: {0}")]
    Missing(String),
    #[error("this backup was made with a different key: the recovery phrase does not match (it is the one `atbox backup key` shows on the box that made it)")]
    WrongKey,
    #[error("the backup is damaged: {0}")]
    Damaged(String),
    #[error("{} is not empty: restore into a new, empty data directory", .0.display())]
    NotEmpty(PathBuf),
    #[error("on this box: {0}")]
    Local(String),
}

impl BackupError {
    fn from_io(path: &Path, e: std::io::Error) -> BackupError {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                BackupError::Full(format!("{}: {e}", path.display()))
            }
            _ => BackupError::Destination(format!("{}: {e}", path.display())),
        }
    }

    fn open(what: &str, e: OpenError) -> BackupError {
        match e {
            OpenError::WrongKey => BackupError::WrongKey,
            OpenError::Damaged(why) => BackupError::Damaged(format!("{what}: {why}")),
        }
    }
}

impl From<StorageError> for BackupError {
    fn from(e: StorageError) -> Self {
        BackupError::Local(e.to_string())
    }
}

/// The backups at `dest`, oldest first (each manifest read and opened with `key`).
pub async fn list(dest: &Destination, key: &BackupKey) -> Result<Vec<Manifest>, BackupError> {
    let store = dest.open()?;
    let mut out = Vec::new();
    for (seq, _) in manifest::list(&store).await? {
        out.push(manifest::read(&store, key, seq).await?);
    }
    Ok(out)
}
