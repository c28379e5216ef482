//! `atbox bench`: the storage write path and the whole server, measured (see
//! [`crate::bench`]); this module parses the options and prints the reports.

use super::runtime;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
    /// Record writes through the real write path: throughput, latency, bytes written
    /// and fsyncs per record.
    Storage {
        #[arg(long, default_value_t = 2000)]
        records: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// One transaction (and fsync) per write, for comparison.
        #[arg(long)]
        naive: bool,
        /// Emulate a device slower to sync: every commit's flush takes this much longer
        /// than this disk's fsync (an SD card's is milliseconds).
        #[arg(long, default_value_t = 0.0)]
        sync_latency_ms: f64,
        /// Where to write (on the storage to measure; default: a fresh directory
        /// under the current one, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The whole server over HTTP: starts `atbox serve` on 127.0.0.1 with one account
    /// and creates posts at concurrency C; records/s, latency, server CPU per write,
    /// server memory idle and at peak, startup; then exports (with --exports) and reads
    /// (getRecord, listRecords, describeRepo) with their server CPU per call.
    Http {
        #[arg(long, default_value_t = 2000)]
        records: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Then export the repo (getRepo) this many times, and four at once.
        #[arg(long, default_value_t = 0)]
        exports: usize,
        /// Where the server keeps its data (default: a fresh directory under the
        /// current one, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// What backups cost: a full backup of RECORDS posts (written one per commit) with
    /// a writer posting meanwhile, then ROUNDS incremental runs of EVERY new posts
    /// each; CPU and bytes per write backed up, beside the write's own.
    Backup {
        #[arg(long, default_value_t = 2000)]
        records: usize,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        #[arg(long, default_value_t = 50)]
        every: usize,
        /// Where the data directory and the destination go (default: a fresh
        /// directory under the current one, removed afterwards).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    let runtime = runtime()?;
    match cmd {
        BenchCommand::Storage {
            records,
            concurrency,
            naive,
            sync_latency_ms,
            dir,
        } => {
            let (path, _scratch) = bench_dir(dir)?;
            let sync_latency =
                std::time::Duration::from_secs_f64(sync_latency_ms.max(0.0) / 1000.0);
            let r = runtime.block_on(crate::bench::storage(
                &path,
                records,
                concurrency,
                naive,
                sync_latency,
            ))?;
            print_storage(&r);
            println!("{}", serde_json::to_string(&r)?);
        }
        BenchCommand::Http {
            records,
            concurrency,
            exports,
            dir,
        } => {
            let (path, _scratch) = bench_dir(dir)?;
            let r = runtime.block_on(crate::bench::http::http(
                &path,
                records,
                concurrency,
                exports,
            ))?;
            print_http(&r);
            println!("{}", serde_json::to_string(&r)?);
        }
        BenchCommand::Backup {
            records,
            rounds,
            every,
            dir,
        } => {
            let (path, _scratch) = bench_dir(dir)?;
            let r = runtime.block_on(crate::bench::backup::backup_bench(
                &path, records, rounds, every,
            ))?;
            print_backup(&r);
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The storage benchmark's report, for people.
fn print_storage(r: &crate::bench::StorageReport) {
    println!("mode                 {}", r.mode);
    if r.sync_latency_ms > 0.0 {
        println!(
            "emulated device     +{:.1} ms per flush on top of this disk's fsync",
            r.sync_latency_ms
        );
    }
    println!(
        "records             {} at concurrency {}",
        r.records, r.concurrency
    );
    print_speed(r.records_per_sec, r.seconds, r.p50_ms, r.p99_ms);
    println!(
        "written to storage  {:.0} bytes/record ({} bytes)",
        r.bytes_per_record, r.bytes_written
    );
    println!(
        "fsyncs              {:.3} per record ({})",
        r.fsyncs_per_record, r.fsyncs
    );
    println!(
        "average batch       {:.2} writes per transaction",
        r.avg_batch
    );
    println!(
        "cpu                 {:.3} ms per record",
        r.cpu_ms_per_record
    );
}

/// The whole-server benchmark's report, for people.
fn print_http(r: &crate::bench::http::HttpReport) {
    println!(
        "whole server over HTTP (createRecord), {} records at concurrency {}",
        r.records, r.concurrency
    );
    print_speed(r.records_per_sec, r.seconds, r.p50_ms, r.p99_ms);
    println!(
        "server cpu          {:.3} ms per record",
        r.server_cpu_ms_per_record
    );
    println!(
        "server memory       {} KiB idle, {} KiB peak while writing, {} KiB peak in all",
        r.idle_rss_kib, r.peak_rss_kib, r.run_peak_rss_kib
    );
    println!(
        "startup             {:.1} ms to the first answer",
        r.startup_ms
    );
    if let Some(e) = &r.export {
        println!(
            "getRepo             {} bytes: first {:.2} ms, then p50 {:.2} ms; server cpu {:.2} ms per export ({} runs)",
            e.car_bytes, e.first_ms, e.p50_ms, e.server_cpu_ms_per_export, e.exports
        );
        println!(
            "four at once        server memory +{} KiB",
            e.four_at_once_rss_growth_kib
        );
    }
    for (name, f) in [
        ("getRecord", &r.reads.get_record),
        ("listRecords", &r.reads.list_records),
        ("describeRepo", &r.reads.describe_repo),
    ] {
        println!(
            "{name:<20}{} calls: p50 {:.3} ms, server cpu {:.3} ms per call",
            f.calls, f.p50_ms, f.server_cpu_ms_per_call
        );
    }
}

/// The backup benchmark's report, for people.
fn print_backup(r: &crate::bench::backup::BackupReport) {
    println!(
        "full backup         {} posts: {:.2} s, cpu {:.0} ms, {} bytes sent",
        r.records, r.full_seconds, r.full_cpu_ms, r.full_bytes_shipped
    );
    println!(
        "writes meanwhile    {}: p99 {:.2} ms, max {:.2} ms",
        r.writes_during_full, r.write_p99_ms_during_full, r.write_max_ms_during_full
    );
    println!(
        "incremental         {} runs of {} new posts: {:.1} ms per run",
        r.rounds, r.writes_per_round, r.incremental_ms_per_run
    );
    println!(
        "per write backed up cpu {:.3} ms, {:.0} bytes sent (the write itself: cpu {:.3} ms, {:.0} bytes written)",
        r.backup_cpu_ms_per_write, r.backup_bytes_per_write, r.write_cpu_ms_per_write, r.write_bytes_per_write
    );
    println!(
        "other bytes per run {:.0} (status file, file-system metadata and journal)",
        r.other_bytes_per_run
    );
}

/// Where a benchmark writes: `dir`, or a fresh directory under the current one that is
/// removed when the returned guard drops.
fn bench_dir(dir: Option<PathBuf>) -> anyhow::Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(dir) => (dir, None),
        None => {
            let scratch = tempfile::Builder::new()
                .prefix("atbox-bench-")
                .tempdir_in(".")?;
            (scratch.path().to_owned(), Some(scratch))
        }
    })
}

/// The throughput and latency lines both benchmarks print.
fn print_speed(records_per_sec: f64, seconds: f64, p50_ms: f64, p99_ms: f64) {
    println!("throughput          {records_per_sec:.0} records/s ({seconds:.2} s)");
    println!("latency             p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms");
}
