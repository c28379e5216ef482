//! `atbox bench backup`: what backups cost a box. Writes `records` posts one per commit
//! (as people post), backs them up in full to a directory, then `rounds` times writes
//! `every` more posts and runs an incremental backup — and reports, per write, the CPU
//! and the bytes a backup costs, beside what the write itself cost. During the full
//! backup a writer keeps posting, so the write latency a backup causes is measured too.

use super::{cpu_time, create_account, percentile, write_post};
use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::backup::{self, BackupKey, Destination};
use crate::config::Config;
use crate::pds::AppState;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct BackupReport {
    pub records: usize,
    /// The first (full) run.
    pub full_seconds: f64,
    pub full_cpu_ms: f64,
    pub full_bytes_shipped: u64,
    /// Writes made while the full run went on, and their latency.
    pub writes_during_full: usize,
    pub write_p99_ms_during_full: f64,
    pub write_max_ms_during_full: f64,
    /// The incremental runs.
    pub rounds: usize,
    pub writes_per_round: usize,
    pub incremental_ms_per_run: f64,
    /// Per write backed up: CPU and bytes sent to the destination.
    pub backup_cpu_ms_per_write: f64,
    pub backup_bytes_per_write: f64,
    /// The same writes' own cost, for comparison.
    pub write_cpu_ms_per_write: f64,
    pub write_bytes_per_write: f64,
    /// Bytes an incremental run wrote besides what it sent (manifest included): the
    /// status file, file-system metadata and the fsyncs' journal (an upper bound for
    /// the card: here the destination shares its disk).
    pub other_bytes_per_run: f64,
}

pub(crate) async fn backup_bench(
    dir: &Path,
    records: usize,
    rounds: usize,
    every: usize,
) -> anyhow::Result<BackupReport> {
    let data = dir.join("data");
    let usb = dir.join("usb");
    std::fs::create_dir_all(&usb)?;
    let mut config: Config = crate::config::development_default();
    config.data_dir = data.clone();
    let state = Arc::new(AppState::open(config.clone())?);
    let did = create_account(&state, None).await?;
    let session = Session::new(did, Scope::Access);
    for i in 1..=records {
        write_post(&state, &session, i).await?;
    }
    state.storage.writer.checkpoint().await;
    let key = BackupKey::load_or_create(&data)?;
    let dest = Destination::Dir(usb.clone());

    // The full run, with a writer posting all along.
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (state, session, running) = (state.clone(), session.clone(), running.clone());
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = records;
            while running.load(Ordering::Relaxed) {
                i += 1;
                let began = Instant::now();
                write_post(&state, &session, i).await?;
                latencies.push(began.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok::<_, anyhow::Error>(latencies)
        })
    };
    let (cpu0, began) = (cpu_time(), Instant::now());
    let full = backup::run_now(&config, &dest, &key, backup::quiet()).await?;
    let (full_seconds, full_cpu) = (began.elapsed().as_secs_f64(), cpu_time() - cpu0);
    running.store(false, Ordering::Relaxed);
    let mut during = writer.await??;
    during.sort();
    backup::run_now(&config, &dest, &key, backup::quiet()).await?;

    // Steady state: `every` posts, then a run; the costs kept apart.
    let (mut write_cpu, mut write_bytes) = (Duration::ZERO, 0u64);
    let (mut backup_cpu, mut shipped, mut card, mut run_time) =
        (Duration::ZERO, 0u64, 0u64, Duration::ZERO);
    let mut n = records + during.len() + 1;
    for _ in 0..rounds {
        let (c0, b0) = (cpu_time(), crate::device::sysinfo::write_bytes());
        for _ in 0..every {
            n += 1;
            write_post(&state, &session, n).await?;
        }
        state.storage.writer.checkpoint().await;
        write_cpu += cpu_time() - c0;
        write_bytes += crate::device::sysinfo::write_bytes() - b0;
        let (c0, b0, t0) = (
            cpu_time(),
            crate::device::sysinfo::write_bytes(),
            Instant::now(),
        );
        let r = backup::run_now(&config, &dest, &key, backup::quiet()).await?;
        run_time += t0.elapsed();
        backup_cpu += cpu_time() - c0;
        let written = crate::device::sysinfo::write_bytes() - b0;
        shipped += r.bytes_shipped;
        card += written.saturating_sub(r.bytes_shipped);
    }
    let writes = (rounds * every).max(1) as f64;
    let runs = rounds.max(1) as f64;
    Ok(BackupReport {
        records,
        full_seconds,
        full_cpu_ms: full_cpu.as_secs_f64() * 1000.0,
        full_bytes_shipped: full.bytes_shipped,
        writes_during_full: during.len(),
        write_p99_ms_during_full: percentile(&during, 0.99),
        write_max_ms_during_full: during.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        rounds,
        writes_per_round: every,
        incremental_ms_per_run: run_time.as_secs_f64() * 1000.0 / runs,
        backup_cpu_ms_per_write: backup_cpu.as_secs_f64() * 1000.0 / writes,
        backup_bytes_per_write: shipped as f64 / writes,
        write_cpu_ms_per_write: write_cpu.as_secs_f64() * 1000.0 / writes,
        write_bytes_per_write: write_bytes as f64 / writes,
        other_bytes_per_run: card as f64 / runs,
    })
}
