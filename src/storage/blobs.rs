//! Blobs: content-addressed files under `data_dir/blobs/<did>/<cid>`, and their
//! metadata and record references in the database.
//!
//! An upload is streamed to a temporary file while it is hashed, measured and sniffed;
//! the file is fsynced, renamed into place and the directory fsynced — all before the
//! upload is acknowledged, so a record that references the blob (committed later) never
//! points at bytes that a power cut could lose.

use super::{create_private_dir, sync_dir, StorageError};
use crate::data::Cid;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The blob directory.
#[derive(Clone)]
pub struct BlobFiles {
    root: PathBuf,
}

/// A blob that has been written and synced.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub cid: Cid,
    pub size: u64,
    pub mime_type: String,
}

/// Why an upload was refused.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("blob is larger than the limit of {0} bytes")]
    TooLarge(u64),
    #[error("upload failed: {0}")]
    Body(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn did_dir(did: &str) -> String {
    // DIDs may hold ':' and '%'; both are fine on Linux, but keep names portable.
    did.replace([':', '%'], "_")
}

impl BlobFiles {
    pub fn open(root: &Path) -> Result<BlobFiles, StorageError> {
        create_private_dir(&root.join("tmp"))?;
        Ok(BlobFiles {
            root: root.to_owned(),
        })
    }

    pub fn path(&self, did: &str, cid: &Cid) -> PathBuf {
        self.root.join(did_dir(did)).join(cid.to_string())
    }

    /// Streams chunks into a blob file for `did`; returns its CID, size and type.
    /// The declared `content_type` is used only when the bytes do not say what they are.
    pub async fn store<S, E>(
        &self,
        did: &str,
        mut chunks: S,
        limit: u64,
        content_type: Option<&str>,
    ) -> Result<StoredBlob, UploadError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let tmp_path = self
            .root
            .join("tmp")
            .join(format!("{}.part", rand::random::<u64>()));
        let mut file = tokio::fs::File::create(&tmp_path)
            .await
            .map_err(StorageError::from)?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut head: Vec<u8> = Vec::with_capacity(8192);
        let result: Result<(), UploadError> = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    // Read (and drop) a bounded remainder so the client hears the 413
                    // instead of a reset connection.
                    let mut drained = size;
                    while let Some(Ok(more)) = chunks.next().await {
                        drained += more.len() as u64;
                        if drained > limit.saturating_mul(2).max(64 << 20) {
                            break;
                        }
                    }
                    return Err(UploadError::TooLarge(limit));
                }
                if head.len() < 8192 {
                    let take = (8192 - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(StorageError::from)?;
            }
            file.sync_all().await.map_err(StorageError::from)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp_path).await;
            return Err(e);
        }
        let digest = hasher.finalize();
        let hash = cid::multihash::Multihash::<64>::wrap(crate::data::MULTIHASH_SHA2_256, &digest)
            .expect("32 bytes fit");
        let cid = Cid::new_v1(crate::data::CODEC_RAW, hash);
        let mime_type = sniff_mime(&head, content_type);
        let dir = self.root.join(did_dir(did));
        let final_path = dir.join(cid.to_string());
        let tmp_dir = self.root.join("tmp");
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            create_private_dir(&dir)?;
            std::fs::rename(&tmp_path, &final_path)?;
            sync_dir(&dir)?;
            sync_dir(&tmp_dir)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageError::Io(e.to_string()))??;
        Ok(StoredBlob {
            cid,
            size,
            mime_type,
        })
    }

    /// Deletes a blob file (missing is fine).
    pub fn remove(&self, did: &str, cid: &Cid) -> Result<(), StorageError> {
        match std::fs::remove_file(self.path(did, cid)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Deletes all of an account's blob files.
    pub fn remove_all(&self, did: &str) -> Result<(), StorageError> {
        match std::fs::remove_dir_all(self.root.join(did_dir(did))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// The MIME type of a blob: sniffed from its first bytes, else what the client said,
/// else `application/octet-stream`.
pub fn sniff_mime(head: &[u8], declared: Option<&str>) -> String {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type().to_owned();
    }
    match declared.map(|d| {
        d.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }) {
        Some(d) if !d.is_empty() && d != "*/*" && d.contains('/') => d,
        _ => "application/octet-stream".into(),
    }
}

/// Records a blob's metadata (idempotent: re-uploading refreshes its timestamp).
pub fn insert_blob(
    conn: &Connection,
    did: &str,
    blob: &StoredBlob,
    now: i64,
) -> Result<(), StorageError> {
    conn.prepare_cached(
        "INSERT INTO blob (did, cid, mime_type, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (did, cid) DO UPDATE SET created_at = ?5",
    )?
    .execute(params![
        did,
        blob.cid.to_bytes(),
        blob.mime_type,
        blob.size as i64,
        now
    ])?;
    Ok(())
}

/// How many blobs an account has stored.
pub fn blob_count(conn: &Connection, did: &str) -> Result<u64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM blob WHERE did = ?1")?
        .query_row([did], |r| r.get::<_, i64>(0))? as u64)
}

/// A blob's metadata: `(mime_type, size)`.
/// How many distinct blobs the account's records refer to.
pub fn referenced_blob_count(conn: &Connection, did: &str) -> Result<u64, StorageError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(DISTINCT blob_cid) FROM record_blob WHERE did = ?1")?
        .query_row([did], |r| r.get::<_, i64>(0))? as u64)
}

pub fn blob_meta(
    conn: &Connection,
    did: &str,
    cid: &Cid,
) -> Result<Option<(String, u64)>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT mime_type, size FROM blob WHERE did = ?1 AND cid = ?2")?
        .query_row(params![did, cid.to_bytes()], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })
        .optional()?)
}

/// Replaces the blob references of a record (on create/update/delete).
pub fn set_record_blobs(
    conn: &Connection,
    did: &str,
    path: &str,
    blobs: &[Cid],
    rev: &str,
) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM record_blob WHERE did = ?1 AND record_path = ?2")?
        .execute(params![did, path])?;
    let mut put = conn.prepare_cached("INSERT OR IGNORE INTO record_blob (did, record_path, blob_cid, rev) VALUES (?1, ?2, ?3, ?4)")?;
    for cid in blobs {
        put.execute(params![did, path, cid.to_bytes(), rev])?;
    }
    Ok(())
}

/// CIDs of blobs referenced by records, optionally only those referenced since `since`.
pub fn list_blobs(
    conn: &Connection,
    did: &str,
    since: Option<&str>,
    limit: usize,
    cursor: Option<&[u8]>,
) -> Result<Vec<Cid>, StorageError> {
    // `blob_cid > ?3` with an empty blob for "from the start": a range the index
    // seeks to (`?3 IS NULL OR …` would walk the account's blobs up to the cursor).
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT blob_cid FROM record_blob WHERE did = ?1 AND (?2 IS NULL OR rev > ?2)
         AND blob_cid > ?3 ORDER BY blob_cid LIMIT ?4",
    )?;
    let cursor = cursor.unwrap_or(&[]);
    let rows = stmt.query_map(params![did, since, cursor, limit as i64], |r| {
        r.get::<_, Vec<u8>>(0)
    })?;
    rows.map(|r| Cid::try_from(r?).map_err(|e| StorageError::Corrupt(e.to_string())))
        .collect()
}

/// Blobs referenced by records but not uploaded (after importRepo): `(cid, record path)`.
pub fn missing_blobs(
    conn: &Connection,
    did: &str,
    limit: usize,
    cursor: Option<&[u8]>,
) -> Result<Vec<(Cid, String)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT rb.blob_cid, MIN(rb.record_path) FROM record_blob rb
         LEFT JOIN blob b ON b.did = rb.did AND b.cid = rb.blob_cid
         WHERE rb.did = ?1 AND b.cid IS NULL AND (?2 IS NULL OR rb.blob_cid > ?2)
         GROUP BY rb.blob_cid ORDER BY rb.blob_cid LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![did, cursor, limit as i64], |r| {
        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
    })?;
    rows.map(|r| {
        let (c, p) = r?;
        Ok((
            Cid::try_from(c).map_err(|e| StorageError::Corrupt(e.to_string()))?,
            p,
        ))
    })
    .collect()
}

/// Unreferenced blobs uploaded before `older_than` (unix seconds): to be removed.
pub fn expired_unreferenced(
    conn: &Connection,
    older_than: i64,
) -> Result<Vec<(String, Cid)>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT b.did, b.cid FROM blob b WHERE b.created_at < ?1
         AND NOT EXISTS (SELECT 1 FROM record_blob rb WHERE rb.did = b.did AND rb.blob_cid = b.cid)",
    )?;
    let rows = stmt.query_map([older_than], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    rows.map(|r| {
        let (did, c) = r?;
        Ok((
            did,
            Cid::try_from(c).map_err(|e| StorageError::Corrupt(e.to_string()))?,
        ))
    })
    .collect()
}

/// Forgets a blob's metadata.
pub fn delete_blob(conn: &Connection, did: &str, cid: &Cid) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM blob WHERE did = ?1 AND cid = ?2")?
        .execute(params![did, cid.to_bytes()])?;
    Ok(())
}

/// Forgets all of an account's blob metadata (account deletion).
pub fn delete_all(conn: &Connection, did: &str) -> Result<(), StorageError> {
    conn.prepare_cached("DELETE FROM blob WHERE did = ?1")?
        .execute([did])?;
    Ok(())
}
