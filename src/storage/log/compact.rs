//! Rewriting the repo log: compaction (rows past the firehose window or mostly dead
//! give their live blocks to a new row and go), packing (the few live blocks of many
//! small commits' rows copied into dense rows, so reading a repo does not inflate a row
//! per commit), and the one-time move of the old block and event tables into the log
//! (schema migration 5).

use super::row::{entry_blocks, inflate, insert_row, parse_row, RowBuilder, ROW_TARGET};
use super::{digest, RepoLog, RowInfo};
use crate::data::Cid;
use crate::storage::StorageError;
use rusqlite::Connection;

/// Live blocks on their way to a new row: (did, rev, CID, bytes).
type Moving = Vec<(String, u64, Cid, Vec<u8>)>;

/// What becomes of the rows whose live blocks were copied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Deleted in the same transaction (compaction).
    Delete,
    /// Kept for the events they hold, with nothing live left (packing).
    Keep,
}

/// Event rows packing leaves alone: the newest, whose MST nodes the next writes replace.
const PACK_SPARES_NEWEST: usize = 16;
/// Event rows smaller than this (a commit or a few) are packed whatever part of them
/// is live: reading a row costs about the same however little it holds.
const SMALL_ROW: u64 = ROW_TARGET as u64 / 4;

impl RepoLog {
    /// Rewrites rows that no longer earn their space: rows past the firehose window
    /// (`before_ms`) that hold events, and rows whose blocks are mostly dead. Their live
    /// blocks move to new rows; at most `budget` bytes are read per call. Runs on the
    /// writer's connection, in its own transaction. Returns the bytes reclaimed.
    pub fn compact(
        &self,
        conn: &mut Connection,
        before_ms: i64,
        budget: u64,
    ) -> Result<u64, StorageError> {
        let picked = self.pick_rows(before_ms, budget);
        if picked.is_empty() {
            return Ok(0);
        }
        let (freed, written) = self.rewrite(conn, &picked, Rewrite::Delete)?;
        Ok(freed.saturating_sub(written))
    }

    /// Packs the live blocks of sparse rows into dense ones. A commit's row holds its
    /// event (the frame, with the commit's new blocks) for the firehose window; once the
    /// next commits replaced its MST nodes, what stays live is little more than its
    /// record, so an export or a listing of a repo built by many small commits would
    /// inflate one row per commit. Here the live blocks of such rows — small event rows,
    /// and bigger ones mostly dead, but for the newest few, whose nodes the next writes
    /// replace — are copied, in revision order, into new rows and the index points at
    /// the copies; the event rows stay for the firehose until compaction deletes them
    /// with nothing left to move. So the copy compaction makes when a row leaves the
    /// window is made earlier, not twice. Runs (in its own transaction, on the writer's
    /// connection) only when at least `min_rows` rows are sparse, on at most `budget`
    /// bytes of them; returns how many rows it packed and whether sparse rows remain.
    pub fn pack(
        &self,
        conn: &mut Connection,
        min_rows: usize,
        budget: u64,
    ) -> Result<(usize, bool), StorageError> {
        let (picked, waiting) = self.sparse_rows(budget);
        if waiting < min_rows.max(1) {
            return Ok((0, false));
        }
        self.rewrite(conn, &picked, Rewrite::Keep)?;
        Ok((picked.len(), waiting > picked.len()))
    }

    /// Event rows with live blocks that are small or mostly dead, oldest first, up to
    /// `budget` bytes, the newest [`PACK_SPARES_NEWEST`] event rows left out; and how many
    /// such rows there are in all.
    fn sparse_rows(&self, budget: u64) -> (Vec<i64>, usize) {
        let index = self.read_index();
        let mut event_rows = index.rows.iter().rev().filter(|(_, r)| r.seqs.is_some());
        let Some(youngest) = event_rows.nth(PACK_SPARES_NEWEST - 1).map(|(id, _)| *id) else {
            return (Vec::new(), 0);
        };
        let sparse = index.rows.range(..youngest).filter(|(_, r)| {
            r.seqs.is_some() && r.live > 0 && (r.bytes < SMALL_ROW || r.live * 2 < r.bytes)
        });
        let (mut picked, mut waiting, mut used) = (Vec::new(), 0, 0);
        for (id, r) in sparse {
            waiting += 1;
            used += r.bytes;
            if used <= budget.max(r.bytes) {
                picked.push(*id);
            }
        }
        (picked, waiting)
    }

    /// Copies the live blocks of `picked` rows into new rows and points the index at
    /// them; the old rows are deleted, or kept (for their events). Returns the stored
    /// bytes of the old rows and of the new ones.
    fn rewrite(
        &self,
        conn: &mut Connection,
        picked: &[i64],
        old: Rewrite,
    ) -> Result<(u64, u64), StorageError> {
        let tx = conn.transaction()?;
        let (moving, freed) = self.live_blocks(&tx, picked)?;
        let mut builder = RowBuilder::default();
        builder.blocks(
            moving
                .iter()
                .map(|(did, rev, cid, b)| (did.as_str(), *rev, cid, b.as_slice()))
                .collect(),
        );
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut ids = Vec::with_capacity(builder.rows.len());
        let mut written = 0;
        for row in &builder.rows {
            let (id, stored) = insert_row(&tx, now_ms, row)?;
            ids.push(id);
            written += stored as u64;
        }
        if old == Rewrite::Delete {
            for id in picked {
                tx.execute("DELETE FROM repo_log WHERE id = ?1", [id])?;
            }
        }
        tx.commit()?;
        self.reindex(picked, old, &ids, builder, now_ms);
        Ok((freed, written))
    }

    /// The rows worth rewriting, oldest first, up to `budget` bytes (never the newest
    /// row, nor the one holding the newest event: sequence numbers are never reused).
    fn pick_rows(&self, before_ms: i64, budget: u64) -> Vec<i64> {
        let index = self.read_index();
        let newest = index.rows.keys().next_back().copied();
        let mut used = 0;
        index
            .rows
            .iter()
            .filter(|(id, r)| {
                Some(**id) != newest
                    && r.seqs
                        .is_none_or(|(_, last)| r.written_ms < before_ms && last != index.last_seq)
                    && (r.seqs.is_some() || r.live * 2 < r.bytes)
            })
            .take_while(|(_, r)| {
                used += r.bytes;
                used <= budget.max(r.bytes)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The live blocks in `picked` rows (did, rev, CID, bytes), and the stored bytes
    /// those rows take.
    fn live_blocks(&self, tx: &Connection, picked: &[i64]) -> Result<(Moving, u64), StorageError> {
        let mut moving = Vec::new();
        let mut freed = 0;
        let index = self.read_index();
        for id in picked {
            let stored: Vec<u8> =
                tx.query_row("SELECT data FROM repo_log WHERE id = ?1", [id], |r| {
                    r.get(0)
                })?;
            freed += stored.len() as u64;
            let data = inflate(*id, &stored)?;
            for e in parse_row(*id, &data)? {
                let Some(repo) = index.repos.get(e.did) else {
                    continue;
                };
                for (cid, range) in entry_blocks(*id, &e)? {
                    let here = digest(&cid)
                        .and_then(|d| repo.get(&d))
                        .filter(|l| l.row == *id && l.off as usize == range.start);
                    if let Some(loc) = here {
                        moving.push((e.did.to_owned(), loc.rev, cid, data[range].to_vec()));
                    }
                }
            }
        }
        Ok((moving, freed))
    }

    /// Points the index at the new rows once the rewrite is durable.
    fn reindex(&self, picked: &[i64], old: Rewrite, ids: &[i64], builder: RowBuilder, now_ms: i64) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        for id in picked {
            if old == Rewrite::Keep {
                if let Some(info) = index.rows.get_mut(id) {
                    info.live = 0;
                }
            } else if let Some(info) = index.rows.remove(id) {
                if let Some((first, _)) = info.seqs {
                    index.events.remove(&first);
                }
            }
        }
        for (i, id) in ids.iter().enumerate() {
            index.rows.insert(
                *id,
                RowInfo {
                    bytes: builder.rows[i].len() as u64,
                    live: 0,
                    seqs: None,
                    written_ms: now_ms,
                },
            );
        }
        for ((did, d), (i, range)) in builder.placed {
            let row = ids[i];
            if let Some(loc) = index.repos.get_mut(&did).and_then(|r| r.get_mut(&d)) {
                loc.row = row;
                loc.off = range.start as u32;
                index.rows.get_mut(&row).expect("inserted above").live += u64::from(loc.len);
            }
        }
        drop(index);
        if old == Rewrite::Delete {
            self.recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|(id, _)| !picked.contains(id));
        }
    }
}

/// Schema migration 5: moves blocks and events from the old `repo_block` and
/// `repo_event` tables into the log (run once, inside the migration's transaction).
pub(in crate::storage) fn import_legacy_tables(conn: &Connection) -> Result<(), StorageError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut builder = RowBuilder::default();
    let mut events = conn.prepare("SELECT seq, did, kind, event FROM repo_event ORDER BY seq")?;
    let mut rows = events.query([])?;
    while let Some(r) = rows.next()? {
        let (seq, did, kind, frame): (i64, String, String, Vec<u8>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let kind = super::Kind::from_name(&kind) as u8;
        builder.event(&did, kind, seq, 0, &frame, None);
    }
    let mut stmt = conn.prepare("SELECT did, cid, rev, bytes FROM repo_block ORDER BY did, rev")?;
    let blocks: Vec<(String, Cid, u64, Vec<u8>)> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?
        .map(|row| {
            let (did, cid, rev, bytes) = row?;
            let cid = Cid::try_from(cid)
                .map_err(|e| StorageError::Corrupt(format!("stored CID: {e}")))?;
            let rev = crate::syntax::Tid::new(rev)
                .map(|t| t.to_u64())
                .unwrap_or(0);
            Ok((did, cid, rev, bytes))
        })
        .collect::<Result<_, StorageError>>()?;
    builder.blocks(
        blocks
            .iter()
            .map(|(d, c, r, b)| (d.as_str(), *r, c, b.as_slice()))
            .collect(),
    );
    for row in &builder.rows {
        insert_row(conn, now_ms, row)?;
    }
    Ok(())
}
