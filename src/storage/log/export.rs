//! Exporting a repo's blocks (getRepo, getCheckout) in the order they are stored: the
//! repo's block locations are taken from the index once, sorted by row, and each row is
//! read and inflated once, however many commits built the repo. Memory is the sorted
//! list of locations (16 bytes a block) and one row at a time.
//!
//! A block's CID is read from the row, where it precedes the block's bytes (rows hold
//! blocks as CAR sections), rather than hashed again: on a Pi without SHA instructions
//! hashing a repo costs more than reading it.
//!
//! A compaction may rewrite rows while an export runs. It only ever moves live blocks
//! into *new* rows (higher ids than any before), so when a row the export reaches is
//! gone, the export takes the current locations of the rows from there on again: the
//! moved blocks are among them. A block can then go out twice (harmless: a CAR reader
//! keeps one), never not at all.

use super::row::{cid_before, read_row_into};
use super::{digest, RepoLog};
use crate::data::Cid;
use crate::storage::StorageError;
use rusqlite::Connection;

/// Where one block is: its row, offset and length.
type Place = (i64, u32, u32);

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
        if let Some(bytes) = self.get(conn, did, first)? {
            emit(first, &bytes)?;
        }
        let mut places = self.places(did, since, i64::MIN, first_digest);
        let mut at = 0;
        let mut looked_again = 0;
        let mut row = Vec::new();
        while at < places.len() {
            let row_id = places[at].0;
            let end = at + places[at..].iter().take_while(|p| p.0 == row_id).count();
            if !read_row_into(conn, row_id, &mut row)? {
                // Compacted meanwhile: the blocks moved to newer rows; look again (the
                // index follows the compaction's commit within moments).
                looked_again += 1;
                if looked_again > 50 {
                    return Err(StorageError::Corrupt(format!(
                        "repo log row {row_id} is indexed but not stored"
                    ))
                    .into());
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                places = self.places(did, since, row_id, first_digest);
                at = 0;
                continue;
            }
            for (_, off, len) in &places[at..end] {
                let bytes = row
                    .get(*off as usize..(*off + *len) as usize)
                    .ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "repo log row {row_id}: a block lies outside its row"
                        ))
                    })?;
                let cid = cid_before(&row, *off as usize)
                    .unwrap_or_else(|| crate::data::cid_for_cbor(bytes));
                emit(&cid, bytes)?;
            }
            at = end;
        }
        Ok(())
    }

    /// The locations of `did`'s live blocks in rows from `from_row` on (written after
    /// `since`, when given), `skip` left out, sorted by row and offset.
    fn places(
        &self,
        did: &str,
        since: Option<u64>,
        from_row: i64,
        skip: Option<super::Digest>,
    ) -> Vec<Place> {
        let index = self.read_index();
        let Some(repo) = index.repos.get(did) else {
            return Vec::new();
        };
        // Sized once for the whole repo (not grown by doubling): this list is most of
        // an export's memory.
        let mut places = Vec::with_capacity(repo.len());
        places.extend(
            repo.iter()
                .filter(|(d, l)| {
                    l.row >= from_row && since.is_none_or(|s| l.rev > s) && Some(**d) != skip
                })
                .map(|(_, l)| (l.row, l.off, l.len)),
        );
        drop(index);
        places.sort_unstable();
        places
    }
}
