//! Signed v3 commits (`specs/repository#commit-objects`): the repo's signed head.
//!
//! The signature is over the DAG-CBOR encoding of the commit without its `sig` field,
//! made with the account's signing key (k256 or p256, low-S, 64-byte compact).

use super::{BlockMap, RepoError};
use crate::crypto::{Keypair, PublicKey};
use crate::data::{from_cbor, to_cbor, Cid};
use crate::syntax::{Did, Tid};
use serde::{Deserialize, Serialize};

/// The only repo format version atbox reads or writes.
pub const REPO_VERSION: u64 = 3;

/// A commit before signing: exactly the fields that are signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsignedCommit {
    pub did: String,
    pub version: u64,
    /// Root of the MST.
    pub data: Cid,
    /// Revision: a TID that strictly increases with every commit of the repo.
    pub rev: String,
    /// Always present and, in v3 repos, virtually always null.
    pub prev: Option<Cid>,
}

/// A signed commit block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub did: String,
    pub version: u64,
    pub data: Cid,
    pub rev: String,
    pub prev: Option<Cid>,
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl UnsignedCommit {
    pub fn new(did: &Did, data: Cid, rev: &Tid) -> Self {
        UnsignedCommit {
            did: did.to_string(),
            version: REPO_VERSION,
            data,
            rev: rev.to_string(),
            prev: None,
        }
    }

    pub fn sign(self, key: &Keypair) -> Commit {
        let sig = key.sign(&to_cbor(&self)).to_vec();
        let UnsignedCommit {
            did,
            version,
            data,
            rev,
            prev,
        } = self;
        Commit {
            did,
            version,
            data,
            rev,
            prev,
            sig,
        }
    }
}

impl Commit {
    /// Decodes a commit block, checking its shape: canonical CBOR, version 3, a valid
    /// DID and a TID `rev`.
    pub fn decode(cid: Cid, bytes: &[u8]) -> Result<Commit, RepoError> {
        let commit: Commit = from_cbor(bytes).map_err(|e| RepoError::BadBlock {
            cid: Box::new(cid),
            source: e,
        })?;
        if commit.version != REPO_VERSION {
            return Err(RepoError::InvalidCommit(format!(
                "version {} (only version 3 is supported)",
                commit.version
            )));
        }
        Did::new(commit.did.as_str()).map_err(|e| RepoError::InvalidCommit(e.to_string()))?;
        Tid::new(commit.rev.as_str()).map_err(|e| RepoError::InvalidCommit(format!("rev: {e}")))?;
        Ok(commit)
    }

    pub fn unsigned(&self) -> UnsignedCommit {
        UnsignedCommit {
            did: self.did.clone(),
            version: self.version,
            data: self.data,
            rev: self.rev.clone(),
            prev: self.prev,
        }
    }

    /// Checks the signature against the account's signing key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), RepoError> {
        key.verify(&to_cbor(&self.unsigned()), &self.sig)
            .map_err(RepoError::from)
    }

    /// Adds the commit block to `blocks`; returns its CID.
    pub fn put_into(&self, blocks: &mut BlockMap) -> Cid {
        blocks.put_cbor(self)
    }
}
