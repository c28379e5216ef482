//! Where backups go: a directory (a USB drive) or S3-compatible object storage, both as
//! an `object_store` store, so one code path writes, lists, reads back and prunes
//! either. A directory's files are fsynced (object_store renames a complete file into
//! place but does not flush it), so a power cut cannot leave a manifest naming pieces
//! the card or drive never got.

use super::BackupError;
use crate::config::S3Target;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The folder a directory destination keeps its backups in.
pub const DIR_FOLDER: &str = "atbox-backup";

/// A configured destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A directory; under `/media` or `/mnt` it must be a mounted drive (so a missing
    /// USB drive is told as such, and backups never fill the SD card instead).
    Dir(PathBuf),
    S3(S3Target),
}

impl Destination {
    /// How status lines name it: "USB" for a drive, "S3" for object storage.
    pub fn kind(&self) -> &'static str {
        match self {
            Destination::Dir(p) if removable(p) => "USB",
            Destination::Dir(_) => "folder",
            Destination::S3(_) => "S3",
        }
    }

    pub fn label(&self) -> String {
        match self {
            Destination::Dir(p) => p.display().to_string(),
            Destination::S3(t) => t.label(),
        }
    }

    /// Connects (for a directory: checks the drive is there and makes the folder).
    pub fn open(&self) -> Result<Store, BackupError> {
        match self {
            Destination::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(BackupError::Absent(format!(
                        "{} is not there: plug in the backup drive (labelled ATBOX-BACKUP) or change backup_dir",
                        dir.display()
                    )));
                }
                if removable(dir) && !on_a_drive(dir) {
                    return Err(BackupError::Absent(format!(
                        "no drive is mounted at {}: plug in the backup drive (labelled ATBOX-BACKUP)",
                        dir.display()
                    )));
                }
                let root = dir.join(DIR_FOLDER);
                std::fs::create_dir_all(&root).map_err(|e| BackupError::from_io(&root, e))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                    .map_err(|e| BackupError::Destination(e.to_string()))?;
                Ok(Store {
                    inner: Arc::new(store),
                    local_root: Some(root),
                })
            }
            Destination::S3(t) => {
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&t.bucket)
                    .with_region(&t.region)
                    .with_access_key_id(&t.access_key_id)
                    .with_secret_access_key(&t.secret_access_key)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: std::time::Duration::from_secs(60),
                        ..Default::default()
                    })
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_timeout(std::time::Duration::from_secs(120))
                            .with_connect_timeout(std::time::Duration::from_secs(15)),
                    );
                if let Some(e) = &t.endpoint {
                    b = b
                        .with_endpoint(e)
                        .with_allow_http(e.starts_with("http://"))
                        .with_virtual_hosted_style_request(false);
                }
                let store = b
                    .build()
                    .map_err(|e| BackupError::Destination(e.to_string()))?;
                let inner: Arc<dyn ObjectStore> = if t.prefix.is_empty() {
                    Arc::new(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(
                        store,
                        t.prefix.as_str(),
                    ))
                };
                Ok(Store {
                    inner,
                    local_root: None,
                })
            }
        }
    }
}

/// Under `/media` or `/mnt`: a place for removable drives.
fn removable(p: &Path) -> bool {
    p.starts_with("/media") || p.starts_with("/mnt")
}

/// A directory under `/media` or `/mnt` on another device than that folder: a drive
/// is mounted there, or above it (`/media/usb/backups`).
fn on_a_drive(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let top = if p.starts_with("/media") {
        "/media"
    } else {
        "/mnt"
    };
    match (std::fs::metadata(p), std::fs::metadata(top)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// An object listed: its key and size.
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub modified_unix: i64,
}

/// An open destination.
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    /// A directory destination's folder, for the fsyncs.
    local_root: Option<PathBuf>,
}

impl Store {
    /// Writes `bytes` at `key`, durably, then reads it back and checks it.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        use sha2::Digest;
        let want = sha2::Sha256::digest(&bytes);
        self.inner
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.error(key, e))?;
        if let Some(root) = &self.local_root {
            let path = root.join(key);
            let sync = || -> std::io::Result<()> {
                std::fs::File::open(&path)?.sync_all()?;
                let mut dir = path.parent();
                while let Some(d) = dir {
                    std::fs::File::open(d)?.sync_all()?;
                    if d == root.as_path() {
                        break;
                    }
                    dir = d.parent();
                }
                Ok(())
            };
            sync().map_err(|e| BackupError::from_io(&path, e))?;
        }
        let back = self.get(key).await?;
        if sha2::Sha256::digest(&back) != want {
            return Err(BackupError::Destination(format!(
                "{key} reads back different from what was written"
            )));
        }
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Vec<u8>, BackupError> {
        let got = self
            .inner
            .get(&ObjectPath::from(key))
            .await
            .map_err(|e| self.error(key, e))?;
        Ok(got.bytes().await.map_err(|e| self.error(key, e))?.to_vec())
    }

    /// Every object under `prefix`, by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, BackupError> {
        use futures_util::StreamExt;
        let prefix = ObjectPath::from(prefix);
        let mut stream = self.inner.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.error(prefix.as_ref(), e))?;
            out.push(Listed {
                key: meta.location.to_string(),
                size: meta.size,
                modified_unix: meta.last_modified.timestamp(),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn delete(&self, key: &str) -> Result<(), BackupError> {
        match self.inner.delete(&ObjectPath::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn error(&self, key: &str, e: object_store::Error) -> BackupError {
        if let object_store::Error::NotFound { .. } = e {
            return BackupError::Missing(key.to_owned());
        }
        // A full drive surfaces as an I/O error inside object_store's; say it plainly.
        let text = e.to_string();
        if text.contains("No space left") || text.contains("os error 28") {
            return BackupError::Full(format!("{key}: {text}"));
        }
        BackupError::Destination(format!("{key}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_drive_is_absent_not_a_folder_on_the_card() {
        let dir = tempfile::tempdir().unwrap();
        let gone = Destination::Dir(dir.path().join("nope"));
        assert!(matches!(gone.open(), Err(BackupError::Absent(_))));
        assert!(matches!(
            Destination::Dir(PathBuf::from("/mnt")).kind(),
            "USB"
        ));
        // A plain directory elsewhere is fine.
        assert!(Destination::Dir(dir.path().to_owned()).open().is_ok());
        assert!(dir.path().join(DIR_FOLDER).is_dir());
    }
}
