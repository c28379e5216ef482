//! Repo data in SQLite: blocks, each repo's head, and the record index.
//!
//! The repo core reads blocks through [`SqlBlocks`] (a [`BlockStore`] over a
//! connection) and hands back a [`CommitData`]; [`save_commit`] writes it in the
//! caller's transaction. The record index (`record`) mirrors the MST so listing and
//! lookups need no tree walk; both are updated in the same transaction.

use super::StorageError;
use crate::data::Cid;
use crate::repo::writes::{Action, CommitData, Head};
use crate::repo::{BlockMap, BlockStore, RepoError};
use crate::syntax::Tid;
use rusqlite::{params, Connection, OptionalExtension};

fn cid_from(bytes: Vec<u8>) -> Result<Cid, StorageError> {
    Cid::try_from(bytes).map_err(|e| StorageError::Corrupt(format!("stored CID: {e}")))
}

/// Blocks of one repo, read through a connection (inside or outside a transaction).
pub struct SqlBlocks<'c> {
    pub conn: &'c Connection,
    pub did: &'c str,
}

impl BlockStore for SqlBlocks<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT bytes FROM repo_block WHERE did = ?1 AND cid = ?2")
            .map_err(|e| RepoError::Storage(e.to_string()))?;
        stmt.query_row(params![self.did, cid.to_bytes()], |r| r.get(0))
            .optional()
            .map_err(|e| RepoError::Storage(e.to_string()))
    }
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

/// Persists a commit: new blocks, dropped nodes and records, the head, the index.
/// `expected` is the head the commit was built on (compare-and-set).
pub fn save_commit(
    conn: &Connection,
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
    {
        let mut put = conn.prepare_cached(
            "INSERT OR IGNORE INTO repo_block (did, cid, rev, bytes) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for (cid, bytes) in commit.blocks.iter() {
            put.execute(params![did, cid.to_bytes(), rev, bytes])?;
        }
        let mut drop = conn.prepare_cached("DELETE FROM repo_block WHERE did = ?1 AND cid = ?2")?;
        for cid in &commit.removed_nodes {
            drop.execute(params![did, cid.to_bytes()])?;
        }
        if let Some(old) = current {
            drop.execute(params![did, old.commit.to_bytes()])?;
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
        // The replaced record's block goes unless another key still points at it.
        if let Some(prev) = op.prev.filter(|p| Some(*p) != op.cid) {
            let still_used: bool = conn
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM record WHERE did = ?1 AND cid = ?2)")?
                .query_row(params![did, prev.to_bytes()], |r| r.get(0))?;
            if !still_used {
                conn.prepare_cached("DELETE FROM repo_block WHERE did = ?1 AND cid = ?2")?
                    .execute(params![did, prev.to_bytes()])?;
            }
        }
    }
    Ok(())
}

/// A record as stored: its CID and DAG-CBOR bytes.
pub fn get_record(
    conn: &Connection,
    did: &str,
    collection: &str,
    rkey: &str,
) -> Result<Option<(Cid, Vec<u8>)>, StorageError> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT r.cid, b.bytes FROM record r JOIN repo_block b ON b.did = r.did AND b.cid = r.cid
             WHERE r.did = ?1 AND r.collection = ?2 AND r.rkey = ?3",
        )?
        .query_row(params![did, collection, rkey], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.map(|(c, b)| Ok((cid_from(c)?, b))).transpose()
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
    conn: &Connection,
    did: &str,
    collection: &str,
    limit: usize,
    cursor: Option<&str>,
    reverse: bool,
) -> Result<Vec<(String, Cid, Vec<u8>)>, StorageError> {
    let sql = if reverse {
        "SELECT r.rkey, r.cid, b.bytes FROM record r JOIN repo_block b ON b.did = r.did AND b.cid = r.cid
         WHERE r.did = ?1 AND r.collection = ?2 AND (?3 IS NULL OR r.rkey > ?3) ORDER BY r.rkey ASC LIMIT ?4"
    } else {
        "SELECT r.rkey, r.cid, b.bytes FROM record r JOIN repo_block b ON b.did = r.did AND b.cid = r.cid
         WHERE r.did = ?1 AND r.collection = ?2 AND (?3 IS NULL OR r.rkey < ?3) ORDER BY r.rkey DESC LIMIT ?4"
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params![did, collection, cursor, limit as i64], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (rkey, cid, bytes) = row?;
        Ok((rkey, cid_from(cid)?, bytes))
    })
    .collect()
}

/// The collections a repo has records in.
pub fn collections(conn: &Connection, did: &str) -> Result<Vec<String>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT collection FROM record WHERE did = ?1 ORDER BY collection",
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
pub fn get_blocks(conn: &Connection, did: &str, cids: &[Cid]) -> Result<BlockMap, StorageError> {
    let store = SqlBlocks { conn, did };
    let mut out = BlockMap::new();
    for cid in cids {
        if let Some(b) = store
            .get_block(cid)
            .map_err(|e| StorageError::Sqlite(e.to_string()))?
        {
            out.insert(*cid, b);
        }
    }
    Ok(out)
}

/// Every block of the repo, or with `since`, those written in later revisions.
pub fn blocks_since(
    conn: &Connection,
    did: &str,
    since: Option<&str>,
) -> Result<BlockMap, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT cid, bytes FROM repo_block WHERE did = ?1 AND (?2 IS NULL OR rev > ?2)",
    )?;
    let rows = stmt.query_map(params![did, since], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = BlockMap::new();
    for row in rows {
        let (cid, bytes) = row?;
        out.insert(cid_from(cid)?, bytes);
    }
    Ok(out)
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

/// Removes everything of a repo (account deletion).
pub fn delete_repo(conn: &Connection, did: &str) -> Result<(), StorageError> {
    for table in ["repo_block", "repo_root", "record", "record_blob"] {
        conn.execute(&format!("DELETE FROM {table} WHERE did = ?1"), [did])?;
    }
    Ok(())
}
