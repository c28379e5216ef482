//! The firehose event log: every repo and account event, sequenced in the same
//! transaction as the change it describes, kept for the backfill window.

use super::writer::Outbox;
use super::StorageError;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;

/// A sequenced event: its number and its complete WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqEvent {
    pub seq: i64,
    pub frame: Vec<u8>,
}

/// The next sequence number (the writer is the only writer, so max + 1 is safe, and a
/// rolled-back job's number is simply reused: no gaps).
pub fn next_seq(conn: &Connection) -> Result<i64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM repo_event")?
        .query_row([], |r| r.get(0))?)
}

/// Stores an event (its frame already carries `seq`) and queues it for publishing.
pub fn append(
    conn: &Connection,
    outbox: &mut Outbox,
    seq: i64,
    did: &str,
    kind: &str,
    frame: Vec<u8>,
    now_ms: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO repo_event (seq, did, kind, event, sequenced_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![seq, did, kind, frame, now_ms])?;
    outbox.events.push(Arc::new(SeqEvent { seq, frame }));
    Ok(())
}

/// Events after `cursor`, oldest first, at most `limit`.
pub fn after(conn: &Connection, cursor: i64, limit: usize) -> Result<Vec<SeqEvent>, StorageError> {
    let mut stmt = conn
        .prepare_cached("SELECT seq, event FROM repo_event WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt.query_map(params![cursor, limit as i64], |r| {
        Ok(SeqEvent {
            seq: r.get(0)?,
            frame: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The oldest and newest sequence numbers still stored.
pub fn bounds(conn: &Connection) -> Result<Option<(i64, i64)>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT MIN(seq), MAX(seq) FROM repo_event")?
        .query_row([], |r| {
            Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
        })
        .optional()?
        .and_then(|(a, b)| Some((a?, b?))))
}

/// Drops events older than `before_ms`, always keeping the newest (so there is a
/// cursor to resume from). Sequence order is time order, so the cut is the first event
/// at or after `before_ms`. Returns how many were dropped.
pub fn trim(conn: &Connection, before_ms: i64) -> Result<usize, StorageError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM repo_event WHERE seq < COALESCE(
                 (SELECT MIN(seq) FROM repo_event WHERE sequenced_at >= ?1),
                 (SELECT MAX(seq) FROM repo_event))",
        )?
        .execute([before_ms])?)
}

/// Drops every event of an account (when the account is deleted).
pub fn delete_for(conn: &Connection, did: &str) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM repo_event WHERE did = ?1")?
        .execute([did])?;
    Ok(())
}
