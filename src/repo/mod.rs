//! The repository core (`specs/repository`): content-addressed blocks, the Merkle
//! Search Tree of records, signed v3 commits and CAR files.
//!
//! This layer does no I/O of its own beyond the [`BlockStore`] trait: the SQLite store,
//! a CAR file loaded into memory and a proof slice all look the same to it. It is
//! hand-written rather than taken from a crate because it decides how many bytes each
//! write costs on an SD card, and because byte-for-byte compatibility with the network
//! is the product (every CID must match what other implementations compute).

pub mod blockstore;
pub mod car;
pub mod commit;
pub mod mst;
pub mod verify;
pub mod writes;

pub use blockstore::{BlockMap, BlockStore};
pub use commit::{Commit, UnsignedCommit};
pub use mst::Mst;

use crate::data::{Cid, DataError};

/// Why a repo operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("block {0} is missing")]
    MissingBlock(Box<Cid>),
    #[error("block {cid}: {source}")]
    BadBlock { cid: Box<Cid>, source: DataError },
    #[error("invalid MST: {0}")]
    InvalidMst(String),
    #[error("invalid commit: {0}")]
    InvalidCommit(String),
    #[error("invalid CAR: {0}")]
    Car(String),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("storage: {0}")]
    Storage(String),
}
