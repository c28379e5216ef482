//! Where the repo core gets and puts blocks: the [`BlockStore`] trait, and
//! [`BlockMap`], an ordered in-memory set of blocks (a CAR's contents, the new blocks
//! of a commit, or a proof).

use super::RepoError;
use crate::data::{cid_for_cbor, to_cbor, Cid};
use serde::Serialize;
use std::collections::BTreeMap;

/// Read access to content-addressed blocks. Implementations must return exactly the
/// bytes that hash to `cid` (the core trusts them once stored).
pub trait BlockStore {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError>;

    /// Like [`get_block`](Self::get_block), but a missing block is an error.
    fn require_block(&self, cid: &Cid) -> Result<Vec<u8>, RepoError> {
        self.get_block(cid)?
            .ok_or(RepoError::MissingBlock(Box::new(*cid)))
    }
}

/// An ordered map from CID to block bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockMap {
    blocks: BTreeMap<Cid, Vec<u8>>,
}

impl BlockMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a block whose CID the caller has already computed (or verified).
    pub fn insert(&mut self, cid: Cid, bytes: Vec<u8>) {
        self.blocks.insert(cid, bytes);
    }

    /// Adds a block already encoded as DAG-CBOR and returns its CID.
    pub fn put_encoded(&mut self, bytes: Vec<u8>) -> Cid {
        let cid = cid_for_cbor(&bytes);
        self.blocks.insert(cid, bytes);
        cid
    }

    /// Encodes `value` as DAG-CBOR, adds it and returns its CID.
    pub fn put_cbor<T: Serialize + ?Sized>(&mut self, value: &T) -> Cid {
        self.put_encoded(to_cbor(value))
    }

    pub fn get(&self, cid: &Cid) -> Option<&[u8]> {
        self.blocks.get(cid).map(Vec::as_slice)
    }

    pub fn contains(&self, cid: &Cid) -> bool {
        self.blocks.contains_key(cid)
    }

    pub fn remove(&mut self, cid: &Cid) -> Option<Vec<u8>> {
        self.blocks.remove(cid)
    }

    pub fn extend(&mut self, other: BlockMap) {
        self.blocks.extend(other.blocks);
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Cid, &[u8])> {
        self.blocks.iter().map(|(c, b)| (c, b.as_slice()))
    }

    pub fn cids(&self) -> impl Iterator<Item = &Cid> {
        self.blocks.keys()
    }
}

impl BlockStore for BlockMap {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        Ok(self.blocks.get(cid).cloned())
    }
}

impl<S: BlockStore + ?Sized> BlockStore for &S {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        (**self).get_block(cid)
    }
}

/// Reads from `upper` first, then `lower`: a commit's fresh blocks over the stored repo.
pub struct Overlay<'a> {
    pub upper: &'a BlockMap,
    pub lower: &'a dyn BlockStore,
}

impl BlockStore for Overlay<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        match self.upper.get(cid) {
            Some(b) => Ok(Some(b.to_vec())),
            None => self.lower.get_block(cid),
        }
    }
}
