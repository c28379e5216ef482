//! Repo data: each repo's head and the record index in SQLite; the blocks themselves
//! in the repo log (`storage::log`).
//!
//! The repo core reads blocks through [`LogBlocks`] and hands back a [`CommitData`];
//! [`save_commit`] records it in the caller's transaction and queues its blocks and
//! references in the job's outbox. The record index (`record`) mirrors the MST so
//! listing and lookups need no tree walk; both change in the same transaction.

use super::log::{digest, Change, LogBlocks, RepoLog};
use super::writer::Outbox;
use super::StorageError;
use crate::data::Cid;
use crate::repo::writes::{Action, CommitData, Head};
use crate::repo::BlockMap;
use crate::syntax::Tid;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use std::sync::Arc;

fn cid_from(bytes: Vec<u8>) -> Result<Cid, StorageError> {
    Cid::try_from(bytes).map_err(|e| StorageError::Corrupt(format!("stored CID: {e}")))
}

/// The repo's current head, if it has one.
pub fn head(conn: &Connection, did: &str) -> Result<Option<Head>, StorageError> {
    let row: Option<(Vec<u8>, Vec<u8>, String)> = conn
        .prepare_cached("SELECT commit_cid, data_cid, rev FROM repo_root WHERE did = ?1")?
        .query_row([did], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    row.map(|(c, d, rev)| {
        Ok(Head {
            commit: cid_from(c)?,
            data: cid_from(d)?,
            rev: Tid::new(rev).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        })
    })
    .transpose()
}

/// Persists a commit: the head, the record index, and (in the outbox) its new blocks
/// and the references it adds and drops. `expected` is the head the commit was built
/// on (compare-and-set).
pub fn save_commit(
    conn: &Connection,
    outbox: &mut Outbox,
    did: &str,
    expected: Option<&Head>,
    commit: &CommitData,
) -> Result<(), StorageError> {
    let current = head(conn, did)?;
    if current.as_ref().map(|h| h.commit) != expected.map(|h| h.commit) {
        return Err(StorageError::Corrupt(
            "the repo head moved during a write".into(),
        ));
    }
    let rev = commit.rev.as_str();
    let rev_number = commit.rev.to_u64();
    for (cid, bytes) in commit.blocks.iter() {
        outbox.changes.push(Change::Block {
            did: did.to_owned(),
            cid: *cid,
            bytes: Arc::new(bytes.to_vec()),
            rev: rev_number,
        });
    }
    for (cid, delta) in reference_changes(commit, current.as_ref()) {
        if let Some(digest) = digest(cid) {
            outbox.changes.push(Change::Ref {
                did: did.to_owned(),
                digest,
                delta,
            });
        }
    }
    conn.prepare_cached(
        "INSERT INTO repo_root (did, commit_cid, data_cid, rev) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (did) DO UPDATE SET commit_cid = ?2, data_cid = ?3, rev = ?4",
    )?
    .execute(params![
        did,
        commit.commit_cid.to_bytes(),
        commit.data.to_bytes(),
        rev
    ])?;

    index_records(conn, did, commit)
}

/// The references a commit adds and drops, additions first. Every new block is
/// referenced once by the new tree (records once per key that holds them). Adding
/// before dropping matters: a block the commit both drops and keeps (a record deleted
/// and another written with the same content in one batch) must never pass through
/// zero, which would forget it.
fn reference_changes<'a>(commit: &'a CommitData, current: Option<&'a Head>) -> Vec<(&'a Cid, i32)> {
    let mut deltas: Vec<(&Cid, i32)> = Vec::new();
    let records: HashSet<Cid> = commit.ops.iter().filter_map(|op| op.cid).collect();
    for cid in commit.blocks.cids().filter(|c| !records.contains(c)) {
        deltas.push((cid, 1));
    }
    for op in &commit.ops {
        if let Some(cid) = &op.cid {
            deltas.push((cid, 1));
        }
        if let Some(prev) = &op.prev {
            deltas.push((prev, -1));
        }
    }
    for cid in &commit.removed_nodes {
        deltas.push((cid, -1));
    }
    if let Some(old) = current {
        deltas.push((&old.commit, -1));
    }
    deltas.sort_by_key(|(_, delta)| std::cmp::Reverse(*delta));
    deltas
}

/// The record index follows the commit's operations.
fn index_records(conn: &Connection, did: &str, commit: &CommitData) -> Result<(), StorageError> {
    let rev = commit.rev.as_str();
    let now = crate::syntax::Datetime::now().to_string();
    for op in &commit.ops {
        let (collection, rkey) = op
            .path
            .split_once('/')
            .expect("repo paths are collection/rkey");
        match op.action {
            Action::Create | Action::Update => {
                let cid = op.cid.expect("creates and updates carry a CID");
                conn.prepare_cached(
                    "INSERT INTO record (did, collection, rkey, cid, rev, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (did, collection, rkey) DO UPDATE SET cid = ?4, rev = ?5, indexed_at = ?6",
                )?
                .execute(params![did, collection, rkey, cid.to_bytes(), rev, now])?;
            }
            Action::Delete => {
                conn.prepare_cached(
                    "DELETE FROM record WHERE did = ?1 AND collection = ?2 AND rkey = ?3",
                )?
                .execute(params![did, collection, rkey])?;
            }
        }
    }
    Ok(())
}

/// A record as stored: its CID and DAG-CBOR bytes.
pub fn get_record(
    log: &RepoLog,
    conn: &Connection,
    did: &str,
    collection: &str,
    rkey: &str,
) -> Result<Option<(Cid, Vec<u8>)>, StorageError> {
    let Some(cid) = record_cid(conn, did, collection, rkey)? else {
        return Ok(None);
    };
    let bytes = log
        .get(conn, did, &cid)?
        .ok_or_else(|| StorageError::Corrupt(format!("record {cid} of {did} is missing")))?;
    Ok(Some((cid, bytes)))
}

/// The CID a record has now, if it exists.
pub fn record_cid(
    conn: &Connection,
    did: &str,
    collection: &str,
    rkey: &str,
) -> Result<Option<Cid>, StorageError> {
    let cid: Option<Vec<u8>> = conn
        .prepare_cached("SELECT cid FROM record WHERE did = ?1 AND collection = ?2 AND rkey = ?3")?
        .query_row(params![did, collection, rkey], |r| r.get(0))
        .optional()?;
    cid.map(cid_from).transpose()
}

/// One page of a collection, in rkey order (or reverse), starting after `cursor`.
pub fn list_records(
    log: &RepoLog,
    conn: &Connection,
    did: &str,
    collection: &str,
    limit: usize,
    cursor: Option<&str>,
    reverse: bool,
) -> Result<Vec<(String, Cid, Vec<u8>)>, StorageError> {
    // Without a cursor the bound is the end of the collection ('' sorts first; no key
    // holds U+FFFF): a plain `rkey < ?3` is a range the index seeks to, where
    // `?3 IS NULL OR …` would walk the collection from its end to the cursor.
    let (sql, cursor) = if reverse {
        (
            "SELECT rkey, cid FROM record
             WHERE did = ?1 AND collection = ?2 AND rkey > ?3 ORDER BY rkey ASC LIMIT ?4",
            cursor.unwrap_or(""),
        )
    } else {
        (
            "SELECT rkey, cid FROM record
             WHERE did = ?1 AND collection = ?2 AND rkey < ?3 ORDER BY rkey DESC LIMIT ?4",
            cursor.unwrap_or("\u{ffff}"),
        )
    };
    // The page's keys are read to the end before any block is: a statement still
    // open would hold this connection's snapshot from before a packing or compaction
    // that the log's index already follows (see `RepoLog::get`).
    let keys = conn
        .prepare_cached(sql)?
        .query_map(params![did, collection, cursor, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    keys.into_iter()
        .map(|(rkey, cid)| {
            let cid = cid_from(cid)?;
            let bytes = log.get(conn, did, &cid)?.ok_or_else(|| {
                StorageError::Corrupt(format!("record {cid} of {did} is missing"))
            })?;
            Ok((rkey, cid, bytes))
        })
        .collect()
}

/// A record written after some revision: collection, rkey, CID, DAG-CBOR bytes and
/// when it was indexed.
pub type RecentRecord = (String, String, Cid, Vec<u8>, String);

/// Up to `limit` of the account's records written after `rev`, oldest first. Empty
/// when no record is as old as `rev` (a rev from before the repo came here, e.g.
/// by migration, says nothing about what the caller has seen).
pub fn records_since(
    log: &RepoLog,
    conn: &Connection,
    did: &str,
    rev: &str,
    limit: usize,
) -> Result<Vec<RecentRecord>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT collection, rkey, cid, indexed_at FROM record
         WHERE did = ?1 AND rev > ?2 ORDER BY rev ASC LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![did, rev, limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let older: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM record WHERE did = ?1 AND rev <= ?2 LIMIT 1")?
        .query_row(params![did, rev], |r| r.get(0))
        .optional()?;
    if older.is_none() {
        return Ok(Vec::new());
    }
    rows.into_iter()
        .map(|(collection, rkey, cid, indexed_at)| {
            let cid = cid_from(cid)?;
            let bytes = log.get(conn, did, &cid)?.ok_or_else(|| {
                StorageError::Corrupt(format!("record {cid} of {did} is missing"))
            })?;
            Ok((collection, rkey, cid, bytes, indexed_at))
        })
        .collect()
}

/// The collections a repo has records in.
pub fn collections(conn: &Connection, did: &str) -> Result<Vec<String>, StorageError> {
    // One index probe per collection (a skip scan), not a walk over every record.
    let mut stmt = conn.prepare_cached(
        "WITH RECURSIVE c(name) AS (
             SELECT MIN(collection) FROM record WHERE did = ?1
             UNION ALL
             SELECT (SELECT MIN(collection) FROM record WHERE did = ?1 AND collection > c.name)
             FROM c WHERE c.name IS NOT NULL)
         SELECT name FROM c WHERE name IS NOT NULL ORDER BY name",
    )?;
    let rows = stmt.query_map([did], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Number of records in a repo.
pub fn record_count(conn: &Connection, did: &str) -> Result<u64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM record WHERE did = ?1")?
        .query_row([did], |r| r.get::<_, i64>(0))? as u64)
}

/// Blocks by CID (those the repo has; missing ones are skipped).
pub fn get_blocks(
    log: &RepoLog,
    conn: &Connection,
    did: &str,
    cids: &[Cid],
) -> Result<BlockMap, StorageError> {
    let mut out = BlockMap::new();
    for cid in cids {
        if let Some(b) = log.get(conn, did, cid)? {
            out.insert(*cid, b);
        }
    }
    Ok(out)
}

/// Every live block of the repo, or with `since`, those written in later revisions.
pub fn blocks_since(
    log: &RepoLog,
    conn: &Connection,
    did: &str,
    since: Option<&str>,
) -> Result<BlockMap, StorageError> {
    let since = since
        .map(|s| Tid::new(s).map(|t| t.to_u64()))
        .transpose()
        .map_err(|e| StorageError::Corrupt(format!("since: {e}")))?;
    get_blocks(log, conn, did, &log.cids_since(did, since))
}

/// A block store for the repo core over one repo's blocks.
pub fn blocks<'a>(log: &'a RepoLog, conn: &'a Connection, did: &'a str) -> LogBlocks<'a> {
    LogBlocks { log, conn, did }
}

/// All repos hosted here with their heads, in DID order after `cursor`.
pub fn list_repos(
    conn: &Connection,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Vec<(String, Head)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT did, commit_cid, data_cid, rev FROM repo_root WHERE (?1 IS NULL OR did > ?1) ORDER BY did LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![cursor, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    rows.map(|row| {
        let (did, c, d, rev) = row?;
        let head = Head {
            commit: cid_from(c)?,
            data: cid_from(d)?,
            rev: Tid::new(rev).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        };
        Ok((did, head))
    })
    .collect()
}

/// Removes everything of a repo (account deletion, or before an import replaces it).
pub fn delete_repo(conn: &Connection, outbox: &mut Outbox, did: &str) -> Result<(), StorageError> {
    for table in ["repo_root", "record", "record_blob"] {
        conn.execute(&format!("DELETE FROM {table} WHERE did = ?1"), [did])?;
    }
    outbox.changes.push(Change::DropRepo {
        did: did.to_owned(),
    });
    Ok(())
}
