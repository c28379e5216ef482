//! Full verification of a repo held in a block set (a CAR export): the commit, its
//! signature, every MST node and every record. Used by `atbox repo verify` and by
//! `importRepo`.

use super::{BlockMap, BlockStore, Commit, Mst, RepoError};
use crate::crypto::PublicKey;
use crate::data::{decode_cbor, Cid, Ipld};

/// What a verified repo holds.
#[derive(Debug, Clone)]
pub struct RepoSummary {
    pub commit_cid: Cid,
    pub commit: Commit,
    /// `(collection/rkey, record CID)` in key order.
    pub records: Vec<(String, Cid)>,
    /// Whether the signature was checked (a key was given) and verified.
    pub signature_verified: bool,
}

/// Verifies the repo whose commit is `root`: the commit decodes and (with `key`) its
/// signature verifies; the MST is well-formed, canonical and in order; every block it
/// references is present and hashes to its CID; every record is an atproto object.
/// Returns the first problem found.
pub fn verify_repo(
    blocks: &BlockMap,
    root: Cid,
    key: Option<&PublicKey>,
) -> Result<RepoSummary, RepoError> {
    let commit = Commit::decode(root, &blocks.require_block(&root)?)?;
    if let Some(key) = key {
        commit
            .verify(key)
            .map_err(|e| RepoError::InvalidCommit(format!("signature: {e}")))?;
    }
    let mut mst = Mst::load(blocks, commit.data)?;
    let mut records = Vec::new();
    mst.walk(|key, cid| {
        records.push((key.to_owned(), cid));
        Ok(true)
    })?;
    // Persisting re-encodes every node: a tree that is ordered but not in the
    // canonical shape for its keys would give another root.
    let mut canonical = Mst::new(BlockMap::new());
    for (key, cid) in &records {
        canonical.insert(key, *cid)?;
    }
    if canonical.root_cid() != commit.data {
        return Err(RepoError::InvalidMst(
            "tree is not in the canonical shape for its keys".into(),
        ));
    }
    for (key, cid) in &records {
        let bytes = blocks.require_block(cid)?;
        match decode_cbor(&bytes).map_err(|e| RepoError::BadBlock {
            cid: Box::new(*cid),
            source: e,
        })? {
            Ipld::Map(_) => {}
            _ => {
                return Err(RepoError::InvalidMst(format!(
                    "record {key} ({cid}) is not an object"
                )))
            }
        }
    }
    Ok(RepoSummary {
        commit_cid: root,
        commit,
        records,
        signature_verified: key.is_some(),
    })
}
