//! The repo log (`storage::log`) through the real write path: reference counting keeps
//! exactly the live blocks, compaction reclaims dead ones and old events without losing
//! a live block, packing moves many small commits' records into a few rows, and a
//! restart rebuilds the same index from what is durable.

use atbox::auth::tokens::Scope;
use atbox::auth::Session;
use atbox::pds::records::{self, WriteAction, WriteRequest};
use atbox::pds::AppState;
use atbox::repo::car::read_car;
use atbox::repo::verify::verify_repo;
use serde_json::json;
use std::collections::BTreeMap;

const DID: &str = "did:web:log-test.atbox.invalid";

/// The `i`th record key (TIDs in order).
fn rkey(i: u64) -> String {
    atbox::syntax::Tid::from_parts(1_700_000_000_000_000 + i * 1000, 0)
        .as_str()
        .to_owned()
}

fn open(dir: &std::path::Path) -> AppState {
    crate::common::open_state(dir)
}

async fn write(state: &AppState, action: WriteAction, rkey: &str, text: Option<&str>) {
    let session = Session::new(DID.into(), Scope::Access);
    let record = text.map(
        |t| json!({"$type": "app.bsky.feed.post", "text": t, "createdAt": "2024-01-01T00:00:00Z"}),
    );
    let request = WriteRequest {
        action,
        collection: "app.bsky.feed.post".into(),
        rkey: Some(rkey.into()),
        record,
        swap_record: None,
    };
    records::write(state, &session, DID, vec![request], None, None)
        .await
        .unwrap();
}

/// Every record as the API lists it: rkey → text.
async fn listed(state: &AppState) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    loop {
        let page = records::list_records(state, DID, "app.bsky.feed.post", 100, cursor, false)
            .await
            .unwrap();
        for r in &page.records {
            let rkey = r.uri.rsplit('/').next().unwrap().to_owned();
            out.insert(rkey, r.value["text"].as_str().unwrap().to_owned());
        }
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// getRepo (of what changed after `since`, when given), read whole.
async fn export(state: &AppState, since: Option<&str>) -> Vec<u8> {
    use futures_util::TryStreamExt;
    let stream = atbox::pds::sync::get_repo(state, DID, since.map(str::to_owned))
        .await
        .unwrap();
    stream
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .unwrap()
}

/// The exported repo verifies, and holds exactly the listed records.
async fn check_export(state: &AppState, expected: &BTreeMap<String, String>) -> usize {
    let car = export(state, None).await;
    let (roots, blocks) = read_car(car.as_slice()).unwrap();
    let summary = verify_repo(&blocks, roots[0], None).unwrap();
    let keys: Vec<String> = summary
        .records
        .iter()
        .map(|(k, _)| k.trim_start_matches("app.bsky.feed.post/").to_owned())
        .collect();
    assert_eq!(keys, expected.keys().cloned().collect::<Vec<_>>());
    blocks.len()
}

/// The repo's head revision.
async fn head_rev(state: &AppState) -> String {
    state
        .storage
        .read(|conn| atbox::storage::repos::head(conn, DID))
        .await
        .unwrap()
        .unwrap()
        .rev
        .as_str()
        .to_owned()
}

/// `getRepo?since=` the 100th post's revision holds the records written after it and
/// none of those before (packing keeps each block's revision).
async fn check_since(state: &AppState, since: &str) {
    let car = export(state, Some(since)).await;
    let (_, blocks) = read_car(car.as_slice()).unwrap();
    // Oldest first: the first page is the 100 posts up to `since`, the next the rest.
    let page = records::list_records(state, DID, "app.bsky.feed.post", 100, None, true)
        .await
        .unwrap();
    let newer = records::list_records(
        state,
        DID,
        "app.bsky.feed.post",
        100,
        page.cursor.clone(),
        true,
    )
    .await
    .unwrap();
    for r in &page.records {
        let cid: atbox::data::Cid = r.cid.parse().unwrap();
        assert!(blocks.get(&cid).is_none(), "{} is older than since", r.uri);
    }
    for r in &newer.records {
        let cid: atbox::data::Cid = r.cid.parse().unwrap();
        assert!(blocks.get(&cid).is_some(), "{} is newer than since", r.uri);
    }
}

/// How many events the firehose can replay from the start.
async fn events(state: &AppState) -> Result<usize, atbox::storage::StorageError> {
    let log = state.storage.log.clone();
    state
        .storage
        .read(move |conn| atbox::storage::events::after(&log, conn, 0, 10_000).map(|e| e.len()))
        .await
}

/// Makes the test account (with no commit yet).
async fn create_account(state: &AppState) {
    crate::common::insert_account(state, DID, "log.test", String::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_restart_keep_every_live_block_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    create_account(&state).await;
    // A first commit (as account creation makes).
    write(&state, WriteAction::Create, &rkey(0), Some("first")).await;

    // Posts, some edited twice, some deleted, two with identical content (one block,
    // two keys: deleting one must keep the block for the other).
    let mut expected = BTreeMap::new();
    expected.insert(rkey(0), "first".to_owned());
    for i in 1..=300 {
        let rkey = rkey(i);
        let text = if i % 100 == 0 {
            "same".to_owned()
        } else {
            format!("post {i}")
        };
        write(&state, WriteAction::Create, &rkey, Some(&text)).await;
        expected.insert(rkey, text);
    }
    for i in (5..=300).step_by(7) {
        let rkey = rkey(i);
        for round in 0..2 {
            let text = format!("post {i} edit {round}");
            write(&state, WriteAction::Update, &rkey, Some(&text)).await;
            expected.insert(rkey.clone(), text);
        }
    }
    for i in (3..=300).step_by(11).chain([100]) {
        let rkey = rkey(i);
        write(&state, WriteAction::Delete, &rkey, None).await;
        expected.remove(&rkey);
    }
    assert_eq!(listed(&state).await, expected);
    let live_blocks = check_export(&state, &expected).await;
    assert_eq!(
        state.storage.log.block_count(DID),
        live_blocks,
        "the index holds exactly the blocks reachable from the head"
    );
    let (bytes_before, live_before) = state.storage.log.sizes();
    assert!(
        live_before < bytes_before / 2,
        "edits and deletes left dead blocks"
    );
    let (_, newest) = state.storage.log.seq_bounds().unwrap();

    // Everything is past the window: compact until there is nothing left to do.
    let future = chrono::Utc::now().timestamp_millis() + 3_600_000;
    let mut reclaimed = 0;
    loop {
        match state.storage.writer.compact(future).await.unwrap() {
            0 => break,
            n => reclaimed += n,
        }
    }
    assert!(reclaimed > 0);
    let (bytes_after, live_after) = state.storage.log.sizes();
    assert_eq!(
        live_after, live_before,
        "no live block was lost or duplicated"
    );
    assert!(
        bytes_after < bytes_before / 2,
        "{bytes_after} vs {bytes_before}"
    );
    let (oldest, newest_after) = state.storage.log.seq_bounds().unwrap();
    assert_eq!(newest_after, newest);
    assert!(oldest > 1, "old events were dropped");
    assert_eq!(listed(&state).await, expected);
    assert_eq!(check_export(&state, &expected).await, live_blocks);

    // Writes go on after compaction, and the sequence continues.
    write(&state, WriteAction::Create, &rkey(1000), Some("after")).await;
    expected.insert(rkey(1000), "after".to_owned());
    assert_eq!(state.storage.log.seq_bounds().unwrap().1, newest + 1);

    // A restart rebuilds the same index from the rows.
    let blocks = state.storage.log.block_count(DID);
    let sizes = state.storage.log.sizes();
    state.storage.writer.checkpoint().await;
    drop(state);
    let state = open(dir.path());
    assert_eq!(state.storage.log.block_count(DID), blocks);
    assert_eq!(state.storage.log.sizes(), sizes);
    assert_eq!(listed(&state).await, expected);
    check_export(&state, &expected).await;
    write(
        &state,
        WriteAction::Create,
        &rkey(1001),
        Some("after restart"),
    )
    .await;
    assert_eq!(state.storage.log.seq_bounds().unwrap().1, newest + 2);
}

/// A repo built by many one-record commits is packed: its records come out of the
/// commits' rows (mostly spent MST nodes) into a few dense rows, so reading the repo
/// no longer inflates a row per commit — while every event stays for the firehose, the
/// export still verifies, and a restart rebuilds the same index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_commits_are_packed_into_a_few_rows_and_keep_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    create_account(&state).await;
    let mut expected = BTreeMap::new();
    let mut halfway = String::new();
    for i in 0..200 {
        write(
            &state,
            WriteAction::Create,
            &rkey(i),
            Some(&format!("post {i}")),
        )
        .await;
        expected.insert(rkey(i), format!("post {i}"));
        if i == 99 {
            halfway = head_rev(&state).await;
        }
    }
    let log = &state.storage.log;
    let events_before = events(&state).await.unwrap();
    assert!(events_before >= 200, "every commit's event is kept");
    // The writer packs as writes go on (every 64 batches, the newest 16 rows spared);
    // the on-demand compaction (nothing is past the window) packs what is left once 32
    // rows wait, so no row holds just a record or two.
    let yesterday = chrono::Utc::now().timestamp_millis() - 86_400_000;
    assert_eq!(state.storage.writer.compact(yesterday).await.unwrap(), 0);
    let packed = log.rows_holding(DID);
    assert!(
        packed <= 16 + 32 + 8,
        "{packed} rows hold the repo of 200 one-record commits"
    );
    let after = log.sizes();
    assert_eq!(events(&state).await.unwrap(), events_before);
    assert_eq!(listed(&state).await, expected);
    let blocks = check_export(&state, &expected).await;
    assert_eq!(log.block_count(DID), blocks);

    check_since(&state, &halfway).await;

    // A restart finds the copies (the newer rows) and the same accounting.
    state.storage.writer.checkpoint().await;
    drop(state);
    let state = open(dir.path());
    assert_eq!(state.storage.log.rows_holding(DID), packed);
    assert_eq!(state.storage.log.sizes(), after);
    assert_eq!(events(&state).await.unwrap(), events_before);
    check_export(&state, &expected).await;
    check_since(&state, &halfway).await;

    // When the rows leave the window, compaction deletes them with nothing to move.
    let tomorrow = chrono::Utc::now().timestamp_millis() + 86_400_000;
    while state.storage.writer.compact(tomorrow).await.unwrap() > 0 {}
    assert_eq!(state.storage.log.sizes().1, after.1);
    assert!(
        state.storage.log.sizes().0 < after.0 / 4,
        "the old rows went"
    );
    assert_eq!(listed(&state).await, expected);
    check_export(&state, &expected).await;
}

/// Security review L7: a write job that panics fails alone — its caller hears the
/// write was not committed, the writer thread lives on (the watchdog's ping answers),
/// and the next write is stored.
#[tokio::test]
async fn l7_a_panicking_write_job_fails_alone_and_the_writer_lives() {
    let dir = tempfile::tempdir().unwrap();
    let state = open(dir.path());
    let panicked: Result<(), atbox::storage::StorageError> = state
        .storage
        .write(|_conn| -> Result<(), atbox::storage::StorageError> { panic!("a bug in one job") })
        .await;
    assert!(
        matches!(panicked, Err(atbox::storage::StorageError::NotCommitted)),
        "{panicked:?}"
    );
    assert!(
        state
            .storage
            .writer
            .alive(std::time::Duration::from_secs(2))
            .await
    );
    let stored: Result<i64, atbox::storage::StorageError> = state
        .storage
        .write(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS l7 (v INTEGER); INSERT INTO l7 VALUES (7)",
            )?;
            Ok(conn.query_row("SELECT v FROM l7", [], |r| r.get(0))?)
        })
        .await;
    assert_eq!(stored.unwrap(), 7);
}
