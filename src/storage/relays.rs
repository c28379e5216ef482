//! The relay watchdog's findings, kept so `atbox status` (another process) can show them.

use super::StorageError;
use rusqlite::{params, Connection};

/// One relay's state at the last check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayStatus {
    pub relay: String,
    pub state: String,
    pub detail: String,
    pub checked_at: i64,
    pub last_crawl_request: Option<i64>,
}

pub fn put(conn: &Connection, s: &RelayStatus) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO relay_status (relay, state, detail, checked_at, last_crawl_request) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (relay) DO UPDATE SET state = ?2, detail = ?3, checked_at = ?4, last_crawl_request = ?5",
    )?
    .execute(params![s.relay, s.state, s.detail, s.checked_at, s.last_crawl_request])?;
    Ok(())
}

pub fn get(conn: &Connection, relay: &str) -> Result<Option<RelayStatus>, StorageError> {
    Ok(all(conn)?.into_iter().find(|s| s.relay == relay))
}

pub fn all(conn: &Connection) -> Result<Vec<RelayStatus>, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT relay, state, detail, checked_at, last_crawl_request FROM relay_status ORDER BY relay")?;
    let rows = stmt.query_map([], |r| {
        Ok(RelayStatus {
            relay: r.get(0)?,
            state: r.get(1)?,
            detail: r.get(2)?,
            checked_at: r.get(3)?,
            last_crawl_request: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
