//! The database schema, as an ordered list of migrations. Each runs once, in one
//! transaction, and bumps `PRAGMA user_version`; a database newer than this binary is
//! refused rather than guessed at.
//!
//! Everything a write changes lives in this one file (repo blocks, roots, the record
//! index, the event log), because SQLite commits across attached databases are not
//! atomic in WAL mode.

use super::StorageError;
use rusqlite::Connection;

/// A migration: SQL, or Rust for what SQL cannot do.
enum Step {
    Sql(&'static str),
    Rust(fn(&Connection) -> Result<(), StorageError>),
}

/// Migrations, oldest first. Never edit one that has shipped: add another.
const MIGRATIONS: &[Step] = &[
    Step::Sql(
    // 1: accounts, sessions, invites, repos, records, blobs, the event log.
    r#"
    CREATE TABLE account (
        did             TEXT PRIMARY KEY,
        handle          TEXT NOT NULL UNIQUE,
        email           TEXT UNIQUE,
        password_hash   TEXT NOT NULL,
        signing_key     BLOB NOT NULL,          -- 32-byte k256 secret; the file is 0600
        created_at      TEXT NOT NULL,
        status          TEXT NOT NULL DEFAULT 'active',  -- active | deactivated | takendown
        status_changed_at TEXT,
        invites_disabled INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE app_password (
        did             TEXT NOT NULL REFERENCES account(did) ON DELETE CASCADE,
        name            TEXT NOT NULL,
        password_hash   TEXT NOT NULL,
        privileged      INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL,
        PRIMARY KEY (did, name)
    );
    CREATE TABLE refresh_token (
        id              TEXT PRIMARY KEY,        -- the JWT's jti
        did             TEXT NOT NULL REFERENCES account(did) ON DELETE CASCADE,
        app_password    TEXT,                    -- the app password's name, if any
        expires_at      INTEGER NOT NULL         -- unix seconds
    );
    CREATE INDEX refresh_token_did ON refresh_token(did);
    CREATE TABLE invite_code (
        code            TEXT PRIMARY KEY,
        available_uses  INTEGER NOT NULL,
        disabled        INTEGER NOT NULL DEFAULT 0,
        for_account     TEXT NOT NULL,           -- did, or 'admin'
        created_by      TEXT NOT NULL,
        created_at      TEXT NOT NULL
    );
    CREATE TABLE invite_use (
        code            TEXT NOT NULL REFERENCES invite_code(code),
        used_by         TEXT NOT NULL,
        used_at         TEXT NOT NULL,
        PRIMARY KEY (code, used_by)
    );
    CREATE TABLE email_token (
        purpose         TEXT NOT NULL,           -- reset_password | delete_account | plc_operation | confirm_email
        did             TEXT NOT NULL REFERENCES account(did) ON DELETE CASCADE,
        token           TEXT NOT NULL,
        requested_at    INTEGER NOT NULL,
        PRIMARY KEY (purpose, did)
    );
    CREATE TABLE repo_root (
        did             TEXT PRIMARY KEY,
        commit_cid      BLOB NOT NULL,
        data_cid        BLOB NOT NULL,
        rev             TEXT NOT NULL
    );
    CREATE TABLE repo_block (
        did             TEXT NOT NULL,
        cid             BLOB NOT NULL,
        rev             TEXT NOT NULL,
        bytes           BLOB NOT NULL,
        PRIMARY KEY (did, cid)
    );
    CREATE INDEX repo_block_rev ON repo_block(did, rev);
    CREATE TABLE record (
        did             TEXT NOT NULL,
        collection      TEXT NOT NULL,
        rkey            TEXT NOT NULL,
        cid             BLOB NOT NULL,
        rev             TEXT NOT NULL,
        indexed_at      TEXT NOT NULL,
        PRIMARY KEY (did, collection, rkey)
    );
    CREATE INDEX record_cid ON record(did, cid);
    CREATE TABLE blob (
        did             TEXT NOT NULL,
        cid             BLOB NOT NULL,
        mime_type       TEXT NOT NULL,
        size            INTEGER NOT NULL,
        created_at      INTEGER NOT NULL,        -- unix seconds; unreferenced blobs expire
        PRIMARY KEY (did, cid)
    );
    CREATE TABLE record_blob (
        did             TEXT NOT NULL,
        record_path     TEXT NOT NULL,           -- collection/rkey
        blob_cid        BLOB NOT NULL,
        rev             TEXT NOT NULL,
        PRIMARY KEY (did, record_path, blob_cid)
    );
    CREATE INDEX record_blob_cid ON record_blob(did, blob_cid);
    CREATE TABLE preference (
        did             TEXT NOT NULL REFERENCES account(did) ON DELETE CASCADE,
        namespace       TEXT NOT NULL,
        value_json      TEXT NOT NULL,
        PRIMARY KEY (did, namespace)
    );
    CREATE TABLE repo_event (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        did             TEXT NOT NULL,
        kind            TEXT NOT NULL,           -- commit | sync | identity | account
        event           BLOB NOT NULL,           -- the frame body, DAG-CBOR
        sequenced_at    INTEGER NOT NULL         -- unix milliseconds
    );
    CREATE INDEX repo_event_time ON repo_event(sequenced_at);
    "#),
    // 2: what each relay reported at the watchdog's last look (for `atbox status`).
    Step::Sql(r#"
    CREATE TABLE relay_status (
        relay           TEXT PRIMARY KEY,
        state           TEXT NOT NULL,           -- ok | lagging | not crawling | unreachable
        detail          TEXT NOT NULL,
        checked_at      INTEGER NOT NULL,        -- unix seconds
        last_crawl_request INTEGER               -- unix seconds
    );
    "#),
    // 3: whether the account's email address has been confirmed.
    Step::Sql("ALTER TABLE account ADD COLUMN email_confirmed INTEGER NOT NULL DEFAULT 0;"),
    // 4: no time index on the event log: events are in time order already, so the
    // hourly trim finds its cut by sequence number, and each write dirties one page less.
    Step::Sql("DROP INDEX repo_event_time;"),
    // 5: the repo log (see `storage::log`) replaces the block table and the event
    // table: a batch's blocks and events land in a few packed rows instead of one
    // random page per block. No index by CID (that lives in memory), none on
    // record CIDs (a random page per write; reference counts replace its one use).
    Step::Sql(
        "CREATE TABLE repo_log (
             id          INTEGER PRIMARY KEY,
             written_ms  INTEGER NOT NULL,        -- unix milliseconds
             data        BLOB NOT NULL            -- entries, see storage::log
         );
         DROP INDEX record_cid;",
    ),
    Step::Rust(super::log::import_legacy_tables),
    Step::Sql("DROP TABLE repo_block; DROP TABLE repo_event;"),
];

/// Brings the schema up to date.
pub fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StorageError::Corrupt(format!(
            "the database has schema version {current}, newer than this atbox understands ({}); upgrade atbox",
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        match step {
            Step::Sql(sql) => tx.execute_batch(sql)?,
            Step::Rust(f) => f(&tx)?,
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
