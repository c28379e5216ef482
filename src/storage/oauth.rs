//! OAuth grants: one row per app an account signed in to. A grant holds the SHA-256 of
//! its current refresh token and of the one that token replaced: a refresh is one small
//! UPDATE (the SD card sees one page per refresh), and a replayed old refresh token is
//! recognised, so the grant can be revoked (the token was stolen, or the app is
//! confused; either way it stops). Revoked and expired rows are kept a little while
//! (so restarts remember revocations) and then deleted by [`delete_expired`].

use super::StorageError;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// One signed-in app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: String,
    pub did: String,
    pub client_id: String,
    pub client_name: String,
    /// JSON of `auth::oauth::ClientAuth`.
    pub client_auth: String,
    pub scope: String,
    pub dpop_jkt: String,
    pub created_at: i64,
    pub used_at: i64,
    pub refresh_expires_at: i64,
    pub session_expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// How a presented refresh token matched a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshMatch {
    /// The grant's current refresh token.
    Current(Grant),
    /// The one it replaced: a replay.
    Replaced(Grant),
}

const COLUMNS: &str = "id, did, client_id, client_name, client_auth, scope, dpop_jkt, \
    created_at, used_at, refresh_expires_at, session_expires_at, revoked_at";

fn grant(r: &Row) -> rusqlite::Result<Grant> {
    Ok(Grant {
        id: r.get(0)?,
        did: r.get(1)?,
        client_id: r.get(2)?,
        client_name: r.get(3)?,
        client_auth: r.get(4)?,
        scope: r.get(5)?,
        dpop_jkt: r.get(6)?,
        created_at: r.get(7)?,
        used_at: r.get(8)?,
        refresh_expires_at: r.get(9)?,
        session_expires_at: r.get(10)?,
        revoked_at: r.get(11)?,
    })
}

pub fn insert_grant(conn: &Connection, g: &Grant, refresh_hash: &[u8]) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO oauth_grant (id, did, client_id, client_name, client_auth, scope, dpop_jkt, \
         refresh_hash, created_at, used_at, refresh_expires_at, session_expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        g.id,
        g.did,
        g.client_id,
        g.client_name,
        g.client_auth,
        g.scope,
        g.dpop_jkt,
        refresh_hash,
        g.created_at,
        g.used_at,
        g.refresh_expires_at,
        g.session_expires_at
    ])?;
    Ok(())
}

/// The grant a refresh token belongs to, if any.
pub fn by_refresh(conn: &Connection, hash: &[u8]) -> Result<Option<RefreshMatch>, StorageError> {
    let current = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_grant WHERE refresh_hash = ?1"
        ))?
        .query_row([hash], grant)
        .optional()?;
    if let Some(g) = current {
        return Ok(Some(RefreshMatch::Current(g)));
    }
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_grant WHERE prev_refresh_hash = ?1"
        ))?
        .query_row([hash], grant)
        .optional()?
        .map(RefreshMatch::Replaced))
}

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<Grant>, StorageError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM oauth_grant WHERE id = ?1"))?
        .query_row([id], grant)
        .optional()?)
}

/// Replaces the refresh token of a live grant, if `old_hash` is still its current one
/// (two refreshes racing: one wins). Returns whether it did.
pub fn rotate_refresh(
    conn: &Connection,
    id: &str,
    old_hash: &[u8],
    new_hash: &[u8],
    now: i64,
    refresh_expires_at: i64,
) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached(
            "UPDATE oauth_grant SET prev_refresh_hash = refresh_hash, refresh_hash = ?3, \
             used_at = ?4, refresh_expires_at = ?5 \
             WHERE id = ?1 AND refresh_hash = ?2 AND revoked_at IS NULL",
        )?
        .execute(params![id, old_hash, new_hash, now, refresh_expires_at])?
        > 0)
}

/// Revokes one grant; returns whether it was live.
pub fn revoke(conn: &Connection, id: &str, now: i64) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached(
            "UPDATE oauth_grant SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![id, now])?
        > 0)
}

/// Revokes every grant of an account (password change, account deletion); returns
/// their ids.
pub fn revoke_all(conn: &Connection, did: &str, now: i64) -> Result<Vec<String>, StorageError> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM oauth_grant WHERE did = ?1 AND revoked_at IS NULL")?
        .query_map([did], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    conn.prepare_cached(
        "UPDATE oauth_grant SET revoked_at = ?2 WHERE did = ?1 AND revoked_at IS NULL",
    )?
    .execute(params![did, now])?;
    Ok(ids)
}

/// The live grants of an account, newest first (the account page's "apps").
pub fn live_for(conn: &Connection, did: &str, now: i64) -> Result<Vec<Grant>, StorageError> {
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM oauth_grant WHERE did = ?1 AND revoked_at IS NULL \
             AND refresh_expires_at > ?2 AND session_expires_at > ?2 ORDER BY created_at DESC"
        ))?
        .query_map(params![did, now], grant)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Grants revoked since `since` (loaded at start, so revocations survive restarts).
pub fn revoked_since(conn: &Connection, since: i64) -> Result<Vec<(String, i64)>, StorageError> {
    let rows = conn
        .prepare_cached("SELECT id, revoked_at FROM oauth_grant WHERE revoked_at >= ?1")?
        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes grants that ended before `before` (expired or revoked).
pub fn delete_expired(conn: &Connection, before: i64) -> Result<usize, StorageError> {
    Ok(conn
        .prepare_cached(
            "DELETE FROM oauth_grant WHERE revoked_at < ?1 OR refresh_expires_at < ?1 \
             OR session_expires_at < ?1",
        )?
        .execute([before])?)
}
