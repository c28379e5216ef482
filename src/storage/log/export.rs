//! Exporting a repo's blocks (getRepo, getCheckout) in the order they are stored: the
//! repo's block locations are taken from the index once, sorted by row, and each row is
//! read and inflated once, however many commits built the repo. Memory is the sorted
//! list of locations (48 bytes a block) and one row at a time; nothing else is held.

use super::{dag_cbor_cid, digest, read_row, Digest, RepoLog};
use crate::data::Cid;
use crate::storage::StorageError;
use rusqlite::Connection;

/// Where one block is: its row, offset and length, and its hash.
type Place = (i64, u32, u32, Digest);

impl RepoLog {
    /// Calls `emit` with `first` (the commit), then every other live block of `did`
    /// (with `since`, only those written in later revisions), row by row.
    pub fn export_blocks<E: From<StorageError>>(
        &self,
        conn: &Connection,
        did: &str,
        since: Option<u64>,
        first: &Cid,
        mut emit: impl FnMut(&Cid, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let first_digest = digest(first);
        let mut places: Vec<Place> = {
            let index = self.read_index();
            index.repos.get(did).map_or_else(Vec::new, |repo| {
                repo.iter()
                    .filter(|(d, l)| since.is_none_or(|s| l.rev > s) && Some(**d) != first_digest)
                    .map(|(d, l)| (l.row, l.off, l.len, *d))
                    .collect()
            })
        };
        places.sort_unstable_by_key(|(row, off, ..)| (*row, *off));
        if let Some(bytes) = self.get(conn, did, first)? {
            emit(first, &bytes)?;
        }
        for group in places.chunk_by(|a, b| a.0 == b.0) {
            let row_id = group[0].0;
            match read_row(conn, row_id)? {
                Some(row) => {
                    for (_, off, len, d) in group {
                        let bytes =
                            row.get(*off as usize..(*off + *len) as usize)
                                .ok_or_else(|| {
                                    StorageError::Corrupt(format!(
                                        "repo log row {row_id}: a block lies outside its row"
                                    ))
                                })?;
                        emit(&dag_cbor_cid(d), bytes)?;
                    }
                }
                // A compaction moved these blocks meanwhile: find each where it is now
                // (a block that died meanwhile is no longer part of the repo).
                None => {
                    for (.., d) in group {
                        let cid = dag_cbor_cid(d);
                        if let Some(bytes) = self.get(conn, did, &cid)? {
                            emit(&cid, &bytes)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
