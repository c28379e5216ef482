//! Restoring a backup into a fresh data directory, checking what came back, and telling
//! the network (a restore) — or throwing it away (a verification, into a scratch
//! directory).
//!
//! Every piece is checked against the manifest's hash before it is opened, every blob
//! against its CID, and after the files are in place the data directory is opened like
//! a server would open it and every repo is walked from its head and its commit
//! signature checked with the account's key; each head must equal the manifest's.

use super::manifest::{self, Manifest};
use super::run::{inflate, segment_rows};
use super::{BackupError, BackupKey, Destination, Progress, Store};
use crate::crypto::{KeyType, Keypair};
use crate::data::Cid;
use crate::repo::BlockMap;
use crate::storage::backup::{insert_rows, restore_database, RestoredRecord, RowName};
use crate::storage::{Storage, WriterOptions};
use crate::syntax::Tid;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};
use tokio::runtime::Handle;

/// What a restore or verification found.
#[derive(Debug, Clone)]
pub struct Restored {
    pub seq: u64,
    pub created_unix: i64,
    pub hostname: String,
    pub accounts: usize,
    pub records: usize,
    pub blobs: usize,
    /// The firehose goes on from here (a restore only).
    pub next_seq: Option<i64>,
}

/// Restores manifest `seq` (default: the newest) from `from` into `data_dir`, which
/// must be missing or empty; then checks it and sequences `#identity` and `#sync` for
/// every account above any seq the old box can have used. The work happens in a
/// sibling directory renamed to `data_dir` only when all of it is done, so a restore
/// that fails or is killed never leaves a data directory that looks whole.
pub async fn restore(
    from: &Destination,
    key: &BackupKey,
    data_dir: &Path,
    seq: Option<u64>,
    progress: Progress,
) -> Result<Restored, BackupError> {
    if std::fs::read_dir(data_dir).is_ok_and(|mut e| e.next().is_some()) {
        return Err(BackupError::NotEmpty(data_dir.to_owned()));
    }
    let name = data_dir
        .file_name()
        .ok_or_else(|| BackupError::Local(format!("{} names no directory", data_dir.display())))?;
    let partial = data_dir.with_file_name(format!(".{}.restoring", name.to_string_lossy()));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(|e| BackupError::from_io(&partial, e))?;
    }
    let outcome = restore_into(from, key, &partial, seq, progress).await;
    let done = match outcome {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
    };
    if data_dir.exists() {
        std::fs::remove_dir(data_dir).map_err(|e| BackupError::from_io(data_dir, e))?;
    }
    std::fs::rename(&partial, data_dir).map_err(|e| BackupError::from_io(data_dir, e))?;
    if let Some(parent) = data_dir.parent() {
        crate::storage::sync_dir(parent).map_err(|e| BackupError::from_io(parent, e))?;
    }
    Ok(done)
}

async fn restore_into(
    from: &Destination,
    key: &BackupKey,
    dir: &Path,
    seq: Option<u64>,
    progress: Progress,
) -> Result<Restored, BackupError> {
    let m = unpack(from, key, dir, seq, progress.clone()).await?;
    // A Pi has no clock of its own: until NTP answers it may think it is long ago, and
    // the firehose must go on above what the old box sent (numbered by time, below).
    if crate::storage::unix_now() < m.created_unix {
        return Err(BackupError::Local(
            "this machine's clock is behind the backup's date: wait until the clock is set (NTP), then restore again".into(),
        ));
    }
    key.save(dir).map_err(|e| BackupError::from_io(dir, e))?;
    let storage = Storage::open(dir, WriterOptions::default())?;
    let mut done = check(&storage, &m, &progress).await?;
    done.next_seq = Some(announce(&storage, &m).await?);
    storage.writer.checkpoint().await;
    Ok(done)
}

/// Reads the newest backup back in full: every hash, a restore into a scratch
/// directory made under `scratch_in`, every repo's head and signature. Leaves nothing
/// behind (and clears what a check killed earlier left).
pub async fn verify(
    from: &Destination,
    key: &BackupKey,
    scratch_in: &Path,
    progress: Progress,
) -> Result<Restored, BackupError> {
    // A missing drive is told as such, before any scratch space is asked of it.
    from.open()?;
    if let Ok(entries) = std::fs::read_dir(scratch_in) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(SCRATCH_PREFIX) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let scratch = tempfile::Builder::new()
        .prefix(SCRATCH_PREFIX)
        .tempdir_in(scratch_in)
        .map_err(|e| BackupError::from_io(scratch_in, e))?;
    let dir = scratch.path().join("data");
    let m = unpack(from, key, &dir, None, progress.clone()).await?;
    let storage = Storage::open(&dir, WriterOptions::default())?;
    check(&storage, &m, &progress).await
}

const SCRATCH_PREFIX: &str = ".atbox-verify-";

/// Puts the backup's files in place.
async fn unpack(
    from: &Destination,
    key: &BackupKey,
    data_dir: &Path,
    seq: Option<u64>,
    progress: Progress,
) -> Result<Manifest, BackupError> {
    let (from, key, data_dir) = (from.clone(), key.clone(), data_dir.to_owned());
    super::on_a_blocking_thread("restore", move |handle| {
        let store = from.open()?;
        let seq = match seq {
            Some(s) => s,
            None => handle
                .block_on(manifest::list(&store))?
                .last()
                .map(|(s, _)| *s)
                .ok_or_else(|| BackupError::Missing(format!("any backup at {}", from.label())))?,
        };
        let m = handle.block_on(manifest::read(&store, &key, seq))?;
        let unpack = Unpack {
            handle,
            store: &store,
            key: &key,
            data_dir: &data_dir,
            progress,
        };
        unpack.fresh_dir()?;
        unpack.tables(&m)?;
        unpack.rows(&m)?;
        unpack.blobs(&m)?;
        Ok(m)
    })
    .await
}

struct Unpack<'a> {
    handle: Handle,
    store: &'a Store,
    key: &'a BackupKey,
    data_dir: &'a Path,
    progress: Progress,
}

impl Unpack<'_> {
    fn fresh_dir(&self) -> Result<(), BackupError> {
        if let Ok(mut entries) = std::fs::read_dir(self.data_dir) {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(self.data_dir.to_owned()));
            }
        }
        crate::storage::create_private_dir(self.data_dir)?;
        Ok(())
    }

    /// Fetches a piece, checks its hash and opens it.
    fn fetch(&self, piece: &manifest::Piece) -> Result<Vec<u8>, BackupError> {
        let sealed = self.handle.block_on(self.store.get(&piece.key))?;
        let got: String = Sha256::digest(&sealed)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got != piece.sha256 {
            return Err(BackupError::Damaged(format!(
                "{} does not match its hash in the manifest",
                piece.key
            )));
        }
        self.key
            .open(&sealed)
            .map_err(|e| BackupError::open(&piece.key, e))
    }

    fn tables(&self, m: &Manifest) -> Result<(), BackupError> {
        (self.progress)("tables".into());
        let image = inflate(&self.fetch(&m.snapshot)?)?;
        let db = crate::storage::db_path(self.data_dir);
        for file in restore_database(&db, &image)? {
            let rel = Path::new(&file.path);
            if !carried_name(rel) {
                return Err(BackupError::Damaged(format!(
                    "a carried file is named {:?}",
                    file.path
                )));
            }
            let path = self.data_dir.join(rel);
            if let Some(parent) = path.parent() {
                crate::storage::create_private_dir(parent)?;
            }
            crate::storage::write_durably_with_mode(&path, &file.bytes, 0o600)
                .map_err(|e| BackupError::from_io(&path, e))?;
        }
        Ok(())
    }

    fn rows(&self, m: &Manifest) -> Result<(), BackupError> {
        let mut by_segment: BTreeMap<usize, HashSet<RowName>> = BTreeMap::new();
        for (name, seg) in m.row_names() {
            by_segment.entry(seg).or_default().insert(name);
        }
        let db = crate::storage::db_path(self.data_dir);
        let (total, mut done) = (m.rows.len(), 0);
        for (seg, wanted) in by_segment {
            let piece = m
                .segments
                .get(seg)
                .ok_or_else(|| BackupError::Damaged(format!("the manifest names segment {seg}")))?;
            let plain = self.fetch(piece)?;
            let rows: Vec<_> = segment_rows(&plain)?
                .into_iter()
                .filter(|(name, _)| wanted.contains(name))
                .map(|(name, data)| (name, data.to_vec()))
                .collect();
            if rows.len() != wanted.len() {
                return Err(BackupError::Damaged(format!(
                    "{} lacks rows the manifest puts in it",
                    piece.key
                )));
            }
            done += insert_rows(&db, rows)? as usize;
            (self.progress)(format!("repo log: {done} of {total} rows"));
        }
        Ok(())
    }

    fn blobs(&self, m: &Manifest) -> Result<(), BackupError> {
        let files = crate::storage::blobs::BlobFiles::open(&self.data_dir.join("blobs"))?;
        for (i, b) in m.blobs.iter().enumerate() {
            let bytes = self.fetch(&b.piece)?;
            let cid: Cid = b
                .cid
                .parse()
                .map_err(|_| BackupError::Damaged(format!("blob CID {:?}", b.cid)))?;
            if b.did.parse::<crate::syntax::Did>().is_err()
                || !m.repos.iter().any(|r| r.did == b.did)
            {
                return Err(BackupError::Damaged(format!("a blob of {:?}", b.did)));
            }
            if crate::data::cid_for_raw(&bytes) != cid {
                return Err(BackupError::Damaged(format!(
                    "blob {} of {} does not hash to its CID",
                    b.cid, b.did
                )));
            }
            let path = files.path(&b.did, &cid);
            if let Some(parent) = path.parent() {
                crate::storage::create_private_dir(parent)?;
            }
            crate::storage::write_durably(&path, &bytes)
                .map_err(|e| BackupError::from_io(&path, e))?;
            if (i + 1) % 20 == 0 || i + 1 == m.blobs.len() {
                (self.progress)(format!("blobs: {} of {}", i + 1, m.blobs.len()));
            }
        }
        Ok(())
    }
}

/// The files a backup may carry: `secrets.json`, `settings.toml`, `tls/<name>`.
fn carried_name(rel: &Path) -> bool {
    let parts: Vec<Component> = rel.components().collect();
    match parts.as_slice() {
        [Component::Normal(n)] => *n == "secrets.json" || *n == "settings.toml",
        [Component::Normal(dir), Component::Normal(_)] => *dir == "tls",
        _ => false,
    }
}

/// Opens every restored repo: head as backed up, whole tree present, signature good.
async fn check(
    storage: &Storage,
    m: &Manifest,
    progress: &Progress,
) -> Result<Restored, BackupError> {
    let mut records = 0;
    for repo in &m.repos {
        let (log, repo2) = (storage.log.clone(), repo.clone());
        let index = storage
            .read(move |conn| verified_records(conn, &log, &repo2))
            .await?;
        let n = index.len();
        let did = repo.did.clone();
        storage
            .write(move |conn| crate::storage::backup::index_restored(conn, &did, &index))
            .await?;
        records += n;
        progress(format!("@{}: {n} records, verified", repo.handle));
    }
    Ok(Restored {
        seq: m.seq,
        created_unix: m.created_unix,
        hostname: m.hostname.clone(),
        accounts: m.repos.len(),
        records,
        blobs: m.blobs.len(),
        next_seq: None,
    })
}

/// Checks one restored repo — head as backed up, every block, the tree, the signature
/// by the account's key — and lists its records for the index.
fn verified_records(
    conn: &rusqlite::Connection,
    log: &crate::storage::log::RepoLog,
    repo: &manifest::RepoHead,
) -> Result<Vec<RestoredRecord>, BackupError> {
    let damaged = |what: String| BackupError::Damaged(format!("{}: {what}", repo.did));
    let head =
        crate::storage::repos::head(conn, &repo.did)?.ok_or_else(|| damaged("no repo".into()))?;
    if head.commit.to_string() != repo.commit {
        return Err(damaged(format!(
            "head {} is not the backed-up {}",
            head.commit, repo.commit
        )));
    }
    let account = crate::storage::accounts::by_did(conn, &repo.did)?
        .ok_or_else(|| damaged("no account".into()))?;
    let key = Keypair::from_private_bytes(KeyType::K256, &account.signing_key)
        .map_err(|e| damaged(format!("signing key: {e}")))?
        .public_key();
    // Every block hashed against its CID (the export itself trusts the CIDs stored in
    // the rows; a restore checks what it was handed).
    let mut blocks = BlockMap::new();
    let mut damaged_block = None;
    log.export_blocks(conn, &repo.did, None, &head.commit, |cid, bytes| {
        if crate::data::cid_for_cbor(bytes) != *cid {
            damaged_block.get_or_insert(*cid);
        }
        blocks.insert(*cid, bytes.to_vec());
        Ok::<(), crate::storage::StorageError>(())
    })?;
    if let Some(cid) = damaged_block {
        return Err(damaged(format!("block {cid} does not match its hash")));
    }
    let summary = crate::repo::verify::verify_repo(&blocks, head.commit, Some(&key))
        .map_err(|e| damaged(format!("the repo does not verify: {e}")))?;
    let mut out = Vec::with_capacity(summary.records.len());
    for (path, cid) in summary.records {
        let bytes = blocks
            .get(&cid)
            .ok_or_else(|| damaged(format!("record {path} is missing")))?;
        let value =
            crate::data::decode_cbor(bytes).map_err(|e| damaged(format!("record {path}: {e}")))?;
        let mut refs = Vec::new();
        crate::data::blob_refs(&value, &mut refs);
        let rev = log
            .block_rev(&repo.did, &cid)
            .map(|v| Tid::from_parts(v >> 10, (v & 0x3ff) as u16).to_string())
            .unwrap_or_else(|| head.rev.to_string());
        out.push(RestoredRecord {
            path,
            cid,
            rev,
            blobs: refs.into_iter().map(|b| b.cid).collect(),
        });
    }
    Ok(out)
}

/// Puts the firehose above anything the old box may have sent (milliseconds since the
/// epoch: a home box never sends a thousand events a second for long, so each restore
/// lands above every number used before it), then `#identity` and `#sync` for every
/// active account, so relays and AppViews take the restored repos as they are.
async fn announce(storage: &Storage, m: &Manifest) -> Result<i64, BackupError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    storage
        .log
        .raise_next_seq(now_ms.max(storage.log.next_seq()));
    let first = storage.log.next_seq();
    let log = storage.log.clone();
    let repos = m.repos.clone();
    storage
        .writer
        .write_with_events(move |conn, outbox| -> Result<(), BackupError> {
            for repo in &repos {
                let Some(account) = crate::storage::accounts::by_did(conn, &repo.did)? else {
                    continue;
                };
                // Every account's identity (so the raised numbers are on disk even
                // when no account is active); repos only of active ones.
                crate::storage::emit::identity(outbox, &repo.did, Some(&account.handle));
                if account.status != crate::storage::accounts::AccountStatus::Active {
                    continue;
                }
                let Some(head) = crate::storage::repos::head(conn, &repo.did)? else {
                    continue;
                };
                let block = log.get(conn, &repo.did, &head.commit)?.ok_or_else(|| {
                    BackupError::Damaged(format!("{}: the head commit is missing", repo.did))
                })?;
                crate::storage::emit::sync(
                    outbox,
                    &repo.did,
                    head.commit,
                    &block,
                    head.rev.as_str(),
                );
            }
            Ok(())
        })
        .await?;
    Ok(first)
}
