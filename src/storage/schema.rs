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
    "#,
    ),
    // 2: what each relay reported at the watchdog's last look (for `atbox status`).
    Step::Sql(
        r#"
    CREATE TABLE relay_status (
        relay           TEXT PRIMARY KEY,
        state           TEXT NOT NULL,           -- ok | lagging | not crawling | unreachable
        detail          TEXT NOT NULL,
        checked_at      INTEGER NOT NULL,        -- unix seconds
        last_crawl_request INTEGER               -- unix seconds
    );
    "#,
    ),
    // 3: whether the account's email address has been confirmed.
    Step::Sql("ALTER TABLE account ADD COLUMN email_confirmed INTEGER NOT NULL DEFAULT 0;"),
    // 4: no time index on the event log: events are in time order already, so the
    // hourly trim finds its cut by sequence number, and each write dirties one page less.
    Step::Sql("DROP INDEX repo_event_time;"),
    // 5: the repo log (see `storage::log`) replaces the block table and the event
    // table: a batch's blocks and events land in a few packed rows instead of one
    // random page per block. No index by CID (that lives in memory), none on
    // record CIDs (a random page per write; reference counts replace its one use),
    // and the record index clustered on its key (one B-tree to change, not two).
    Step::Sql(
        "CREATE TABLE repo_log (
             id          INTEGER PRIMARY KEY,
             written_ms  INTEGER NOT NULL,        -- unix milliseconds
             data        BLOB NOT NULL            -- deflated entries, see storage::log
         );
         CREATE TABLE record_by_key (
             did         TEXT NOT NULL,
             collection  TEXT NOT NULL,
             rkey        TEXT NOT NULL,
             cid         BLOB NOT NULL,
             rev         TEXT NOT NULL,
             indexed_at  TEXT NOT NULL,
             PRIMARY KEY (did, collection, rkey)
         ) WITHOUT ROWID;
         INSERT INTO record_by_key SELECT did, collection, rkey, cid, rev, indexed_at FROM record;
         DROP TABLE record;
         ALTER TABLE record_by_key RENAME TO record;",
    ),
    Step::Rust(super::log::import_legacy_tables),
    Step::Sql("DROP TABLE repo_block; DROP TABLE repo_event;"),
    // 6: OAuth grants (see `storage::oauth`): one row per app signed in to an account,
    // holding the current refresh token's hash and the one it replaced (to catch reuse).
    Step::Sql(
        "CREATE TABLE oauth_grant (
             id                  TEXT PRIMARY KEY,    -- the access tokens' jti
             did                 TEXT NOT NULL,
             client_id           TEXT NOT NULL,
             client_name         TEXT NOT NULL,
             client_auth         TEXT NOT NULL,       -- JSON, see auth::oauth::ClientAuth
             scope               TEXT NOT NULL,
             dpop_jkt            TEXT NOT NULL,
             refresh_hash        BLOB NOT NULL UNIQUE,
             prev_refresh_hash   BLOB,
             created_at          INTEGER NOT NULL,
             used_at             INTEGER NOT NULL,
             refresh_expires_at  INTEGER NOT NULL,
             session_expires_at  INTEGER NOT NULL,
             revoked_at          INTEGER
         );
         CREATE INDEX oauth_grant_did ON oauth_grant (did);
         CREATE INDEX oauth_grant_prev ON oauth_grant (prev_refresh_hash);",
    ),
    // 7: read-after-write asks for an account's records newer than the AppView's rev
    // on every timeline load; revs only grow, so new entries land on the index's
    // rightmost page (one page per batch).
    Step::Sql("CREATE INDEX record_rev ON record (did, rev);"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, Keypair};
    use crate::data::Ipld;
    use crate::repo::writes::{apply_writes, PreparedWrite, Write};
    use crate::repo::BlockMap;
    use crate::storage::log::RepoLog;
    use crate::syntax::{Did, Nsid, RecordKey, Tid};
    use rusqlite::params;

    /// A database made by the layout before the repo log (schema 4), with a real repo
    /// and an event, comes through migration 5 whole: every block readable from the
    /// log, the record index intact, the event replayable with its seq.
    #[test]
    fn blocks_and_events_move_into_the_repo_log() {
        let mut conn = Connection::open_in_memory().unwrap();
        for step in &MIGRATIONS[..4] {
            let Step::Sql(sql) = step else {
                panic!("the first four are SQL")
            };
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();

        let did = "did:web:old.atbox.invalid";
        let writes: Vec<PreparedWrite> = (0..40)
            .map(|i| PreparedWrite {
                write: Write::Create {
                    collection: Nsid::new("app.bsky.feed.post").unwrap(),
                    rkey: RecordKey::new(Tid::from_parts(1_700_000_000_000_000 + i, 0).as_str())
                        .unwrap(),
                    record: Ipld::Map(
                        [
                            (
                                "$type".to_owned(),
                                Ipld::String("app.bsky.feed.post".into()),
                            ),
                            ("text".to_owned(), Ipld::String(format!("old post {i}"))),
                        ]
                        .into(),
                    ),
                },
                swap_record: None,
            })
            .collect();
        let key = Keypair::generate(KeyType::K256);
        let rev = Tid::from_parts(1_700_000_000_000_000, 1);
        let commit = apply_writes(
            &BlockMap::new(),
            &Did::new(did).unwrap(),
            None,
            &writes,
            &key,
            rev.clone(),
        )
        .unwrap();
        for (cid, bytes) in commit.blocks.iter() {
            conn.execute(
                "INSERT INTO repo_block (did, cid, rev, bytes) VALUES (?1, ?2, ?3, ?4)",
                params![did, cid.to_bytes(), rev.as_str(), bytes],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO repo_root (did, commit_cid, data_cid, rev) VALUES (?1, ?2, ?3, ?4)",
            params![
                did,
                commit.commit_cid.to_bytes(),
                commit.data.to_bytes(),
                rev.as_str()
            ],
        )
        .unwrap();
        for op in &commit.ops {
            let (c, r) = op.path.split_once('/').unwrap();
            conn.execute(
                "INSERT INTO record (did, collection, rkey, cid, rev, indexed_at) VALUES (?1, ?2, ?3, ?4, ?5, 'then')",
                params![did, c, r, op.cid.unwrap().to_bytes(), rev.as_str()],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO repo_event (seq, did, kind, event, sequenced_at) VALUES (7, ?1, 'identity', x'a2', 0)",
            [did],
        )
        .unwrap();

        migrate(&mut conn).unwrap();
        let log = RepoLog::load(&conn).unwrap();
        assert_eq!(log.block_count(did), commit.blocks.len());
        for (cid, bytes) in commit.blocks.iter() {
            assert_eq!(log.get(&conn, did, cid).unwrap().as_deref(), Some(bytes));
        }
        assert_eq!(crate::storage::repos::record_count(&conn, did).unwrap(), 40);
        assert_eq!(log.seq_bounds(), Some((7, 7)));
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name IN ('repo_block', 'repo_event')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }
}
