//! The one writer: a thread that owns the database's write connection and commits
//! queued writes in groups.
//!
//! Every write in atbox is a job sent here. The thread takes whatever is queued (it
//! never waits to fill a batch, so a lone write goes straight through), opens one
//! transaction, runs each job inside its own savepoint (a failing job rolls back alone),
//! commits with one fsync (`synchronous = FULL`), and only then tells each job's caller
//! the outcome. A caller is never told "done" before its data is durable.

use super::StorageError;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Largest number of jobs committed together.
const MAX_BATCH: usize = 256;

/// What a job hands back after running: whether it succeeded (else its savepoint is
/// rolled back) and what to do once the transaction's fate is known.
type Deliver = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver) + Send>;

/// A handle for sending jobs to the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub fn start(conn: Connection) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        std::thread::Builder::new()
            .name("atbox-writer".into())
            .spawn(move || run(conn, rx))
            .expect("spawning the writer thread");
        Writer { jobs: tx }
    }

    /// Runs `f` in the next group commit; resolves once it is durable (or failed).
    /// `f` runs on the writer thread inside a savepoint and must not block on I/O
    /// other than the database.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = f(conn);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(committed.map_err(E::from).and(result));
            });
            (ok, deliver)
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| E::from(StorageError::NotCommitted))?;
        rx.await.map_err(|_| E::from(StorageError::NotCommitted))?
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch);
    }
}

fn commit_batch(conn: &mut Connection, batch: &mut Vec<Job>) {
    let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping the jobs unblocks their callers with `NotCommitted`.
        tracing::error!("cannot begin a write transaction: {e}");
        batch.clear();
        return;
    }
    for job in batch.drain(..) {
        let outcome = conn
            .execute_batch("SAVEPOINT job")
            .map_err(StorageError::from)
            .map(|()| job(conn));
        match outcome {
            Ok((true, deliver)) => {
                let _ = conn.execute_batch("RELEASE job");
                delivers.push(deliver);
            }
            Ok((false, deliver)) => {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                // Its own error is already captured; the commit outcome does not change it.
                delivers.push(deliver);
            }
            Err(e) => {
                // The job was dropped unrun: its caller sees `NotCommitted`.
                tracing::error!("savepoint failed: {e}");
            }
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(StorageError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for deliver in delivers {
        deliver(committed.clone());
    }
}
