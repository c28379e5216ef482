//! The SQL side of backups (the `backup` module does the rest): a consistent picture of
//! the database taken without writing to the card, and a database put back from one.
//!
//! A [`Picture`] is one read transaction on the database file (WAL: it never blocks the
//! writer). Inside it, every table but the repo log is copied into an in-memory
//! database with the same schema and `user_version` — the "small tables" — and the repo
//! log's rows are listed by `(id, written_ms)` and read one by one on demand, so a
//! backup ships only rows it has not shipped before, and never holds the log in memory.
//! A row's `(id, written_ms)` names its content: rows are never changed in place, and
//! an id reused after its row was deleted comes with a later `written_ms`.
//!
//! Restoring writes the picture's database image as the new database file, takes the
//! files that travelled inside it out (`backup_file`), and inserts the log rows back.
//! Opening the result with [`Storage::open`](super::Storage::open) migrates an older
//! picture's schema like any old database.

use super::StorageError;
use crate::data::Cid;
use rusqlite::{params, Connection, MAIN_DB};
use std::path::Path;

/// Tables whose rows a picture leaves out: the repo log (listed and read on demand);
/// the record index and the records' blob references (they change with every write and
/// grow with the repo, and each repo says them again: a restore rebuilds them with
/// [`index_restored`]); the relay watchdog's notes (a restored box checks again).
const NOT_COPIED: [&str; 4] = ["repo_log", "record", "record_blob", "relay_status"];

/// A record of a restored repo, for its index.
#[derive(Debug, Clone)]
pub struct RestoredRecord {
    /// `collection/rkey`.
    pub path: String,
    pub cid: Cid,
    /// The revision that wrote it.
    pub rev: String,
    /// The blobs it refers to.
    pub blobs: Vec<Cid>,
}

/// Rebuilds a restored repo's record index and blob references.
pub fn index_restored(
    conn: &Connection,
    did: &str,
    records: &[RestoredRecord],
) -> Result<(), StorageError> {
    let now = crate::syntax::Datetime::now().to_string();
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO record (did, collection, rkey, cid, rev, indexed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in records {
        let (collection, rkey) = r
            .path
            .split_once('/')
            .ok_or_else(|| StorageError::Corrupt(format!("record path {:?}", r.path)))?;
        insert.execute(params![did, collection, rkey, r.cid.to_bytes(), r.rev, now])?;
        super::blobs::set_record_blobs(conn, did, &r.path, &r.blobs, &r.rev)?;
    }
    Ok(())
}

/// A row of the repo log, named by what identifies its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowName {
    pub id: i64,
    pub written_ms: i64,
}

/// A file of the data directory that travels inside the picture (secrets, settings).
pub struct CarriedFile {
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    pub mode: u32,
    pub bytes: Vec<u8>,
}

/// A repo's head, as the picture has it.
#[derive(Debug, Clone)]
pub struct PictureHead {
    pub did: String,
    pub handle: String,
    pub commit: Cid,
    pub rev: String,
}

/// The database at one moment: the small tables in memory, the log's rows by name.
pub struct Picture {
    /// In-memory database holding the copy; the real file is attached as `src`, inside
    /// an open read transaction.
    conn: Connection,
    rows: Vec<RowName>,
    /// The real database is still attached, in the picture's read transaction.
    attached: bool,
}

impl Picture {
    /// Takes the picture of the database at `db_path`.
    pub fn take(db_path: &Path) -> Result<Picture, StorageError> {
        // ATTACH would make an empty database where none is: not in a backup.
        if !db_path.is_file() {
            return Err(StorageError::Io(format!(
                "no database at {}",
                db_path.display()
            )));
        }
        let conn = Connection::open_in_memory()?;
        conn.execute("ATTACH DATABASE ?1 AS src", [db_path.to_string_lossy()])?;
        conn.execute_batch("BEGIN")?;
        let version: i64 = conn.query_row("PRAGMA src.user_version", [], |r| r.get(0))?;
        conn.pragma_update(None, "user_version", version)?;
        let schema: Vec<(String, String, String)> = {
            let mut stmt = conn.prepare(
                "SELECT type, name, sql FROM src.sqlite_master
                 WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
                 ORDER BY type = 'table' DESC, rowid",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        for (kind, name, sql) in &schema {
            conn.execute_batch(sql)?;
            if kind == "table" && !NOT_COPIED.contains(&name.as_str()) {
                conn.execute(
                    &format!("INSERT INTO main.\"{name}\" SELECT * FROM src.\"{name}\""),
                    [],
                )?;
            }
        }
        // AUTOINCREMENT counters, for the tables that still use them (a table dropped by
        // a migration may have left its counter behind).
        let has_sequence: bool = conn.query_row(
            "SELECT count(*) = 2 FROM (
                SELECT 1 FROM src.sqlite_master WHERE name = 'sqlite_sequence'
                UNION ALL SELECT 1 FROM main.sqlite_master WHERE name = 'sqlite_sequence')",
            [],
            |r| r.get(0),
        )?;
        if has_sequence {
            conn.execute(
                "INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence
                 WHERE name IN (SELECT name FROM main.sqlite_master WHERE type = 'table')",
                [],
            )?;
        }
        conn.execute_batch(
            "CREATE TABLE main.backup_file (path TEXT PRIMARY KEY, mode INTEGER NOT NULL, bytes BLOB NOT NULL)",
        )?;
        let rows = {
            let mut stmt = conn.prepare("SELECT id, written_ms FROM src.repo_log ORDER BY id")?;
            let rows = stmt.query_map([], |r| {
                Ok(RowName {
                    id: r.get(0)?,
                    written_ms: r.get(1)?,
                })
            })?;
            rows.collect::<Result<_, _>>()?
        };
        Ok(Picture {
            conn,
            rows,
            attached: true,
        })
    }

    /// Every row of the repo log at this moment, by id.
    pub fn rows(&self) -> &[RowName] {
        &self.rows
    }

    /// A row as stored (deflated), or `None` if it is not in the picture.
    pub fn row_data(&self, row: RowName) -> Result<Option<Vec<u8>>, StorageError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT data FROM src.repo_log WHERE id = ?1 AND written_ms = ?2")?;
        let mut rows = stmt.query(params![row.id, row.written_ms])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    }

    /// Every blob on record: `(did, cid)`.
    pub fn blobs(&self) -> Result<Vec<(String, Cid)>, StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT did, cid FROM main.blob ORDER BY did, cid")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        rows.map(|r| {
            let (did, cid) = r?;
            let cid = Cid::try_from(cid.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("blob CID of {did}: {e}")))?;
            Ok((did, cid))
        })
        .collect()
    }

    /// Whether a record refers to the blob (a file missing for it is then damage); asks
    /// the database as pictured, so only before [`Picture::release_source`].
    pub fn blob_referenced(&self, did: &str, cid: &Cid) -> Result<bool, StorageError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM src.record_blob WHERE did = ?1 AND blob_cid = ?2",
            params![did, cid.to_bytes()],
            |r| r.get::<_, i64>(0),
        )? > 0)
    }

    /// Ends the read transaction on the real database and lets go of it: what is left
    /// (the small tables, in memory) no longer holds back the WAL's checkpoints, so a
    /// long run (a first backup of many blobs) costs the box nothing meanwhile. The
    /// log's rows cannot be read after this.
    pub fn release_source(&mut self) -> Result<(), StorageError> {
        if self.attached {
            self.conn.execute_batch("COMMIT; DETACH DATABASE src")?;
            self.attached = false;
        }
        Ok(())
    }

    /// Leaves a blob out (its file went, with its last reference, after the picture).
    pub fn forget_blob(&self, did: &str, cid: &Cid) -> Result<(), StorageError> {
        self.conn.execute(
            "DELETE FROM main.blob WHERE did = ?1 AND cid = ?2",
            params![did, cid.to_bytes()],
        )?;
        Ok(())
    }

    /// The repos' heads with their accounts' handles.
    pub fn heads(&self) -> Result<Vec<PictureHead>, StorageError> {
        let mut stmt = self.conn.prepare(
            "SELECT r.did, a.handle, r.commit_cid, r.rev FROM main.repo_root r
             JOIN main.account a ON a.did = r.did ORDER BY r.did",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        rows.map(|r| {
            let (did, handle, commit, rev) = r?;
            let commit = Cid::try_from(commit.as_slice())
                .map_err(|e| StorageError::Corrupt(format!("head of {did}: {e}")))?;
            Ok(PictureHead {
                did,
                handle,
                commit,
                rev,
            })
        })
        .collect()
    }

    /// Adds a file of the data directory to the picture.
    pub fn carry(&self, file: &CarriedFile) -> Result<(), StorageError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO main.backup_file (path, mode, bytes) VALUES (?1, ?2, ?3)",
            params![file.path, file.mode, file.bytes],
        )?;
        Ok(())
    }

    /// Ends the read transaction and returns the small tables as a database image.
    pub fn finish(mut self) -> Result<Vec<u8>, StorageError> {
        self.release_source()?;
        let image = self.conn.serialize(MAIN_DB)?;
        Ok(image.to_vec())
    }
}

/// Writes a picture's database `image` as the database file `db_path` (which must not
/// exist), and returns the files that travelled inside it.
pub fn restore_database(db_path: &Path, image: &[u8]) -> Result<Vec<CarriedFile>, StorageError> {
    if db_path.exists() {
        return Err(StorageError::Io(format!(
            "{} exists already: restore into a fresh data directory",
            db_path.display()
        )));
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(db_path)?;
        f.write_all(image)?;
        f.sync_all()?;
    }
    let conn = Connection::open(db_path)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StorageError::Corrupt(format!(
            "the backed-up database does not check out: {check}"
        )));
    }
    let files = {
        let mut stmt = conn.prepare("SELECT path, mode, bytes FROM backup_file ORDER BY path")?;
        let rows = stmt.query_map([], |r| {
            Ok(CarriedFile {
                path: r.get(0)?,
                mode: r.get(1)?,
                bytes: r.get(2)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    conn.execute_batch("DROP TABLE backup_file; PRAGMA journal_mode = WAL;")?;
    Ok(files)
}

/// Puts repo-log rows back (a restore), in one transaction.
pub fn insert_rows(
    db_path: &Path,
    rows: impl IntoIterator<Item = (RowName, Vec<u8>)>,
) -> Result<u64, StorageError> {
    let mut conn = Connection::open(db_path)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let tx = conn.transaction()?;
    let mut n = 0;
    {
        let mut stmt =
            tx.prepare("INSERT INTO repo_log (id, written_ms, data) VALUES (?1, ?2, ?3)")?;
        for (name, data) in rows {
            stmt.execute(params![name.id, name.written_ms, data])?;
            n += 1;
        }
    }
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_restores_to_the_same_tables_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.sqlite");
        let conn = Connection::open(&src).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA user_version = 7;
             CREATE TABLE repo_log (id INTEGER PRIMARY KEY, written_ms INTEGER NOT NULL, data BLOB NOT NULL);
             CREATE TABLE account (did TEXT PRIMARY KEY, handle TEXT NOT NULL);
             CREATE INDEX account_handle ON account (handle);
             INSERT INTO account VALUES ('did:plc:a', 'a.test');
             INSERT INTO repo_log VALUES (1, 10, x'01'), (3, 30, x'0303');",
        )
        .unwrap();
        let picture = Picture::take(&src).unwrap();
        // A write after the picture is not in it.
        conn.execute("INSERT INTO repo_log VALUES (4, 40, x'04')", [])
            .unwrap();
        assert_eq!(
            picture.rows(),
            &[
                RowName {
                    id: 1,
                    written_ms: 10
                },
                RowName {
                    id: 3,
                    written_ms: 30
                }
            ]
        );
        assert_eq!(
            picture
                .row_data(RowName {
                    id: 3,
                    written_ms: 30
                })
                .unwrap(),
            Some(vec![3, 3])
        );
        assert_eq!(
            picture
                .row_data(RowName {
                    id: 3,
                    written_ms: 31
                })
                .unwrap(),
            None
        );
        picture
            .carry(&CarriedFile {
                path: "secrets.json".into(),
                mode: 0o600,
                bytes: b"{}".to_vec(),
            })
            .unwrap();
        let image = picture.finish().unwrap();

        let out = dir.path().join("b.sqlite");
        let files = restore_database(&out, &image).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "secrets.json");
        insert_rows(
            &out,
            [(
                RowName {
                    id: 1,
                    written_ms: 10,
                },
                vec![1],
            )],
        )
        .unwrap();
        let back = Connection::open(&out).unwrap();
        let v: i64 = back
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 7);
        let handle: String = back
            .query_row("SELECT handle FROM account", [], |r| r.get(0))
            .unwrap();
        assert_eq!(handle, "a.test");
        let rows: i64 = back
            .query_row("SELECT count(*) FROM repo_log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        let index: i64 = back
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'account_handle'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
        assert!(
            restore_database(&out, &image).is_err(),
            "never over a database"
        );
    }
}
