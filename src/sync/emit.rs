//! Sequencing events inside a write job: each function takes the job's connection and
//! outbox, numbers the event, stores its frame and queues it for the live feed — all in
//! the transaction of the change it describes.

use super::frames;
use crate::data::Cid;
use crate::repo::writes::CommitData;
use crate::storage::events;
use crate::storage::writer::Outbox;
use crate::storage::StorageError;
use crate::syntax::Datetime;
use rusqlite::Connection;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `#commit` (or `#sync` for a commit too big to carry) for a repo write.
pub fn commit(
    conn: &Connection,
    outbox: &mut Outbox,
    did: &str,
    commit: &CommitData,
) -> Result<(), StorageError> {
    let seq = events::next_seq(conn)?;
    let (kind, frame) = frames::commit_frame(seq, did, commit, Datetime::now().as_str());
    events::append(conn, outbox, seq, did, kind, frame, now_ms())
}

/// `#sync`: the repo was replaced (import) and consumers should resynchronise.
pub fn sync(
    conn: &Connection,
    outbox: &mut Outbox,
    did: &str,
    commit_cid: Cid,
    commit_block: &[u8],
    rev: &str,
) -> Result<(), StorageError> {
    let seq = events::next_seq(conn)?;
    let frame = frames::sync_frame(
        seq,
        did,
        commit_cid,
        commit_block,
        rev,
        Datetime::now().as_str(),
    );
    events::append(conn, outbox, seq, did, "sync", frame, now_ms())
}

/// `#identity`: handle or DID document changed.
pub fn identity(
    conn: &Connection,
    outbox: &mut Outbox,
    did: &str,
    handle: Option<&str>,
) -> Result<(), StorageError> {
    let seq = events::next_seq(conn)?;
    let frame = frames::identity_frame(seq, did, handle, Datetime::now().as_str());
    events::append(conn, outbox, seq, did, "identity", frame, now_ms())
}

/// `#account`: hosting status changed (`status` is absent when active).
pub fn account(
    conn: &Connection,
    outbox: &mut Outbox,
    did: &str,
    active: bool,
    status: Option<&str>,
) -> Result<(), StorageError> {
    let seq = events::next_seq(conn)?;
    let frame = frames::account_frame(seq, did, active, status, Datetime::now().as_str());
    events::append(conn, outbox, seq, did, "account", frame, now_ms())
}
