//! The one writer: a thread that owns the database's write connection and commits
//! queued writes in groups.
//!
//! Every write in atbox is a job sent here. The thread takes whatever is queued (it
//! never waits to fill a batch, so a lone write goes straight through), opens one
//! transaction, runs each job inside its own savepoint (a failing job rolls back alone,
//! with the firehose events it sequenced), commits with one fsync
//! (`synchronous = FULL`), and only then tells each job's caller the outcome — and after
//! that publishes the batch's events, in sequence order, to firehose subscribers.
//! A caller is never told "done" before its data is durable, and no subscriber sees an
//! event that could still roll back.

use super::events::SeqEvent;
use super::StorageError;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Largest number of jobs committed together.
const MAX_BATCH: usize = 256;

/// Events a job sequenced; published once its batch is durable.
#[derive(Default)]
pub struct Outbox {
    pub events: Vec<Arc<SeqEvent>>,
}

/// What a job hands back after running: whether it succeeded (else its savepoint is
/// rolled back), what to do once the transaction's fate is known, and its events.
type Deliver = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> (bool, Deliver, Outbox) + Send>;

/// A handle for sending jobs to the writer thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    published: broadcast::Sender<Arc<SeqEvent>>,
}

impl Writer {
    /// Starts the writer thread on `conn`. `live_buffer` events are kept for firehose
    /// subscribers that are behind; one further behind is cut off.
    pub fn start(conn: Connection, live_buffer: usize) -> Writer {
        let (tx, rx) = mpsc::channel::<Job>(1024);
        let (published, _) = broadcast::channel(live_buffer.max(1));
        let publisher = published.clone();
        std::thread::Builder::new()
            .name("atbox-writer".into())
            .spawn(move || run(conn, rx, publisher))
            .expect("spawning the writer thread");
        Writer {
            jobs: tx,
            published,
        }
    }

    /// Events as they are committed (for the firehose).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SeqEvent>> {
        self.published.subscribe()
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
        self.write_with_events(move |conn, _| f(conn)).await
    }

    /// Like [`write`](Self::write), for jobs that sequence firehose events into the
    /// [`Outbox`] (see `storage::events::append`).
    pub async fn write_with_events<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: FnOnce(&Connection, &mut Outbox) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let mut outbox = Outbox::default();
            let result = f(conn, &mut outbox);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(committed.map_err(E::from).and(result));
            });
            (ok, deliver, outbox)
        });
        self.jobs
            .send(job)
            .await
            .map_err(|_| E::from(StorageError::NotCommitted))?;
        rx.await.map_err(|_| E::from(StorageError::NotCommitted))?
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Job>,
    publisher: broadcast::Sender<Arc<SeqEvent>>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, &publisher);
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Job>,
    publisher: &broadcast::Sender<Arc<SeqEvent>>,
) {
    let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
    let mut events: Vec<Arc<SeqEvent>> = Vec::new();
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
            Ok((true, deliver, outbox)) => {
                let _ = conn.execute_batch("RELEASE job");
                delivers.push(deliver);
                events.extend(outbox.events);
            }
            Ok((false, deliver, _)) => {
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
        events.clear();
    }
    for deliver in delivers {
        deliver(committed.clone());
    }
    for event in events {
        // No subscribers is fine: the event is in the database for later cursors.
        let _ = publisher.send(event);
    }
}
