//! Crash safety: the server is SIGKILLed at random moments under concurrent write load,
//! 20 times, on the same data directory. After each restart every acknowledged write is
//! there, nothing unacknowledged is half there (the record index and the signed repo
//! agree exactly), the database passes `PRAGMA integrity_check`, the repo exports and
//! verifies against the DID document's key, and the firehose sequence has no gaps.
//! (SIGKILL loses the process, not the page cache; ARCHITECTURE.md says why the fsync
//! chain also covers a power cut.)

use crate::common;

use common::api::Api;
use common::server::{spawn_atbox, start_plc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn all_records(api: &Api, did: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (s, v) = api
            .get(
                "com.atproto.repo.listRecords",
                &format!("repo={did}&collection=app.bsky.feed.post&limit=100{cursor}"),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let records = v["records"].as_array().unwrap();
        out.extend(
            records
                .iter()
                .map(|r| r["uri"].as_str().unwrap().to_owned()),
        );
        match v["cursor"].as_str() {
            Some(c) if !records.is_empty() => cursor = format!("&cursor={c}"),
            _ => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_and_nothing_is_half_written() {
    let plc = start_plc();
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut account: Option<(String, String)> = None;

    for round in 0..20 {
        let mut server = spawn_atbox(&plc.url, dir.path(), &[]);
        let api = Api::at(&server.url);
        let (did, password) = match &account {
            Some(a) => a.clone(),
            None => {
                let (did, _, _) = api.account("crashy.test").await;
                account = Some((did.clone(), "correct horse".into()));
                (did, "correct horse".into())
            }
        };

        // Everything acknowledged so far is here, and the index matches the signed repo.
        let present = all_records(&api, &did).await;
        let missing: Vec<_> = acked
            .lock()
            .unwrap()
            .difference(&present)
            .cloned()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged writes lost: {missing:?}"
        );
        let summary = api.export_verified(&did, &plc.url).await;
        let in_repo: BTreeSet<String> = summary
            .records
            .iter()
            .filter(|(k, _)| k.starts_with("app.bsky.feed.post/"))
            .map(|(k, _)| format!("at://{did}/{k}"))
            .collect();
        assert_eq!(
            in_repo, present,
            "round {round}: the record index and the repo disagree"
        );
        {
            let conn = rusqlite::Connection::open_with_flags(
                dir.path().join("atbox.sqlite"),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let check: String = conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .unwrap();
            assert_eq!(check, "ok", "round {round}");
            // The log rebuilds its index from what is durable, and every event in
            // it replays in order without a gap.
            let log = atbox::storage::log::RepoLog::load(&conn).unwrap();
            let events = atbox::storage::events::after(&log, &conn, 0, usize::MAX).unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            let (min, max) = log.seq_bounds().unwrap();
            assert_eq!(seqs.first(), Some(&min), "round {round}");
            assert_eq!(seqs.last(), Some(&max), "round {round}");
            assert!(
                seqs.windows(2).all(|w| w[1] == w[0] + 1),
                "round {round}: gaps in the firehose sequence: {seqs:?}"
            );
        }

        // Load: eight writers, then a kill at a random moment.
        let (s, v) = api
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": "crashy.test", "password": password}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let token = v["accessJwt"].as_str().unwrap().to_owned();
        let mut writers = Vec::new();
        for w in 0..8 {
            let (api, did, token, acked) = (
                Api::at(&server.url),
                did.clone(),
                token.clone(),
                acked.clone(),
            );
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let record = json!({"$type": "app.bsky.feed.post", "text": format!("round {round} writer {w} post {i}"), "createdAt": "2024-01-01T00:00:00Z"});
                    let res = api
                        .http
                        .post(format!("{}/xrpc/com.atproto.repo.createRecord", api.base))
                        .bearer_auth(&token)
                        .json(&json!({"repo": did, "collection": "app.bsky.feed.post", "record": record}))
                        .send()
                        .await;
                    let Ok(res) = res else { return };
                    if res.status() != 200 {
                        return;
                    }
                    let Ok(v) = res.json::<Value>().await else { return };
                    acked.lock().unwrap().insert(v["uri"].as_str().unwrap().to_owned());
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(50..500))).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        for w in writers {
            let _ = w.await;
        }
    }
    let total = acked.lock().unwrap().len();
    assert!(
        total > 100,
        "the load wrote too little to mean anything ({total} posts)"
    );
    println!("crash safety: 20 SIGKILLs, {total} acknowledged writes, all present");
}
