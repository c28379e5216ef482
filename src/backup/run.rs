//! One backup run to one destination: read the newest manifest there, take a picture of
//! the database (one read transaction; writes go on), ship what that manifest lacks —
//! repo-log rows it does not name, blobs it does not have, the small tables if they
//! changed — each sealed, written durably and read back; then the new manifest, last;
//! then prune what no kept manifest names. Nothing new: no manifest, nothing written.
//!
//! Runs on a blocking thread (SQLite, files, sealing), calling the async store through
//! the runtime's handle.

use super::dest::Store;
use super::manifest::{self, BlobPiece, Manifest, Piece, RepoHead};
use super::{BackupError, BackupKey, Destination, Progress};
use crate::data::Cid;
use crate::storage::backup::{CarriedFile, Picture, RowName};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tokio::runtime::Handle;

/// A segment of log rows is cut at about this many bytes.
const SEGMENT_TARGET: usize = 4 << 20;
/// Past this many segments, the next run ships all rows again as a few big ones (a box
/// that posts every few minutes makes a small segment each run).
const MAX_SEGMENTS: usize = 512;
const SEGMENT_MAGIC: &[u8; 8] = b"ATBXLOG1";

/// The files of the data directory a backup carries (besides the database and blobs).
const CARRIED: [&str; 2] = ["secrets.json", "settings.toml"];
const CARRIED_DIR: &str = "tls";

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// The manifest now newest at the destination.
    pub seq: u64,
    /// False when nothing had changed since the last run (nothing was written).
    pub wrote: bool,
    pub rows_shipped: usize,
    pub blobs_shipped: usize,
    pub bytes_shipped: u64,
    pub accounts: usize,
}

/// What a run reads: the data directory and the box's name.
#[derive(Debug, Clone)]
pub struct Source {
    pub data_dir: PathBuf,
    pub hostname: String,
}

/// Backs up `source` to `dest` now.
pub async fn run(
    source: &Source,
    dest: &Destination,
    key: &BackupKey,
    progress: Progress,
) -> Result<RunReport, BackupError> {
    let (source, dest, key) = (source.clone(), dest.clone(), key.clone());
    super::on_a_blocking_thread("backup", move |handle| {
        let store = dest.open()?;
        Run {
            handle,
            store: &store,
            key: &key,
            source: &source,
            progress,
            report: RunReport::default(),
            seq: 0,
        }
        .go()
    })
    .await
}

struct Run<'a> {
    handle: Handle,
    store: &'a Store,
    key: &'a BackupKey,
    source: &'a Source,
    progress: Progress,
    report: RunReport,
    /// This run's number (the next manifest's).
    seq: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Run<'_> {
    fn go(mut self) -> Result<RunReport, BackupError> {
        let previous = self
            .handle
            .block_on(manifest::newest(self.store, self.key))?;
        let seq = previous.as_ref().map_or(1, |m| m.seq + 1);
        self.seq = seq;
        let mut picture = Picture::take(&crate::storage::db_path(&self.source.data_dir))?;
        for file in carried_files(&self.source.data_dir)? {
            picture.carry(&file)?;
        }
        let (segments, rows) = self.ship_rows(&picture, previous.as_ref())?;
        let blobs = self.blobs_present(&picture)?;
        // Rows read and blobs settled: the real database is let go before the long part.
        picture.release_source()?;
        let blobs = self.ship_blobs(&picture, blobs, previous.as_ref())?;
        let repos: Vec<RepoHead> = picture
            .heads()?
            .into_iter()
            .map(|h| RepoHead {
                did: h.did,
                handle: h.handle,
                commit: h.commit.to_string(),
                rev: h.rev,
            })
            .collect();
        self.report.accounts = repos.len();
        let image = deflate(&picture.finish()?);
        let plain_sha = hex(&Sha256::digest(&image));
        let snapshot = match previous.as_ref().map(|m| &m.snapshot) {
            Some(p) if p.plain_sha256 == plain_sha => p.clone(),
            _ => {
                (self.progress)(format!("tables: {} KiB", image.len() / 1024));
                self.ship("snapshots/tables".into(), &image)?
            }
        };
        if let Some(prev) = &previous {
            let same_rows = prev.rows.len() == rows.len()
                && prev
                    .row_names()
                    .map(|r| r.0)
                    .eq(rows.iter().map(|r| RowName {
                        id: r[0],
                        written_ms: r[1],
                    }));
            let same_blobs = prev.blobs.len() == blobs.len()
                && prev
                    .blobs
                    .iter()
                    .zip(&blobs)
                    .all(|(a, b)| a.piece == b.piece);
            if same_rows && same_blobs && prev.snapshot == snapshot && prev.repos == repos {
                self.report.seq = prev.seq;
                return Ok(self.report);
            }
        }
        let m = Manifest {
            format: manifest::FORMAT,
            seq,
            created_unix: crate::storage::unix_now(),
            hostname: self.source.hostname.clone(),
            atbox_version: env!("CARGO_PKG_VERSION").to_owned(),
            snapshot,
            segments,
            rows,
            blobs,
            repos,
        };
        self.report.bytes_shipped += self
            .handle
            .block_on(manifest::write(self.store, self.key, &m))?;
        self.report.seq = seq;
        self.report.wrote = true;
        (self.progress)(format!("backup {seq} written"));
        // The backup is whole now; a destination that refuses deletes (a bucket with
        // object lock) keeps more than it needs, which is no failure of the backup.
        if let Err(e) = self.handle.block_on(prune(self.store, self.key)) {
            tracing::warn!("backup: pruning old backups failed: {e}");
        }
        Ok(self.report)
    }

    /// Seals `plain`, writes it at `key` and checks it back.
    /// Seals and writes a piece at `name`, made unique by this run's number: a piece
    /// is never overwritten (sealing the same bytes again gives other bytes, and a kept
    /// manifest may name the old ones), except by a later try of a run that never
    /// finished, whose pieces no manifest names.
    fn ship(&mut self, name: String, plain: &[u8]) -> Result<Piece, BackupError> {
        let key = format!("{name}.{:012}.age", self.seq);
        let sealed = self.key.seal(plain);
        let piece = Piece {
            sha256: hex(&Sha256::digest(&sealed)),
            size: sealed.len() as u64,
            plain_sha256: hex(&Sha256::digest(plain)),
            key,
        };
        self.report.bytes_shipped += piece.size;
        self.handle.block_on(self.store.put(&piece.key, sealed))?;
        Ok(piece)
    }

    /// The log rows: those the previous manifest has stay in its segments; the rest go
    /// out in new segments (all of them, when the segments have become too many).
    fn ship_rows(
        &mut self,
        picture: &Picture,
        previous: Option<&Manifest>,
    ) -> Result<(Vec<Piece>, Vec<[i64; 3]>), BackupError> {
        let had: HashMap<RowName, usize> = previous
            .map(|m| m.row_names().collect())
            .unwrap_or_default();
        let mut segments: Vec<Piece> = Vec::new();
        let mut reused: HashMap<usize, usize> = HashMap::new();
        let mut rows = Vec::new();
        let mut fresh = Vec::new();
        for name in picture.rows() {
            match (had.get(name), previous) {
                (Some(&old), Some(prev)) => {
                    let at = *reused.entry(old).or_insert_with(|| {
                        segments.push(prev.segments[old].clone());
                        segments.len() - 1
                    });
                    rows.push([name.id, name.written_ms, at as i64]);
                }
                _ => fresh.push(*name),
            }
        }
        // Too many small segments: with something new to ship anyway, all rows go out
        // again as a few big ones (an idle box ships nothing).
        if segments.len() > MAX_SEGMENTS && !fresh.is_empty() {
            segments.clear();
            rows.clear();
            fresh = picture.rows().to_vec();
        }
        let total = fresh.len();
        let mut batch: Vec<u8> = Vec::new();
        let mut in_batch: Vec<RowName> = Vec::new();
        for (i, name) in fresh.iter().enumerate() {
            // The picture's read transaction keeps every listed row.
            let data = picture.row_data(*name)?.ok_or_else(|| {
                BackupError::Local(format!("log row {} vanished during the backup", name.id))
            })?;
            if batch.is_empty() {
                batch.extend_from_slice(SEGMENT_MAGIC);
            }
            batch.extend_from_slice(&name.id.to_le_bytes());
            batch.extend_from_slice(&name.written_ms.to_le_bytes());
            batch.extend_from_slice(&(data.len() as u32).to_le_bytes());
            batch.extend_from_slice(&data);
            in_batch.push(*name);
            if batch.len() >= SEGMENT_TARGET || i + 1 == total {
                let (first, last) = (in_batch[0].id, in_batch[in_batch.len() - 1].id);
                let piece = self.ship(format!("log/{first:012}-{last:012}"), &batch)?;
                segments.push(piece);
                for n in in_batch.drain(..) {
                    rows.push([n.id, n.written_ms, segments.len() as i64 - 1]);
                }
                self.report.rows_shipped = i + 1;
                (self.progress)(format!("repo log: {} of {total} rows", i + 1));
                batch.clear();
            }
        }
        rows.sort();
        Ok((segments, rows))
    }

    /// The blobs: those the previous manifest has stay; new ones go out one by one.
    /// The pictured blobs whose files are there. A missing file is damage if a record
    /// refers to the blob; otherwise the blob was collected (unreferenced) since the
    /// picture, and is left out.
    fn blobs_present(&self, picture: &Picture) -> Result<Vec<(String, Cid)>, BackupError> {
        let files = crate::storage::blobs::BlobFiles::open(&self.source.data_dir.join("blobs"))?;
        let mut out = Vec::new();
        for (did, cid) in picture.blobs()? {
            if files.path(&did, &cid).exists() {
                out.push((did, cid));
            } else if picture.blob_referenced(&did, &cid)? {
                return Err(BackupError::Damaged(format!(
                    "the blob {cid} of {did} is referenced but its file is missing"
                )));
            } else {
                picture.forget_blob(&did, &cid)?;
            }
        }
        Ok(out)
    }

    /// Ships the blobs the previous backup lacks; returns every blob's piece.
    fn ship_blobs(
        &mut self,
        picture: &Picture,
        all: Vec<(String, Cid)>,
        previous: Option<&Manifest>,
    ) -> Result<Vec<BlobPiece>, BackupError> {
        let had: HashMap<(&str, &str), &BlobPiece> = previous
            .map(|m| m.blobs.iter().map(|b| ((&*b.did, &*b.cid), b)).collect())
            .unwrap_or_default();
        let files = crate::storage::blobs::BlobFiles::open(&self.source.data_dir.join("blobs"))?;
        let new = all
            .iter()
            .filter(|(d, c)| !had.contains_key(&(d.as_str(), c.to_string().as_str())))
            .count();
        let mut out = Vec::new();
        let mut done = 0;
        for (did, cid) in all {
            let cid_text = cid.to_string();
            if let Some(b) = had.get(&(did.as_str(), cid_text.as_str())) {
                out.push((*b).clone());
                continue;
            }
            let bytes = match std::fs::read(files.path(&did, &cid)) {
                Ok(b) => b,
                // Collected a moment ago: unreferenced (referenced ones were checked).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    picture.forget_blob(&did, &cid)?;
                    continue;
                }
                Err(e) => return Err(BackupError::from_io(&files.path(&did, &cid), e)),
            };
            let name = format!("blobs/{}/{cid_text}", did.replace([':', '%'], "_"));
            let piece = self.ship(name, &bytes)?;
            out.push(BlobPiece {
                did,
                cid: cid_text,
                piece,
            });
            done += 1;
            self.report.blobs_shipped = done;
            if done % 20 == 0 || done == new {
                (self.progress)(format!("blobs: {done} of {new}"));
            }
        }
        Ok(out)
    }
}

/// The data directory's secrets, settings and TLS files.
fn carried_files(data_dir: &Path) -> Result<Vec<CarriedFile>, BackupError> {
    use std::os::unix::fs::PermissionsExt;
    let mut paths: Vec<String> = CARRIED.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(data_dir.join(CARRIED_DIR)) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_file() && !name.ends_with(".tmp") {
                paths.push(format!("{CARRIED_DIR}/{name}"));
            }
        }
    }
    let mut out = Vec::new();
    for path in paths {
        let full = data_dir.join(&path);
        match std::fs::read(&full) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&full)
                    .map(|m| m.permissions().mode() & 0o777)
                    .unwrap_or(0o600);
                out.push(CarriedFile { path, mode, bytes });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::from_io(&full, e)),
        }
    }
    Ok(out)
}

pub(super) fn deflate(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(bytes).expect("deflating to memory");
    z.finish().expect("deflating to memory")
}

pub(super) fn inflate(bytes: &[u8]) -> Result<Vec<u8>, BackupError> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .take(4 << 30)
        .read_to_end(&mut out)
        .map_err(|e| BackupError::Damaged(format!("the tables do not inflate: {e}")))?;
    Ok(out)
}

/// Reads a segment's rows.
pub(super) fn segment_rows(plain: &[u8]) -> Result<Vec<(RowName, &[u8])>, BackupError> {
    let bad = || BackupError::Damaged("a repo-log segment is malformed".into());
    let mut rest = plain
        .strip_prefix(SEGMENT_MAGIC.as_slice())
        .ok_or_else(bad)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 20 {
            return Err(bad());
        }
        let id = i64::from_le_bytes(rest[..8].try_into().expect("8 bytes"));
        let written_ms = i64::from_le_bytes(rest[8..16].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(rest[16..20].try_into().expect("4 bytes")) as usize;
        let data = rest.get(20..20 + len).ok_or_else(bad)?;
        out.push((RowName { id, written_ms }, data));
        rest = &rest[20 + len..];
    }
    Ok(out)
}

/// Drops manifests past retention, then every piece no kept manifest names (including
/// what a killed run left behind).
pub(super) async fn prune(store: &Store, key: &BackupKey) -> Result<(), BackupError> {
    let listed = manifest::list(store).await?;
    let times: Vec<(u64, i64)> = listed.iter().map(|(s, l)| (*s, l.modified_unix)).collect();
    let keep = manifest::retained(&times, crate::storage::unix_now());
    let mut dropped = false;
    for (seq, l) in &listed {
        if !keep.contains(seq) {
            store.delete(&l.key).await?;
            dropped = true;
        }
    }
    // Pieces are only ever orphaned by a dropped manifest or a killed run; looking
    // every tenth run is enough for the latter.
    let newest = listed.last().map_or(0, |(s, _)| *s);
    if !dropped && newest % 10 != 0 {
        return Ok(());
    }
    let mut named: BTreeSet<String> = BTreeSet::new();
    for seq in &keep {
        let m = manifest::read(store, key, *seq).await?;
        named.extend(m.pieces().map(|p| p.key.clone()));
    }
    // A piece younger than a day may belong to a run under way elsewhere (a second box
    // writing here, e.g. a restored one while the old one still runs): left alone.
    let young = crate::storage::unix_now() - 86_400;
    for prefix in ["snapshots/", "log/", "blobs/"] {
        for l in store.list(prefix).await? {
            if !named.contains(&l.key) && l.modified_unix < young {
                store.delete(&l.key).await?;
            }
        }
    }
    Ok(())
}
