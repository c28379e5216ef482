//! Storage: one SQLite database (`atbox.sqlite`) and a directory of blob files under
//! `data_dir`. Repo blocks and firehose events are in its repo log (`log`), everything
//! else in ordinary tables.
//!
//! Writes go through the single [`Writer`] thread (group commit, durable before the
//! caller hears back); reads use a small pool of their own connections, so in WAL mode
//! they never wait for the writer. Submodules hold the SQL for each concern; nothing
//! outside `storage` writes SQL. [`emit`] sequences firehose events inside write jobs,
//! as [`frames`] (the form events take in the repo log and on the wire).

pub mod accounts;
pub mod backup;
pub mod blobs;
pub mod certs;
pub mod emit;
pub mod events;
pub mod frames;
pub mod log;
pub mod oauth;
pub mod relays;
pub mod repos;
mod schema;
pub mod writer;

pub use writer::{Writer, WriterOptions};

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Seconds since the Unix epoch: the one clock for stored times and token lifetimes.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A storage failure. Clone so that one commit failure can be told to every job in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("database: {0}")]
    Sqlite(String),
    #[error("file: {0}")]
    Io(String),
    #[error("the write was not committed (the database was unavailable); try again")]
    NotCommitted,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk (the SD card) is full: not a bug, and the owner can fix it. Kept as its
    /// own kind so that every layer above can say so (a clear error, the screen).
    #[error("the disk is full ({0})")]
    Full(String),
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StorageError::Full(e.to_string()),
            _ => StorageError::Sqlite(e.to_string()),
        }
    }
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                StorageError::Full(e.to_string())
            }
            _ => StorageError::Io(e.to_string()),
        }
    }
}

/// Open storage: the writer, a read pool and the blob directory.
#[derive(Clone)]
pub struct Storage {
    pub writer: Writer,
    /// Where repo blocks and events are (shared with the writer).
    pub log: Arc<log::RepoLog>,
    readers: Arc<Mutex<Vec<Connection>>>,
    db_path: PathBuf,
    pub blobs: blobs::BlobFiles,
}

const DB_FILE: &str = "atbox.sqlite";

/// The database file of a data directory.
pub fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DB_FILE)
}

/// Opens a connection with atbox's settings. `synchronous = FULL` makes every commit
/// durable when it returns (WAL fsync), which is what lets the writer acknowledge.
fn open_connection(path: &Path) -> Result<Connection, StorageError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA page_size = 4096;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA temp_store = MEMORY;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(conn)
}

/// Creates `dir` (and parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Replaces `path` with `bytes` so that a power cut leaves the old file or the new one,
/// never a mix: a temp file (0600), fsync, rename, fsync the directory.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_durably_with_mode(path, bytes, 0o600)
}

/// [`write_durably`] with the file's permission bits (set explicitly: the process's
/// umask of 077 would otherwise narrow them).
pub fn write_durably_with_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a directory's entries durable (after a rename or a new file in it).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Storage {
    /// Opens (creating if needed) the data directory, migrates the schema and starts
    /// the writer. Must be called inside a Tokio runtime.
    pub fn open(data_dir: &Path, options: WriterOptions) -> Result<Storage, StorageError> {
        create_private_dir(data_dir)?;
        let db_path = db_path(data_dir);
        let mut conn = open_connection(&db_path)?;
        restrict_file(&db_path)?;
        schema::migrate(&mut conn)?;
        let log = Arc::new(log::RepoLog::load(&conn)?);
        let blobs = blobs::BlobFiles::open(&data_dir.join("blobs"))?;
        Ok(Storage {
            writer: Writer::start(conn, log.clone(), options)?,
            log,
            readers: Arc::new(Mutex::new(Vec::new())),
            db_path,
            blobs,
        })
    }

    /// Runs `f` on a read connection, off the async runtime.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (readers, path) = (self.readers.clone(), self.db_path.clone());
        tokio::task::spawn_blocking(move || with_reader(&readers, &path, f))
            .await
            .map_err(|e| E::from(StorageError::Io(format!("read task failed: {e}"))))?
    }

    /// Runs `f` on a read connection right here, on the calling thread: for lookups of
    /// a few rows by key (an account, a record, a repo's head), which take microseconds
    /// from the page cache — less than the hop to a blocking thread and back that
    /// [`read`](Self::read) makes (two thread switches, the larger part of a small
    /// read's cost). Anything that scans, or may wait, goes through `read`.
    pub fn look_up<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<StorageError>,
        F: FnOnce(&Connection) -> Result<T, E>,
    {
        with_reader(&self.readers, &self.db_path, f)
    }

    /// Runs `f` in the writer's next group commit (see [`Writer::write`]).
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        self.writer.write(f).await
    }
}

/// Sets a file (and its WAL/SHM companions, when present) to mode 0600: the database
/// holds signing keys and password hashes.
fn restrict_file(path: &Path) -> Result<(), StorageError> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

/// Runs `f` on a pooled read connection (opened if none is free, kept if the pool has
/// room).
fn with_reader<T, E, F>(
    readers: &Mutex<Vec<Connection>>,
    path: &std::path::Path,
    f: F,
) -> Result<T, E>
where
    E: From<StorageError>,
    F: FnOnce(&Connection) -> Result<T, E>,
{
    let conn = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let conn = match conn {
        Some(c) => c,
        None => {
            let c = open_connection(path).map_err(E::from)?;
            // Readers share the OS page cache; a small private cache each keeps memory
            // flat on a Pi.
            c.pragma_update(None, "cache_size", -256)
                .map_err(|e| E::from(e.into()))?;
            c
        }
    };
    let result = f(&conn);
    let mut pool = readers.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < 4 {
        pool.push(conn);
    }
    result
}
