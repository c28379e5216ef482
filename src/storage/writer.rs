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
//!
//! Checkpoints are the writer's too: SQLite's automatic checkpoint is off, and the WAL
//! is copied into the database when the writer has been idle for a few seconds or the
//! WAL passes a size bound — a passive checkpoint that leaves the WAL file in place to
//! be reused, so the card sees no truncate-and-regrow churn.

use super::log::{Change, RepoLog};
use super::StorageError;
use rusqlite::Connection;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Largest number of jobs committed together by default.
pub const MAX_BATCH: usize = 256;
/// Checkpoint once the WAL holds this many pages (8 MiB of 4 KiB pages): a page
/// rewritten by many commits in between (the record index's last leaf, a repo's
/// head) reaches the database file once...
const WAL_CHECKPOINT_PAGES: i64 = 2048;
/// ...or after this long without writes.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(3);
/// Longest a batch waits for writes that are still being prepared (see
/// [`Writer::intent`]).
const GATHER_WAIT: Duration = Duration::from_millis(2);

/// Pages in the WAL after the last commit (set by SQLite's WAL hook; one writer
/// connection per process holds the hook).
static WAL_PAGES: AtomicI64 = AtomicI64::new(0);

fn on_wal_commit(_: &rusqlite::hooks::Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_PAGES.store(i64::from(pages), Ordering::Relaxed);
    Ok(())
}

/// How the writer batches: `max_batch` jobs per transaction (1 makes it the naive
/// one-transaction-per-write mode the storage benchmark compares against), and the
/// firehose live buffer (see [`Writer::start`]).
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub max_batch: usize,
    pub live_buffer: usize,
    /// Extra time each commit's flush takes, on top of the real fsync: zero in the
    /// server; `atbox bench storage --sync-latency-ms` sets it to emulate a device
    /// slower to sync than the one benchmarked on (an SD card: milliseconds).
    pub sync_latency: std::time::Duration,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: MAX_BATCH,
            live_buffer: 4096,
            sync_latency: std::time::Duration::ZERO,
        }
    }
}

/// A sequenced event: its number and its complete WebSocket frame. As published to
/// live subscribers, a frame larger than [`LIVE_FRAME_MAX`] is left out (`frame` is
/// empty): the broadcast buffer keeps events for the slowest subscriber, and with big
/// commits that was up to `firehose_buffer_events` times their size in memory. Such an
/// event is read from the log, where it already is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEvent {
    pub seq: i64,
    pub frame: Vec<u8>,
}

/// The largest frame published to live subscribers in memory (a post's is 2–5 KB).
pub const LIVE_FRAME_MAX: usize = 8 * 1024;

impl SeqEvent {
    /// Whether the frame was left out (read it from the log).
    pub fn in_log_only(&self) -> bool {
        self.frame.is_empty()
    }
}

/// What the writer has done since the process started (for `atbox status` and the
/// storage benchmark).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Jobs committed (or rolled back in their savepoint).
    pub jobs: AtomicU64,
    /// Transactions committed: each is one WAL fsync.
    pub commits: AtomicU64,
    /// Passive checkpoints run: each syncs the WAL and the database file.
    pub checkpoints: AtomicU64,
    /// When events were last published (unix seconds; 0 = not since start): the last
    /// durable change to any repo or account.
    pub last_event_at: AtomicI64,
}

impl WriterStats {
    /// fsyncs the writer caused: one per commit, two per checkpoint.
    pub fn fsyncs(&self) -> u64 {
        self.commits.load(Ordering::Relaxed) + 2 * self.checkpoints.load(Ordering::Relaxed)
    }
}

/// See [`Writer::intent`].
pub struct WriteIntent(Arc<AtomicUsize>);

impl Drop for WriteIntent {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a job adds to the repo log (blocks, references, events), applied with its
/// batch; and its events, published once the batch is durable.
pub struct Outbox {
    pub events: Vec<Arc<SeqEvent>>,
    pub changes: Vec<Change>,
    /// The seq the job's next event gets (see `storage::events::next_seq`).
    pub next_seq: i64,
    /// The log, for reading blocks (see `storage::log::LogBlocks`).
    pub log: Arc<RepoLog>,
}

/// What a job hands back after running: whether it succeeded (else its savepoint is
/// rolled back), what to do once the transaction's fate is known, and its events.
type Deliver = Box<dyn FnOnce(Result<(), StorageError>) + Send>;
type Job = Box<dyn FnOnce(&Connection, Outbox) -> (bool, Deliver, Outbox) + Send>;

enum Command {
    Write(Job),
    /// Checkpoint now (tests, benchmarks, shutdown); answers when done.
    Checkpoint(oneshot::Sender<()>),
    /// Compact the repo log (see `RepoLog::compact`); answers with the bytes reclaimed.
    Compact(i64, oneshot::Sender<Result<u64, StorageError>>),
    /// Answers at once: the thread is alive and taking commands (the watchdog asks).
    Ping(oneshot::Sender<()>),
}

/// A handle for sending jobs to the writer thread.
#[derive(Clone)]
pub struct Writer {
    /// Requests that said they will write (see [`Writer::intent`]) and have not yet.
    in_flight: Arc<AtomicUsize>,
    commands: mpsc::Sender<Command>,
    published: broadcast::Sender<Arc<SeqEvent>>,
    pub stats: Arc<WriterStats>,
    pub log: Arc<RepoLog>,
}

impl Writer {
    /// Starts the writer thread on `conn`. `options.live_buffer` events are kept for
    /// firehose subscribers that are behind; one further behind is cut off.
    pub fn start(
        conn: Connection,
        log: Arc<RepoLog>,
        options: WriterOptions,
    ) -> Result<Writer, StorageError> {
        // Checkpoints are ours (below), not SQLite's; this pragma also resets the WAL
        // hook, so it comes first.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.wal_hook(Some(on_wal_commit));
        let (tx, rx) = mpsc::channel::<Command>(1024);
        let (published, _) = broadcast::channel(options.live_buffer.max(1));
        let stats = Arc::new(WriterStats::default());
        let in_flight = Arc::new(AtomicUsize::new(0));
        let thread = WriterThread {
            in_flight: in_flight.clone(),
            publisher: published.clone(),
            stats: stats.clone(),
            log: log.clone(),
            max_batch: options.max_batch.max(1),
            sync_latency: options.sync_latency,
        };
        std::thread::Builder::new()
            .name("atbox-writer".into())
            .spawn(move || thread.run(conn, rx))
            .map_err(|e| StorageError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            in_flight,
            commands: tx,
            published,
            stats,
            log,
        })
    }

    /// Says that a write is being prepared (parsed, validated) and will be sent soon;
    /// drop the intent once it is sent (or abandoned). While intents are open the
    /// writer holds a batch open a little (at most [`GATHER_WAIT`]) so concurrent
    /// writes share one commit and one fsync.
    pub fn intent(&self) -> WriteIntent {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        WriteIntent(self.in_flight.clone())
    }

    /// Events as they are committed (for the firehose).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SeqEvent>> {
        self.published.subscribe()
    }

    /// How many firehose subscribers are following the live feed.
    pub fn subscriber_count(&self) -> usize {
        self.published.receiver_count()
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
        let job: Job = Box::new(move |conn, mut outbox| {
            let result = f(conn, &mut outbox);
            let ok = result.is_ok();
            let deliver: Deliver = Box::new(move |committed| {
                let _ = tx.send(committed.map_err(E::from).and(result));
            });
            (ok, deliver, outbox)
        });
        self.commands
            .send(Command::Write(job))
            .await
            .map_err(|_| E::from(StorageError::NotCommitted))?;
        rx.await.map_err(|_| E::from(StorageError::NotCommitted))?
    }

    /// Compacts the repo log: rows past the firehose window (`before_ms`) and rows
    /// mostly dead are rewritten, a bounded amount per call; once there is nothing left
    /// to compact, sparse rows are packed too (see `RepoLog::pack`). Returns bytes
    /// reclaimed.
    pub async fn compact(&self, before_ms: i64) -> Result<u64, StorageError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Compact(before_ms, tx))
            .await
            .map_err(|_| StorageError::NotCommitted)?;
        rx.await.map_err(|_| StorageError::NotCommitted)?
    }

    /// Whether the writer thread is alive and taking commands (within `timeout`).
    pub async fn alive(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        let asked =
            async { self.commands.send(Command::Ping(tx)).await.is_ok() && rx.await.is_ok() };
        tokio::time::timeout(timeout, asked).await.unwrap_or(false)
    }

    /// Copies the WAL into the database now.
    pub async fn checkpoint(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Checkpoint(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn checkpoint(conn: &Connection, stats: &WriterStats) {
    if WAL_PAGES.load(Ordering::Relaxed) == 0 {
        return;
    }
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    }) {
        Ok((_, log, done)) => {
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            if done >= log {
                WAL_PAGES.store(0, Ordering::Relaxed);
            }
        }
        Err(e) => tracing::warn!("checkpoint failed: {e}"),
    }
}

/// The writer thread's state.
struct WriterThread {
    in_flight: Arc<AtomicUsize>,
    publisher: broadcast::Sender<Arc<SeqEvent>>,
    stats: Arc<WriterStats>,
    log: Arc<RepoLog>,
    max_batch: usize,
    sync_latency: std::time::Duration,
}

/// How much of the log one compaction call reads (it runs between batches).
const COMPACT_BUDGET: u64 = 4 * 1024 * 1024;
/// Sparse rows of the repo log are packed (see `RepoLog::pack`) when the writer goes
/// idle after writes and at least this many are waiting (as long as it stays idle and
/// rows are left)...
const PACK_IDLE_ROWS: usize = 32;
/// ...and, while writes keep coming, every this many batches if at least
/// `PACK_BUSY_ROWS` are waiting, at most `PACK_BUSY_BUDGET` bytes of rows at a time
/// (a pause of a few milliseconds between two batches; sooner again while rows are
/// left over).
const PACK_EVERY_BATCHES: usize = 64;
const PACK_BUSY_ROWS: usize = 48;
const PACK_BUSY_BUDGET: u64 = 1024 * 1024;

impl WriterThread {
    fn run(self, mut conn: Connection, mut rx: mpsc::Receiver<Command>) {
        // The thread blocks on its own small runtime so that it can wait with a timeout
        // (for idle checkpoints) without spinning.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a timer runtime for the writer");
        let mut batch: Vec<Job> = Vec::with_capacity(self.max_batch);
        // How many writes the last batch had: the concurrency the writer expects.
        let mut expected = 1;
        // Batches committed since the repo log's sparse rows were last all packed.
        let mut since_pack = 0;
        loop {
            let first =
                rt.block_on(async { tokio::time::timeout(IDLE_CHECKPOINT, rx.recv()).await });
            let command = match first {
                Err(_) => {
                    // Idle: pack while nothing else is asked of the writer.
                    while since_pack > 0 && rx.is_empty() {
                        if !self.pack(&mut conn, PACK_IDLE_ROWS, COMPACT_BUDGET) {
                            since_pack = 0;
                        }
                    }
                    checkpoint(&conn, &self.stats); // idle
                    continue;
                }
                Ok(None) => {
                    checkpoint(&conn, &self.stats); // shutting down
                    return;
                }
                Ok(Some(c)) => c,
            };
            let mut asked: Vec<oneshot::Sender<()>> = Vec::new();
            let mut compactions = Vec::new();
            let mut next = Some(command);
            let gather_until = std::time::Instant::now() + GATHER_WAIT;
            while let Some(command) = next.take() {
                match command {
                    Command::Write(job) => batch.push(job),
                    Command::Checkpoint(done) => asked.push(done),
                    Command::Compact(before, done) => compactions.push((before, done)),
                    Command::Ping(answer) => {
                        let _ = answer.send(());
                    }
                }
                if batch.len() >= self.max_batch {
                    break;
                }
                next = rx.try_recv().ok();
                // Nothing queued, but more writes are on their way: requests being
                // prepared (intents), or the writers of the last batch, who resubmit
                // as soon as they hear back. Wait a moment for them to share this
                // commit. A lone writer (last batch of one, no intents) never waits.
                let coming = self.in_flight.load(Ordering::Relaxed) > 0
                    || (!batch.is_empty() && batch.len() < expected);
                if next.is_none() && coming {
                    if let Some(left) =
                        gather_until.checked_duration_since(std::time::Instant::now())
                    {
                        next = rt
                            .block_on(async { tokio::time::timeout(left, rx.recv()).await })
                            .ok()
                            .flatten();
                    }
                }
            }
            if !batch.is_empty() {
                expected = batch.len();
                self.commit_batch(&mut conn, &mut batch);
                since_pack += 1;
                if since_pack >= PACK_EVERY_BATCHES {
                    let more = self.pack(&mut conn, PACK_BUSY_ROWS, PACK_BUSY_BUDGET);
                    since_pack = if more { PACK_EVERY_BATCHES - 16 } else { 0 };
                }
            }
            for (before, done) in compactions {
                let result = self.log.compact(&mut conn, before, COMPACT_BUDGET);
                if result.is_ok() {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                }
                if matches!(result, Ok(0)) {
                    self.pack(&mut conn, PACK_IDLE_ROWS, COMPACT_BUDGET);
                }
                let _ = done.send(result);
            }
            if !asked.is_empty() || WAL_PAGES.load(Ordering::Relaxed) >= WAL_CHECKPOINT_PAGES {
                checkpoint(&conn, &self.stats);
            }
            for done in asked {
                let _ = done.send(());
            }
        }
    }

    /// Packs sparse rows of the repo log (at most `budget` bytes of them) when at least
    /// `min_rows` are waiting; whether more are left.
    fn pack(&self, conn: &mut Connection, min_rows: usize, budget: u64) -> bool {
        match self.log.pack(conn, min_rows, budget) {
            Ok((0, _)) => false,
            Ok((_, more)) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                more
            }
            Err(e) => {
                tracing::warn!("packing the repo log's live blocks failed: {e}");
                false
            }
        }
    }

    fn commit_batch(&self, conn: &mut Connection, batch: &mut Vec<Job>) {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping the jobs unblocks their callers with `NotCommitted`.
            tracing::error!("cannot begin a write transaction: {e}");
            batch.clear();
            return;
        }
        let Ran {
            delivers,
            mut events,
            changes,
        } = self.run_jobs(conn, batch);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let written = self.log.write_rows(conn, &changes, now_ms);
        let committed = match &written {
            Ok(_) => {
                let committed = conn.execute_batch("COMMIT").map_err(StorageError::from);
                // The emulated slow device holds the writer as a slow fsync would.
                if !self.sync_latency.is_zero() {
                    std::thread::sleep(self.sync_latency);
                }
                committed
            }
            Err(e) => {
                tracing::error!("cannot write the repo log: {e}");
                Err(e.clone())
            }
        };
        match (committed.is_ok(), written) {
            (true, Ok(written)) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.log.apply(changes, written);
            }
            _ => {
                let _ = conn.execute_batch("ROLLBACK");
                self.log.discard();
                events.clear();
            }
        }
        for deliver in delivers {
            deliver(committed.clone());
        }
        self.publish(events);
    }

    /// Runs each job of the batch in its own savepoint: a failing job rolls back alone.
    fn run_jobs(&self, conn: &Connection, batch: &mut Vec<Job>) -> Ran {
        let mut delivers: Vec<Deliver> = Vec::with_capacity(batch.len());
        let mut events: Vec<Arc<SeqEvent>> = Vec::new();
        let mut changes: Vec<Change> = Vec::new();
        let mut next_seq = self.log.next_seq();
        for job in batch.drain(..) {
            let outbox = Outbox {
                events: Vec::new(),
                changes: Vec::new(),
                next_seq,
                log: self.log.clone(),
            };
            // A job that panics fails alone: its savepoint is rolled back and its caller
            // hears `NotCommitted`; the thread, and every other job, go on.
            let outcome = conn
                .execute_batch("SAVEPOINT job")
                .map_err(StorageError::from)
                .and_then(|()| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn, outbox)))
                        .map_err(|_| {
                            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                            StorageError::NotCommitted
                        })
                });
            self.stats.jobs.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok((true, deliver, outbox)) => {
                    let _ = conn.execute_batch("RELEASE job");
                    delivers.push(deliver);
                    self.log.stage(&outbox.changes);
                    next_seq = outbox.next_seq;
                    changes.extend(outbox.changes);
                    events.extend(outbox.events);
                }
                Ok((false, deliver, _)) => {
                    let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
                    // Its own error is already captured; the commit outcome does not change it.
                    delivers.push(deliver);
                }
                Err(e) => {
                    // The job was dropped unrun (or panicked): its caller sees
                    // `NotCommitted`.
                    tracing::error!("a write job failed: {e}");
                }
            }
        }
        Ran {
            delivers,
            events,
            changes,
        }
    }

    /// Hands a durable batch's events to firehose subscribers, in order.
    fn publish(&self, events: Vec<Arc<SeqEvent>>) {
        if !events.is_empty() {
            let now = super::unix_now();
            self.stats.last_event_at.store(now, Ordering::Relaxed);
        }
        for event in events {
            // No subscribers is fine: the event is in the database for later cursors.
            let _ = self.publisher.send(event);
        }
    }
}

/// What a batch's jobs left: their callers to answer, and (of those that succeeded)
/// their repo-log changes and events.
struct Ran {
    delivers: Vec<Deliver>,
    events: Vec<Arc<SeqEvent>>,
    changes: Vec<Change>,
}
