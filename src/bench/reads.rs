//! `atbox bench http`'s read phase: the calls apps make most, one after another against
//! the repo the write phase just filled — `com.atproto.repo.getRecord` of every post,
//! `listRecords` pages walked through the collection, `describeRepo` — with the server
//! process's CPU time per call (its `/proc/<pid>/stat`, clock ticks: each kind makes
//! enough calls for a few hundred ticks' worth) and the latency a client sees.

use super::percentile;
use std::time::{Duration, Instant};

/// One kind of read, measured.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReadFigure {
    pub calls: usize,
    pub p50_ms: f64,
    pub server_cpu_ms_per_call: f64,
}

/// The read phase's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct ReadReport {
    pub get_record: ReadFigure,
    pub list_records: ReadFigure,
    pub describe_repo: ReadFigure,
}

/// `listRecords` pages of this many records.
const PAGE: usize = 50;

/// Reads `rkeys` (the posts written) back with getRecord (each twice, in a scattered
/// order), walks the collection with listRecords pages, and calls describeRepo.
pub(crate) async fn reads(
    client: &reqwest::Client,
    base: &str,
    did: &str,
    pid: u32,
    rkeys: &[String],
) -> anyhow::Result<ReadReport> {
    let post = "app.bsky.feed.post";
    // A fixed scattered order (a stride prime to the count), so reads do not just follow
    // the order the posts were written in.
    let n = rkeys.len().max(1);
    let stride = (1..n)
        .rev()
        .find(|s| gcd(*s, n) == 1 && *s < n / 2 + 1)
        .unwrap_or(1);
    let urls: Vec<String> = (0..2 * n)
        .map(|i| {
            let rkey = &rkeys[(i * stride) % n];
            format!(
                "{base}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={post}&rkey={rkey}"
            )
        })
        .collect();
    let get_record = measure(client, pid, urls).await?;

    // listRecords pages: the whole collection, walked again until enough calls were made.
    let mut urls = Vec::new();
    let pages = n.div_ceil(PAGE).max(1);
    for _ in 0..(400 / pages).max(1) {
        let mut cursor: Option<String> = None;
        for _ in 0..pages {
            let mut url = format!(
                "{base}/xrpc/com.atproto.repo.listRecords?repo={did}&collection={post}&limit={PAGE}"
            );
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page: serde_json::Value = client.get(&url).send().await?.json().await?;
            cursor = page["cursor"].as_str().map(str::to_owned);
            urls.push(url);
            if cursor.is_none() {
                break;
            }
        }
    }
    let list_records = measure(client, pid, urls).await?;

    let url = format!("{base}/xrpc/com.atproto.repo.describeRepo?repo={did}");
    let describe_repo = measure(client, pid, vec![url; 1000]).await?;
    Ok(ReadReport {
        get_record,
        list_records,
        describe_repo,
    })
}

/// Calls each URL in turn (answers read whole, checked for success).
async fn measure(
    client: &reqwest::Client,
    pid: u32,
    urls: Vec<String>,
) -> anyhow::Result<ReadFigure> {
    let mut times: Vec<Duration> = Vec::with_capacity(urls.len());
    let cpu0 = super::http::cpu_of(pid)?;
    for url in &urls {
        let started = Instant::now();
        let answer = client.get(url).send().await?.error_for_status()?;
        answer.bytes().await?;
        times.push(started.elapsed());
    }
    let cpu = super::http::cpu_of(pid)? - cpu0;
    times.sort();
    Ok(ReadFigure {
        calls: urls.len(),
        p50_ms: percentile(&times, 0.50),
        server_cpu_ms_per_call: cpu.as_secs_f64() * 1000.0 / urls.len().max(1) as f64,
    })
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
