//! Accounts and everything attached to them: app passwords, refresh tokens, invite
//! codes, one-time tokens and preferences.

use super::StorageError;
use rusqlite::{params, Connection, OptionalExtension, Row};

/// An account row.
#[derive(Debug, Clone)]
pub struct Account {
    pub did: String,
    pub handle: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub signing_key: Vec<u8>,
    pub created_at: String,
    pub status: AccountStatus,
    pub email_confirmed: bool,
}

/// Whether an account is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Deactivated,
    Takendown,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Deactivated => "deactivated",
            AccountStatus::Takendown => "takendown",
        }
    }
    fn parse(s: &str) -> AccountStatus {
        match s {
            "deactivated" => AccountStatus::Deactivated,
            "takendown" => AccountStatus::Takendown,
            _ => AccountStatus::Active,
        }
    }
}

const ACCOUNT_COLUMNS: &str =
    "did, handle, email, password_hash, signing_key, created_at, status, email_confirmed";

fn account_from(r: &Row) -> rusqlite::Result<Account> {
    Ok(Account {
        did: r.get(0)?,
        handle: r.get(1)?,
        email: r.get(2)?,
        password_hash: r.get(3)?,
        signing_key: r.get(4)?,
        created_at: r.get(5)?,
        status: AccountStatus::parse(&r.get::<_, String>(6)?),
        email_confirmed: r.get(7)?,
    })
}

pub fn insert_account(conn: &Connection, a: &Account) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO account (did, handle, email, password_hash, signing_key, created_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        a.did,
        a.handle,
        a.email,
        a.password_hash,
        a.signing_key,
        a.created_at,
        a.status.as_str()
    ])?;
    Ok(())
}

pub fn by_did(conn: &Connection, did: &str) -> Result<Option<Account>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM account WHERE did = ?1"
        ))?
        .query_row([did], account_from)
        .optional()?)
}

pub fn by_handle(conn: &Connection, handle: &str) -> Result<Option<Account>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM account WHERE handle = ?1"
        ))?
        .query_row([handle.to_ascii_lowercase()], account_from)
        .optional()?)
}

pub fn by_email(conn: &Connection, email: &str) -> Result<Option<Account>, StorageError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM account WHERE email = ?1"
        ))?
        .query_row([email.to_ascii_lowercase()], account_from)
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<Account>, StorageError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM account ORDER BY created_at"
    ))?;
    let rows = stmt.query_map([], account_from)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn count(conn: &Connection) -> Result<u64, StorageError> {
    Ok(conn.query_row("SELECT COUNT(*) FROM account", [], |r| r.get::<_, i64>(0))? as u64)
}

pub fn set_handle(conn: &Connection, did: &str, handle: &str) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE account SET handle = ?2 WHERE did = ?1")?
        .execute(params![did, handle])?;
    Ok(())
}

/// Sets the email address (unconfirmed until confirmEmail).
pub fn set_email(conn: &Connection, did: &str, email: Option<&str>) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE account SET email = ?2, email_confirmed = 0 WHERE did = ?1")?
        .execute(params![did, email])?;
    Ok(())
}

pub fn set_email_confirmed(conn: &Connection, did: &str) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE account SET email_confirmed = 1 WHERE did = ?1")?
        .execute([did])?;
    Ok(())
}

pub fn set_password(conn: &Connection, did: &str, hash: &str) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE account SET password_hash = ?2 WHERE did = ?1")?
        .execute(params![did, hash])?;
    Ok(())
}

pub fn set_status(
    conn: &Connection,
    did: &str,
    status: AccountStatus,
    at: &str,
) -> Result<(), StorageError> {
    conn.prepare_cached("UPDATE account SET status = ?2, status_changed_at = ?3 WHERE did = ?1")?
        .execute(params![did, status.as_str(), at])?;
    Ok(())
}

pub fn delete_account(conn: &Connection, did: &str) -> Result<(), StorageError> {
    conn.execute("DELETE FROM account WHERE did = ?1", [did])?;
    Ok(())
}

// --- app passwords ---

/// An app password's name, hash and whether it may act on privileged endpoints.
#[derive(Debug, Clone)]
pub struct AppPassword {
    pub name: String,
    pub password_hash: String,
    pub privileged: bool,
    pub created_at: String,
}

pub fn insert_app_password(
    conn: &Connection,
    did: &str,
    p: &AppPassword,
) -> Result<(), StorageError> {
    conn.prepare_cached("INSERT INTO app_password (did, name, password_hash, privileged, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![did, p.name, p.password_hash, p.privileged, p.created_at])?;
    Ok(())
}

pub fn app_passwords(conn: &Connection, did: &str) -> Result<Vec<AppPassword>, StorageError> {
    let mut stmt =
        conn.prepare_cached("SELECT name, password_hash, privileged, created_at FROM app_password WHERE did = ?1 ORDER BY created_at")?;
    let rows = stmt.query_map([did], |r| {
        Ok(AppPassword {
            name: r.get(0)?,
            password_hash: r.get(1)?,
            privileged: r.get(2)?,
            created_at: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_app_password(conn: &Connection, did: &str, name: &str) -> Result<bool, StorageError> {
    conn.prepare_cached("DELETE FROM refresh_token WHERE did = ?1 AND app_password = ?2")?
        .execute(params![did, name])?;
    Ok(conn
        .prepare_cached("DELETE FROM app_password WHERE did = ?1 AND name = ?2")?
        .execute(params![did, name])?
        > 0)
}

// --- refresh tokens ---

pub fn insert_refresh_token(
    conn: &Connection,
    id: &str,
    did: &str,
    app_password: Option<&str>,
    expires_at: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO refresh_token (id, did, app_password, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, did, app_password, expires_at])?;
    Ok(())
}

/// Removes a refresh token; returns whether it existed (and so was still valid).
pub fn take_refresh_token(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn
        .prepare_cached("DELETE FROM refresh_token WHERE id = ?1")?
        .execute([id])?
        > 0)
}

/// A live refresh token of `did`: `Some(app password name, if any)`, or `None` if it
/// was used, revoked or never issued.
pub fn refresh_token(
    conn: &Connection,
    id: &str,
    did: &str,
) -> Result<Option<Option<String>>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT app_password FROM refresh_token WHERE id = ?1 AND did = ?2")?
        .query_row([id, did], |r| r.get(0))
        .optional()?)
}

/// A live login session (a refresh token) as the account page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// The refresh token's `jti`.
    pub id: String,
    /// The app password it signed in with, if any.
    pub app_password: Option<String>,
    pub expires_at: i64,
}

/// `did`'s live login sessions, the longest-lived first.
pub fn refresh_tokens(
    conn: &Connection,
    did: &str,
    now: i64,
) -> Result<Vec<LoginSession>, StorageError> {
    let rows = conn
        .prepare_cached(
            "SELECT id, app_password, expires_at FROM refresh_token \
             WHERE did = ?1 AND expires_at >= ?2 ORDER BY expires_at DESC",
        )?
        .query_map(params![did, now], |r| {
            Ok(LoginSession {
                id: r.get(0)?,
                app_password: r.get(1)?,
                expires_at: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Forgets refresh tokens past their expiry and one-time codes older than `codes_before`.
pub fn delete_expired_tokens(
    conn: &Connection,
    now: i64,
    codes_before: i64,
) -> Result<usize, StorageError> {
    let a = conn
        .prepare_cached("DELETE FROM refresh_token WHERE expires_at < ?1")?
        .execute([now])?;
    let b = conn
        .prepare_cached("DELETE FROM email_token WHERE requested_at < ?1")?
        .execute([codes_before])?;
    Ok(a + b)
}

pub fn delete_refresh_tokens(conn: &Connection, did: &str) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM refresh_token WHERE did = ?1")?
        .execute([did])?;
    Ok(())
}

// --- invite codes ---

/// An invite code and who has used it.
#[derive(Debug, Clone)]
pub struct InviteCode {
    pub code: String,
    pub available: i64,
    pub disabled: bool,
    pub for_account: String,
    pub created_by: String,
    pub created_at: String,
    pub uses: Vec<(String, String)>,
}

pub fn insert_invite(
    conn: &Connection,
    code: &str,
    uses: i64,
    for_account: &str,
    created_by: &str,
    at: &str,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO invite_code (code, available_uses, for_account, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![code, uses, for_account, created_by, at])?;
    Ok(())
}

pub fn invite(conn: &Connection, code: &str) -> Result<Option<InviteCode>, StorageError> {
    let row = conn
        .prepare_cached("SELECT code, available_uses, disabled, for_account, created_by, created_at FROM invite_code WHERE code = ?1")?
        .query_row([code], |r| {
            Ok(InviteCode {
                code: r.get(0)?,
                available: r.get(1)?,
                disabled: r.get(2)?,
                for_account: r.get(3)?,
                created_by: r.get(4)?,
                created_at: r.get(5)?,
                uses: Vec::new(),
            })
        })
        .optional()?;
    row.map(|mut c| {
        c.uses = invite_uses(conn, &c.code)?;
        Ok(c)
    })
    .transpose()
}

fn invite_uses(conn: &Connection, code: &str) -> Result<Vec<(String, String)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT used_by, used_at FROM invite_use WHERE code = ?1 ORDER BY used_at",
    )?;
    let rows = stmt.query_map([code], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn invites_for(conn: &Connection, for_account: &str) -> Result<Vec<InviteCode>, StorageError> {
    let codes: Vec<String> = {
        let mut stmt = conn.prepare_cached(
            "SELECT code FROM invite_code WHERE for_account = ?1 ORDER BY created_at",
        )?;
        let rows = stmt.query_map([for_account], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    codes
        .iter()
        .filter_map(|c| invite(conn, c).transpose())
        .collect()
}

/// Every invite code.
pub fn all_invites(conn: &Connection) -> Result<Vec<InviteCode>, StorageError> {
    let codes: Vec<String> = {
        let mut stmt =
            conn.prepare_cached("SELECT code FROM invite_code ORDER BY created_at DESC")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    codes
        .iter()
        .filter_map(|c| invite(conn, c).transpose())
        .collect()
}

/// Disables the named codes and every code of the named accounts.
pub fn disable_invites(
    conn: &Connection,
    codes: &[String],
    accounts: &[String],
) -> Result<(), StorageError> {
    let mut by_code = conn.prepare_cached("UPDATE invite_code SET disabled = 1 WHERE code = ?1")?;
    for c in codes {
        by_code.execute([c])?;
    }
    let mut by_account =
        conn.prepare_cached("UPDATE invite_code SET disabled = 1 WHERE for_account = ?1")?;
    for a in accounts {
        by_account.execute([a])?;
    }
    Ok(())
}

pub fn use_invite(
    conn: &Connection,
    code: &str,
    used_by: &str,
    at: &str,
) -> Result<(), StorageError> {
    conn.prepare_cached("INSERT INTO invite_use (code, used_by, used_at) VALUES (?1, ?2, ?3)")?
        .execute(params![code, used_by, at])?;
    Ok(())
}

// --- one-time tokens (where the reference sends an email) ---

pub fn put_token(
    conn: &Connection,
    purpose: &str,
    did: &str,
    token: &str,
    now: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO email_token (purpose, did, token, requested_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (purpose, did) DO UPDATE SET token = ?3, requested_at = ?4",
    )?
    .execute(params![purpose, did, token, now])?;
    Ok(())
}

/// The pending token for `purpose` and `did`: `(token, requested_at)`.
pub fn get_token(
    conn: &Connection,
    purpose: &str,
    did: &str,
) -> Result<Option<(String, i64)>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT token, requested_at FROM email_token WHERE purpose = ?1 AND did = ?2",
        )?
        .query_row(params![purpose, did], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

/// Finds the account a token was issued to (for flows that only carry the token).
pub fn token_owner(
    conn: &Connection,
    purpose: &str,
    token: &str,
) -> Result<Option<(String, i64)>, StorageError> {
    Ok(conn
        .prepare_cached(
            "SELECT did, requested_at FROM email_token WHERE purpose = ?1 AND token = ?2",
        )?
        .query_row(params![purpose, token], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub fn delete_token(conn: &Connection, purpose: &str, did: &str) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM email_token WHERE purpose = ?1 AND did = ?2")?
        .execute(params![purpose, did])?;
    Ok(())
}

/// All pending tokens, for the admin CLI: `(purpose, did, token, requested_at)`.
pub fn pending_tokens(
    conn: &Connection,
) -> Result<Vec<(String, String, String, i64)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT purpose, did, token, requested_at FROM email_token ORDER BY requested_at",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// --- preferences ---

pub fn preferences(conn: &Connection, did: &str) -> Result<Vec<(String, String)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT namespace, value_json FROM preference WHERE did = ?1 ORDER BY namespace",
    )?;
    let rows = stmt.query_map([did], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn put_preferences(
    conn: &Connection,
    did: &str,
    prefs: &[(String, String)],
) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM preference WHERE did = ?1")?
        .execute([did])?;
    let mut put = conn.prepare_cached(
        "INSERT INTO preference (did, namespace, value_json) VALUES (?1, ?2, ?3)",
    )?;
    for (ns, v) in prefs {
        put.execute(params![did, ns, v])?;
    }
    Ok(())
}
