//! `atbox bench storage`: drives N record writes at concurrency C through the real write
//! path (lexicon check, repo core, writer, event log) on a real directory, and reports
//! throughput, latency, bytes written to storage and fsyncs per record — for the group
//! commit writer and, with `--naive`, one transaction per write.
//!
//! Bytes are the process's `write_bytes` from `/proc/self/io` (what reached the block
//! layer), with a final checkpoint included, since every WAL page is written again into
//! the database. fsyncs are counted by the writer (one per commit, two per checkpoint);
//! `strace -f -e trace=fsync,fdatasync -c atbox bench storage` confirms them.
//!
//! `atbox bench http` (in `http`) measures the whole server from outside instead;
//! `atbox bench backup` (in `backup`) what backups cost per write.

pub(crate) mod backup;
pub(crate) mod http;
pub(crate) mod reads;

use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::config::Config;
use crate::pds::records::{self, WriteAction, WriteRequest};
use crate::pds::AppState;
use crate::storage::accounts::{Account, AccountStatus};
use crate::storage::{Storage, WriterOptions};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one benchmark run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct StorageReport {
    pub mode: &'static str,
    pub records: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes_written: u64,
    pub bytes_per_record: f64,
    pub fsyncs: u64,
    pub fsyncs_per_record: f64,
    pub avg_batch: f64,
    pub cpu_ms_per_record: f64,
    /// Emulated extra flush latency per commit (0: this machine's disk as it is).
    pub sync_latency_ms: f64,
}

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Makes `records` writes from `concurrency` tasks, each task writing its share one
/// after another; `write(i)` makes write number `i` (from 1). Returns the latencies,
/// sorted, and the seconds it all took.
async fn drive<F, Fut>(
    records: usize,
    concurrency: usize,
    write: F,
) -> anyhow::Result<(Vec<Duration>, f64)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let write = Arc::new(write);
    let start = Instant::now();
    let per_task = records.div_ceil(concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..concurrency.max(1) {
        let write = write.clone();
        let n = per_task.min(records.saturating_sub(t * per_task));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n);
            for i in 0..n {
                let began = Instant::now();
                write(t * per_task + i + 1).await?;
                latencies.push(began.elapsed());
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(records);
    for t in tasks {
        latencies.extend(t.await??);
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies.sort();
    Ok((latencies, seconds))
}

/// Runs one benchmark in `dir` (which should be on the storage being measured).
pub(crate) async fn storage(
    dir: &Path,
    records: usize,
    concurrency: usize,
    naive: bool,
    sync_latency: Duration,
) -> anyhow::Result<StorageReport> {
    let mut config: Config = crate::config::development_default();
    config.data_dir = dir.to_owned();
    let options = WriterOptions {
        max_batch: if naive {
            1
        } else {
            crate::storage::writer::MAX_BATCH
        },
        sync_latency,
        ..Default::default()
    };
    let mut state = AppState::open(config)?;
    state.storage = Storage::open(dir, options)?;
    let state = Arc::new(state);
    let did = create_account(&state, None).await?;
    let session = Session::new(did.clone(), Scope::Access);
    state.storage.writer.checkpoint().await;

    let stats = state.storage.writer.stats.clone();
    let (jobs0, commits0, fsyncs0) = (
        stats.jobs.load(Ordering::Relaxed),
        stats.commits.load(Ordering::Relaxed),
        stats.fsyncs(),
    );
    let (bytes0, cpu0) = (crate::device::sysinfo::write_bytes(), cpu_time());
    let writer = state.clone();
    let (latencies, seconds) = drive(records, concurrency, move |i| {
        let (state, session) = (writer.clone(), session.clone());
        async move { write_post(&state, &session, i).await }
    })
    .await?;
    state.storage.writer.checkpoint().await;
    let cpu = cpu_time() - cpu0;
    let bytes = crate::device::sysinfo::write_bytes() - bytes0;
    let fsyncs = stats.fsyncs() - fsyncs0;
    let batches = (stats.commits.load(Ordering::Relaxed) - commits0).max(1);
    let jobs = stats.jobs.load(Ordering::Relaxed) - jobs0;
    let n = latencies.len().max(1) as f64;
    Ok(StorageReport {
        mode: if naive {
            "naive (one transaction per write)"
        } else {
            "group commit"
        },
        records: latencies.len(),
        concurrency,
        seconds,
        records_per_sec: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        bytes_written: bytes,
        bytes_per_record: bytes as f64 / n,
        fsyncs,
        fsyncs_per_record: fsyncs as f64 / n,
        avg_batch: jobs as f64 / batches as f64,
        cpu_ms_per_record: cpu.as_secs_f64() * 1000.0 / n,
        sync_latency_ms: sync_latency.as_secs_f64() * 1000.0,
    })
}

const BENCH_DID: &str = "did:web:bench.atbox.invalid";

/// An account made directly (no PLC directory needed: a did:web on a reserved name),
/// with its repo's first commit, so every measured write is an ordinary one.
async fn create_account(state: &AppState, password: Option<&str>) -> anyhow::Result<String> {
    let account = Account {
        did: BENCH_DID.into(),
        handle: "bench.test".into(),
        email: None,
        password_hash: password
            .map(crate::auth::password::hash)
            .unwrap_or_default(),
        signing_key: crate::crypto::Keypair::generate(crate::crypto::KeyType::K256)
            .private_bytes()
            .to_vec(),
        created_at: crate::syntax::Datetime::now().to_string(),
        status: AccountStatus::Active,
        email_confirmed: false,
    };
    state
        .storage
        .write(move |conn| crate::storage::accounts::insert_account(conn, &account))
        .await?;
    let session = Session::new(BENCH_DID.into(), Scope::Access);
    write_post(state, &session, 0).await?;
    Ok(BENCH_DID.into())
}

/// Seeds `dir` with the benchmark account (for a server started on it afterwards).
async fn seed_account(dir: &Path, password: Option<&str>) -> anyhow::Result<String> {
    let mut config: Config = crate::config::development_default();
    config.data_dir = dir.to_owned();
    let state = AppState::open(config)?;
    let did = create_account(&state, password).await?;
    state.storage.writer.checkpoint().await;
    Ok(did)
}

/// A post shaped like the ones the Bluesky app writes.
async fn write_post(state: &AppState, session: &Session, i: usize) -> anyhow::Result<()> {
    let record = serde_json::json!({
        "$type": "app.bsky.feed.post",
        "text": format!("Benchmark post number {i}: a sentence or two of text, as people write them, with a link https://example.com/{i}"),
        "createdAt": crate::syntax::Datetime::now().as_str(),
        "langs": ["en"],
    });
    let write = WriteRequest {
        action: WriteAction::Create,
        collection: "app.bsky.feed.post".into(),
        rkey: None,
        record: Some(record),
        swap_record: None,
    };
    records::write(state, session, &session.did, vec![write], None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
