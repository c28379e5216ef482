//! `atbox bench http`: the whole server measured from outside, as a client sees it.
//! It seeds a fresh data directory with one account, starts `atbox serve` (this very
//! binary, as a child process) on 127.0.0.1, logs in over HTTP and creates N posts with
//! `com.atproto.repo.createRecord` at concurrency C. Reported: records/s, p50/p99
//! latency, the server process's CPU time per write (`/proc/<pid>/stat`, so the
//! client's own work is not counted) and its resident memory idle and at its peak
//! (`/proc/<pid>/status`), how long it took to start; then getRepo exports and the reads
//! of `reads`. Every acknowledged write is durable (see `storage`).

use super::{drive, percentile, seed_account};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one whole-server run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct HttpReport {
    pub records: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_ms_per_record: f64,
    pub idle_rss_kib: u64,
    /// The most the server held while the posts were written (sampled every 2 ms).
    pub peak_rss_kib: u64,
    /// From starting `atbox serve` to its first answer (describeServer).
    pub startup_ms: f64,
    /// `com.atproto.sync.getRepo` of the repo just written (with `--exports`).
    pub export: Option<ExportReport>,
    /// getRecord, listRecords and describeRepo of the posts written.
    pub reads: super::reads::ReadReport,
    /// The server's resident memory at its peak over the whole run (`VmHWM`: the
    /// sign-in's Argon2id, writes, exports and reads).
    pub run_peak_rss_kib: u64,
}

/// Exports of the benchmark's repo, as a relay resyncing would ask for them.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ExportReport {
    pub exports: usize,
    pub car_bytes: usize,
    /// The first export after the writes (the rows just written, cold in the server).
    pub first_ms: f64,
    /// The median of the rest (warm).
    pub p50_ms: f64,
    pub server_cpu_ms_per_export: f64,
    /// The server's resident memory growth while four exports run at once.
    pub four_at_once_rss_growth_kib: u64,
}

/// Downloads the repo's CAR (streamed, counted, not kept); its size.
async fn download(client: &reqwest::Client, url: &str) -> anyhow::Result<usize> {
    use futures_util::StreamExt;
    let mut body = client
        .get(url)
        .send()
        .await?
        .error_for_status()?
        .bytes_stream();
    let mut size = 0;
    while let Some(chunk) = body.next().await {
        size += chunk?.len();
    }
    Ok(size)
}

/// `exports` getRepo calls one after another, then four at once while the server's
/// memory is sampled.
async fn exports(
    client: &reqwest::Client,
    base: &str,
    did: &str,
    pid: u32,
    exports: usize,
) -> anyhow::Result<ExportReport> {
    let url = format!("{base}/xrpc/com.atproto.sync.getRepo?did={did}");
    let cpu0 = cpu_of(pid)?;
    let mut times = Vec::with_capacity(exports);
    let mut car_bytes = 0;
    for _ in 0..exports {
        let started = Instant::now();
        car_bytes = download(client, &url).await?;
        times.push(started.elapsed());
    }
    let cpu = cpu_of(pid)? - cpu0;
    let first_ms = times.first().map_or(0.0, |t| t.as_secs_f64() * 1000.0);
    if times.len() > 1 {
        times.remove(0);
    }
    times.sort();
    let before = status_kib(pid, "VmRSS");
    let four = futures_util::future::try_join_all((0..4).map(|_| download(client, &url)));
    let (done, most) = with_peak_rss(pid, four).await;
    done?;
    Ok(ExportReport {
        exports,
        car_bytes,
        first_ms,
        p50_ms: percentile(&times, 0.50),
        server_cpu_ms_per_export: cpu.as_secs_f64() * 1000.0 / exports.max(1) as f64,
        four_at_once_rss_growth_kib: most.saturating_sub(before),
    })
}

/// Runs `work` while sampling the server's resident memory every 2 ms: its result and
/// the most the server held meanwhile, in KiB.
async fn with_peak_rss<T>(pid: u32, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let most = std::sync::atomic::AtomicU64::new(status_kib(pid, "VmRSS"));
    let sample = async {
        loop {
            most.fetch_max(
                status_kib(pid, "VmRSS"),
                std::sync::atomic::Ordering::Relaxed,
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let out = tokio::select! {
        out = work => out,
        never = sample => never,
    };
    (out, most.into_inner().max(status_kib(pid, "VmRSS")))
}

/// The child's CPU time (user + system) so far.
pub(crate) fn cpu_of(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / per_sec))
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim_start_matches(':')
                    .trim()
                    .trim_end_matches(" kB")
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

/// Stops the server when the benchmark ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Seeds one account in `dir`, starts `atbox serve` on it (this binary, on a free
/// loopback port), waits until it answers and logs in: the server, a client, the base
/// URL, the account's DID, an access token and how long the server took to answer.
async fn start_server(
    dir: &Path,
) -> anyhow::Result<(Server, reqwest::Client, String, String, String, f64)> {
    let password = "bench-password-1";
    let did = seed_account(dir, Some(password)).await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    let child = Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("ATBOX_DATA_DIR", dir)
        // The benchmark is one client writing as fast as it can: no rate limit.
        .env("ATBOX_RATE_LIMIT_BYPASS", "127.0.0.1")
        .env("ATBOX_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATBOX_PUBLIC_URL", &base)
        .env("ATBOX_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()?;
    let server = Server(child);
    loop {
        let up = client
            .get(format!("{base}/xrpc/com.atproto.server.describeServer"))
            .send()
            .await;
        if up.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let startup_ms = started.elapsed().as_secs_f64() * 1000.0;
    let session: serde_json::Value = client
        .post(format!("{base}/xrpc/com.atproto.server.createSession"))
        .json(&serde_json::json!({"identifier": did, "password": password}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["accessJwt"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no access token: {session}"))?
        .to_owned();
    Ok((server, client, base, did, token, startup_ms))
}

/// Runs one whole-server benchmark with its data in `dir`.
pub(crate) async fn http(
    dir: &Path,
    records: usize,
    concurrency: usize,
    export_runs: usize,
) -> anyhow::Result<HttpReport> {
    let (server, client, base, did, token, startup_ms) = start_server(dir).await?;
    let pid = server.0.id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = status_kib(pid, "VmRSS");

    let cpu0 = cpu_of(pid)?;
    let rkeys = Arc::new(std::sync::Mutex::new(Vec::with_capacity(records)));
    let shared = Arc::new((
        client.clone(),
        base.clone(),
        token,
        did.clone(),
        rkeys.clone(),
    ));
    let writes = drive(records, concurrency, move |i| {
        let shared = shared.clone();
        async move {
            let (client, base, token, did, rkeys) = &*shared;
            let body = serde_json::json!({
                "repo": did,
                "collection": "app.bsky.feed.post",
                "record": {
                    "$type": "app.bsky.feed.post",
                    "text": format!("HTTP benchmark post {i}: a sentence or two of text, as people write them"),
                    "createdAt": crate::syntax::Datetime::now().as_str(),
                    "langs": ["en"],
                },
            });
            let made = client
                .post(format!("{base}/xrpc/com.atproto.repo.createRecord"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await?
                .error_for_status()?;
            let made: serde_json::Value = made.json().await?;
            let rkey = made["uri"].as_str().and_then(|u| u.rsplit('/').next());
            let rkey = rkey.ok_or_else(|| anyhow::anyhow!("createRecord answered {made}"))?;
            rkeys.lock().expect("not poisoned").push(rkey.to_owned());
            Ok(())
        }
    });
    let (written, peak_rss_kib) = with_peak_rss(pid, writes).await;
    let (latencies, seconds) = written?;
    let cpu = cpu_of(pid)? - cpu0;
    let export = if export_runs > 0 {
        Some(exports(&client, &base, &did, pid, export_runs).await?)
    } else {
        None
    };
    let rkeys = std::mem::take(&mut *rkeys.lock().expect("not poisoned"));
    let reads = super::reads::reads(&client, &base, &did, pid, &rkeys).await?;
    let run_peak_rss_kib = status_kib(pid, "VmHWM");
    drop(server);
    let n = latencies.len().max(1) as f64;
    Ok(HttpReport {
        records: latencies.len(),
        concurrency,
        seconds,
        records_per_sec: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        server_cpu_ms_per_record: cpu.as_secs_f64() * 1000.0 / n,
        idle_rss_kib,
        peak_rss_kib,
        startup_ms,
        export,
        reads,
        run_peak_rss_kib,
    })
}
