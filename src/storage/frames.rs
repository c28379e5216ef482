//! Firehose frames (`specs/event-stream`, lexicon `com.atproto.sync.subscribeRepos`):
//! a DAG-CBOR header (`op`, `t`) followed by a DAG-CBOR body, in one binary WebSocket
//! message.

use crate::data::{to_cbor, Cid};
use crate::repo::car::write_car;
use crate::repo::writes::CommitData;
use crate::repo::BlockMap;
use serde::Serialize;

/// Largest CAR slice a `#commit` carries, and most ops; a bigger commit is announced
/// with `#sync` instead, and consumers fetch the repo (sync v1.1).
pub const MAX_COMMIT_BLOCKS_BYTES: usize = 2 * 1024 * 1024;
pub const MAX_COMMIT_OPS: usize = 200;

#[derive(Serialize)]
struct Header<'a> {
    op: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<&'a str>,
}

fn frame<B: Serialize>(t: &str, body: &B) -> Vec<u8> {
    let mut out = to_cbor(&Header { op: 1, t: Some(t) });
    out.extend(to_cbor(body));
    out
}

/// A frame that carries repo blocks, and where its CAR sits inside it, so that storage
/// can keep the blocks once — inside the frame — and find them by offset.
pub struct BlocksFrame {
    pub kind: &'static str,
    pub bytes: Vec<u8>,
    pub car: Option<std::ops::Range<usize>>,
}

impl BlocksFrame {
    fn new(kind: &'static str, bytes: Vec<u8>, car: &[u8]) -> BlocksFrame {
        // The CAR is a byte string in the body, so its bytes appear verbatim. Look for
        // its start (header and commit CID: unique in the frame), then check the rest.
        let car = memchr::memmem::find(&bytes, &car[..car.len().min(96)])
            .map(|at| at..at + car.len())
            .filter(|r| bytes.get(r.clone()) == Some(car));
        BlocksFrame { kind, bytes, car }
    }
}

/// An error frame (`op: -1`), after which the server closes the stream.
pub fn error_frame(error: &str, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        message: &'a str,
    }
    let mut out = to_cbor(&Header { op: -1, t: None });
    out.extend(to_cbor(&Body { error, message }));
    out
}

/// An `#info` frame, e.g. `OutdatedCursor`.
pub fn info_frame(name: &str, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        name: &'a str,
        message: &'a str,
    }
    frame("#info", &Body { name, message })
}

#[derive(Serialize)]
struct RepoOp {
    action: &'static str,
    path: String,
    cid: Option<Cid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<Cid>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CommitBody<'a> {
    seq: i64,
    rebase: bool,
    too_big: bool,
    repo: &'a str,
    commit: Cid,
    rev: &'a str,
    since: Option<&'a str>,
    #[serde(with = "serde_bytes")]
    blocks: Vec<u8>,
    ops: Vec<RepoOp>,
    blobs: Vec<Cid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_data: Option<Cid>,
    time: &'a str,
}

#[derive(Serialize)]
struct SyncBody<'a> {
    seq: i64,
    did: &'a str,
    #[serde(with = "serde_bytes")]
    blocks: Vec<u8>,
    rev: &'a str,
    time: &'a str,
}

/// The frame announcing a commit: `#commit` with the CAR slice a relay needs to check
/// it (commit, new records, new MST nodes and the covering proof of every op), or
/// `#sync` when the commit is too big to carry.
pub fn commit_frame(seq: i64, did: &str, commit: &CommitData, time: &str) -> BlocksFrame {
    let mut slice = commit.blocks.clone();
    slice.extend(commit.proof.clone());
    let car = write_car(&[commit.commit_cid], &slice);
    if car.len() > MAX_COMMIT_BLOCKS_BYTES || commit.ops.len() > MAX_COMMIT_OPS {
        return sync_frame(
            seq,
            did,
            commit.commit_cid,
            commit.blocks.get(&commit.commit_cid).unwrap_or_default(),
            commit.rev.as_str(),
            time,
        );
    }
    let ops = commit
        .ops
        .iter()
        .map(|op| RepoOp {
            action: op.action.as_str(),
            path: op.path.clone(),
            cid: op.cid,
            prev: op.prev,
        })
        .collect();
    let body = CommitBody {
        seq,
        rebase: false,
        too_big: false,
        repo: did,
        commit: commit.commit_cid,
        rev: commit.rev.as_str(),
        since: commit.since.as_ref().map(|t| t.as_str()),
        blocks: car.clone(),
        ops,
        blobs: Vec::new(),
        prev_data: commit.prev_data,
        time,
    };
    BlocksFrame::new("commit", frame("#commit", &body), &car)
}

/// `#sync`: the repo's current commit, for consumers to (re)synchronise from.
pub fn sync_frame(
    seq: i64,
    did: &str,
    commit_cid: Cid,
    commit_block: &[u8],
    rev: &str,
    time: &str,
) -> BlocksFrame {
    let mut blocks = BlockMap::new();
    blocks.insert(commit_cid, commit_block.to_vec());
    let car = write_car(&[commit_cid], &blocks);
    let body = SyncBody {
        seq,
        did,
        blocks: car.clone(),
        rev,
        time,
    };
    BlocksFrame::new("sync", frame("#sync", &body), &car)
}

/// `#identity`: the account's handle or DID document may have changed.
pub fn identity_frame(seq: i64, did: &str, handle: Option<&str>, time: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        seq: i64,
        did: &'a str,
        time: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        handle: Option<&'a str>,
    }
    frame(
        "#identity",
        &Body {
            seq,
            did,
            time,
            handle,
        },
    )
}

/// `#account`: the account's hosting status changed.
pub fn account_frame(
    seq: i64,
    did: &str,
    active: bool,
    status: Option<&str>,
    time: &str,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        seq: i64,
        did: &'a str,
        time: &'a str,
        active: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a str>,
    }
    frame(
        "#account",
        &Body {
            seq,
            did,
            time,
            active,
            status,
        },
    )
}
