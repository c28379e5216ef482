//! Applying a batch of record writes to a repo: the pure part of a commit.
//!
//! Given the current tree (through a [`BlockStore`]), the writes and the signing key,
//! [`apply_writes`] returns everything storage must persist — the new record blocks,
//! the new MST nodes (only the changed path), the nodes no longer in the tree, the
//! signed commit — and the per-op results the firehose needs (`cid`, `prev`). It does
//! no I/O; storage runs it inside the writer's transaction, so commits to one repo
//! chain correctly even within one group commit.

use super::{BlockMap, BlockStore, Mst, RepoError, UnsignedCommit};
use crate::crypto::Keypair;
use crate::data::{cid_for_cbor, encode_cbor, Cid, Ipld};
use crate::syntax::{Did, Nsid, RecordKey, Tid};

/// One write, as requested.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create a record; fails if the key exists.
    Create {
        collection: Nsid,
        rkey: RecordKey,
        record: Ipld,
    },
    /// Create or replace a record.
    Update {
        collection: Nsid,
        rkey: RecordKey,
        record: Ipld,
    },
    /// Delete a record; fails if it does not exist.
    Delete { collection: Nsid, rkey: RecordKey },
}

/// A write with its optional compare-and-swap on the record's current CID:
/// `Some(None)` requires that the record does not exist.
#[derive(Debug, Clone)]
pub struct PreparedWrite {
    pub write: Write,
    pub swap_record: Option<Option<Cid>>,
}

impl Write {
    pub fn path(&self) -> String {
        match self {
            Write::Create {
                collection, rkey, ..
            }
            | Write::Update {
                collection, rkey, ..
            }
            | Write::Delete { collection, rkey } => format!("{collection}/{rkey}"),
        }
    }
}

/// What happened to one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// The result of one write: the key, its new CID (none for a delete) and the CID it
/// replaced (none for a create).
#[derive(Debug, Clone)]
pub struct OpResult {
    pub action: Action,
    pub path: String,
    pub cid: Option<Cid>,
    pub prev: Option<Cid>,
}

/// The repo's head before a commit.
#[derive(Debug, Clone)]
pub struct Head {
    pub commit: Cid,
    pub data: Cid,
    pub rev: Tid,
}

/// Everything one commit changes.
#[derive(Debug, Clone)]
pub struct CommitData {
    pub commit_cid: Cid,
    pub rev: Tid,
    /// The previous rev (`since` in the firehose), if the repo had a commit.
    pub since: Option<Tid>,
    pub data: Cid,
    pub prev_data: Option<Cid>,
    /// New blocks: the commit, changed MST nodes, new records.
    pub blocks: BlockMap,
    /// MST nodes of the old tree that the new tree no longer has.
    pub removed_nodes: Vec<Cid>,
    /// Unchanged MST nodes that, with `blocks`, let a relay invert every op
    /// (the ops' covering proofs, sync v1.1). Already stored; sent, not saved.
    pub proof: BlockMap,
    pub ops: Vec<OpResult>,
}

/// Why a batch of writes cannot be applied (the client's mistake, not a fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("record {0} already exists")]
    AlreadyExists(String),
    #[error("record {0} does not exist")]
    NotFound(String),
    #[error("record {path} is {actual:?}, not the expected {expected:?}")]
    SwapMismatch {
        path: String,
        expected: Option<String>,
        actual: Option<String>,
    },
    #[error(transparent)]
    Repo(#[from] RepoError),
}

/// One write on the tree: the swap checked, the record stored and keyed (or the key
/// removed), and what the commit's op says of it.
fn apply_one<S: BlockStore>(
    mst: &mut Mst<S>,
    blocks: &mut BlockMap,
    w: &PreparedWrite,
) -> Result<OpResult, WriteError> {
    let path = w.write.path();
    let current = mst.get(&path)?;
    if let Some(expected) = w.swap_record {
        if expected != current {
            return Err(WriteError::SwapMismatch {
                path,
                expected: expected.map(|c| c.to_string()),
                actual: current.map(|c| c.to_string()),
            });
        }
    }
    Ok(match &w.write {
        Write::Create { record, .. } | Write::Update { record, .. } => {
            if matches!(w.write, Write::Create { .. }) && current.is_some() {
                return Err(WriteError::AlreadyExists(path));
            }
            let bytes = encode_cbor(record);
            let cid = cid_for_cbor(&bytes);
            blocks.insert(cid, bytes);
            mst.insert(&path, cid)?;
            let action = if current.is_some() {
                Action::Update
            } else {
                Action::Create
            };
            OpResult {
                action,
                path,
                cid: Some(cid),
                prev: current,
            }
        }
        Write::Delete { .. } => {
            if current.is_none() {
                return Err(WriteError::NotFound(path));
            }
            mst.delete(&path)?;
            OpResult {
                action: Action::Delete,
                path,
                cid: None,
                prev: current,
            }
        }
    })
}

/// Applies `writes` on top of `head` (or an empty repo) and signs the new commit.
pub fn apply_writes(
    store: &dyn BlockStore,
    did: &Did,
    head: Option<&Head>,
    writes: &[PreparedWrite],
    key: &Keypair,
    rev: Tid,
) -> Result<CommitData, WriteError> {
    let mut mst = match head {
        Some(h) => Mst::load(store, h.data)?,
        None => Mst::new(store),
    };
    let mut blocks = BlockMap::new();
    let mut ops = Vec::with_capacity(writes.len());
    for w in writes {
        ops.push(apply_one(&mut mst, &mut blocks, w)?);
    }
    let (data, nodes) = mst.persist();
    // Nodes the new tree dropped: the edits read every node they changed or removed.
    let removed_nodes = mst.dropped_nodes();
    let mut proof = BlockMap::new();
    for op in &ops {
        for (cid, bytes) in mst.covering_proof(&op.path)?.iter() {
            if !nodes.contains(cid) {
                proof.insert(*cid, bytes.to_vec());
            }
        }
    }
    blocks.extend(nodes);
    let commit = UnsignedCommit::new(did, data, &rev).sign(key);
    let commit_cid = commit.put_into(&mut blocks);
    Ok(CommitData {
        commit_cid,
        rev,
        since: head.map(|h| h.rev.clone()),
        data,
        prev_data: head.map(|h| h.data),
        blocks,
        removed_nodes,
        proof,
        ops,
    })
}
