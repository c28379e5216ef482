//! Sequencing events inside a write job: each function numbers the event, queues its
//! frame in the job's outbox (stored with the job's batch) and for the live feed — all
//! in the transaction of the change it describes.

use super::frames::{self, BlocksFrame};
use crate::data::Cid;
use crate::repo::writes::CommitData;
use crate::storage::events::{self, Kind, NewEvent};
use crate::storage::writer::Outbox;
use crate::syntax::{Datetime, Tid};

fn rev_number(rev: &str) -> u64 {
    Tid::new(rev).map(|t| t.to_u64()).unwrap_or(0)
}

fn blocks_event(outbox: &mut Outbox, seq: i64, did: &str, rev: &str, frame: BlocksFrame) {
    events::append(
        outbox,
        NewEvent {
            seq,
            did,
            kind: Kind::from_name(frame.kind),
            frame: frame.bytes,
            car: frame.car,
            rev: rev_number(rev),
        },
    );
}

fn plain_event(outbox: &mut Outbox, seq: i64, did: &str, kind: Kind, frame: Vec<u8>) {
    events::append(
        outbox,
        NewEvent {
            seq,
            did,
            kind,
            frame,
            car: None,
            rev: 0,
        },
    );
}

/// `#commit` (or `#sync` for a commit too big to carry) for a repo write.
pub fn commit(outbox: &mut Outbox, did: &str, commit: &CommitData) {
    let seq = events::next_seq(outbox);
    let frame = frames::commit_frame(seq, did, commit, Datetime::now().as_str());
    blocks_event(outbox, seq, did, commit.rev.as_str(), frame);
}

/// `#sync`: the repo was replaced (import) and consumers should resynchronise.
pub fn sync(outbox: &mut Outbox, did: &str, commit_cid: Cid, commit_block: &[u8], rev: &str) {
    let seq = events::next_seq(outbox);
    let frame = frames::sync_frame(
        seq,
        did,
        commit_cid,
        commit_block,
        rev,
        Datetime::now().as_str(),
    );
    blocks_event(outbox, seq, did, rev, frame);
}

/// `#sync` for a commit just made (an account's first commit, an imported repo).
pub fn sync_commit(outbox: &mut Outbox, did: &str, commit: &CommitData) {
    let commit_block = commit.blocks.get(&commit.commit_cid).unwrap_or_default();
    sync(
        outbox,
        did,
        commit.commit_cid,
        commit_block,
        commit.rev.as_str(),
    );
}

/// `#identity`: handle or DID document changed.
pub fn identity(outbox: &mut Outbox, did: &str, handle: Option<&str>) {
    let seq = events::next_seq(outbox);
    let frame = frames::identity_frame(seq, did, handle, Datetime::now().as_str());
    plain_event(outbox, seq, did, Kind::Identity, frame);
}

/// `#account`: hosting status changed (`status` is absent when active).
pub fn account(outbox: &mut Outbox, did: &str, active: bool, status: Option<&str>) {
    let seq = events::next_seq(outbox);
    let frame = frames::account_frame(seq, did, active, status, Datetime::now().as_str());
    plain_event(outbox, seq, did, Kind::Account, frame);
}
