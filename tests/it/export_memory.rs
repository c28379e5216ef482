//! A large repo's export in flat memory (issue 17; security review M7): a 50,000-record repo exported four
//! times at once by a real `atbox serve` process, its resident memory sampled from
//! `/proc` while slow readers hold the exports open. The point is the process's memory,
//! so it is a process; the repo is written in-process beforehand (applyWrites-sized
//! batches through the real write path) and the server started on it.

use crate::common::server::spawn_atbox;
use atbox::auth::tokens::Scope;
use atbox::auth::Session;
use atbox::pds::records::{self, WriteAction, WriteRequest};
use serde_json::json;
use std::time::Duration;

const DID: &str = "did:web:export-memory.atbox.invalid";
const RECORDS: usize = 50_000;

/// A `/proc/<pid>/status` figure in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

/// Writes the repo: one account, `RECORDS` posts in batches of 200.
async fn seed(dir: &std::path::Path) {
    let state = crate::common::open_state(dir);
    crate::common::insert_account(&state, DID, "export-memory.test", String::new()).await;
    let session = Session::new(DID.into(), Scope::Access);
    for batch in 0..RECORDS / 200 {
        let writes = (0..200)
            .map(|i| WriteRequest {
                action: WriteAction::Create,
                collection: "app.bsky.feed.post".into(),
                rkey: None,
                record: Some(json!({
                    "$type": "app.bsky.feed.post",
                    "text": format!("post {} of a big repo, with a few words as posts have", batch * 200 + i),
                    "createdAt": "2024-01-01T00:00:00Z",
                })),
                swap_record: None,
            })
            .collect();
        records::write(&state, &session, DID, writes, None, None)
            .await
            .unwrap();
    }
    state.storage.writer.checkpoint().await;
}

/// Downloads the repo slowly (a relay on a slow link): the bytes it got.
async fn slow_download(url: String) -> usize {
    use futures_util::StreamExt;
    let mut body = reqwest::get(&url)
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .bytes_stream();
    let mut size = 0;
    while let Some(chunk) = body.next().await {
        size += chunk.unwrap().len();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    size
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_four_exports_of_a_50k_record_repo_at_once_stay_within_8_mib() {
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path()).await;
    let server = spawn_atbox("http://127.0.0.1:9", dir.path(), &[]);
    let pid = server.child.id();
    let url = format!("{}/xrpc/com.atproto.sync.getRepo?did={DID}", server.url);

    // One export first: the code and tables it touches once are not what is measured.
    let size = slow_download(url.clone()).await;
    assert!(size > 10_000_000, "a large repo: {size} bytes of CAR");
    let before = status_kib(pid, "VmRSS");
    let anon_before = status_kib(pid, "RssAnon");
    let most = std::sync::atomic::AtomicU64::new(before);
    let most_anon = std::sync::atomic::AtomicU64::new(anon_before);
    let four = futures_util::future::join_all((0..4).map(|_| slow_download(url.clone())));
    let sample = async {
        loop {
            most.fetch_max(
                status_kib(pid, "VmRSS"),
                std::sync::atomic::Ordering::Relaxed,
            );
            most_anon.fetch_max(
                status_kib(pid, "RssAnon"),
                std::sync::atomic::Ordering::Relaxed,
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let sizes = tokio::select! {
        sizes = four => sizes,
        _ = sample => unreachable!(),
    };
    assert_eq!(sizes, vec![size; 4], "every export whole");
    let growth_kib = most.into_inner().saturating_sub(before);
    let anon_kib = most_anon.into_inner().saturating_sub(anon_before);
    eprintln!("four exports of {size} bytes at once: server RSS {before} KiB + {growth_kib} KiB (anonymous + {anon_kib} KiB)");
    // Built in memory, each CAR alone would be `size` (14 MB); streamed, the server
    // holds a few chunks and a block list per export.
    assert!(
        growth_kib <= 8 * 1024,
        "four exports at once grew the server by {growth_kib} KiB (CAR {size} bytes)"
    );
}
