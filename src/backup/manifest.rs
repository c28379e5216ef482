//! A backup's table of contents. Each run writes one manifest, last, after every piece
//! it names is durably written and read back: the newest manifest is always a complete
//! backup, and a run killed halfway leaves only unnamed pieces (pruned later).
//!
//! Layout at a destination (every object sealed to the backup key; `<seq>` is the run
//! that wrote it, so no piece a manifest names is ever written over):
//! - `manifests/<seq>.age` — this, as deflated JSON;
//! - `snapshots/tables.<seq>.age` — the small tables (and carried files), deflated;
//! - `log/<first>-<last>.<seq>.age` — repo-log rows, as shipped;
//! - `blobs/<did>/<cid>.<seq>.age` — one blob each.

use super::key::BackupKey;
use super::{BackupError, Store};
use crate::storage::backup::RowName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

pub const FORMAT: u32 = 1;
const DIR: &str = "manifests/";

/// A sealed object a manifest names, with what it must hash to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Piece {
    pub key: String,
    /// sha2-256 of the sealed bytes (checked before opening).
    pub sha256: String,
    pub size: u64,
    /// sha2-256 of what was sealed (tells an unchanged snapshot without shipping it).
    pub plain_sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobPiece {
    pub did: String,
    pub cid: String,
    #[serde(flatten)]
    pub piece: Piece,
}

/// A repo as it was backed up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RepoHead {
    pub did: String,
    pub handle: String,
    pub commit: String,
    pub rev: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub seq: u64,
    pub created_unix: i64,
    pub hostname: String,
    pub atbox_version: String,
    pub snapshot: Piece,
    pub segments: Vec<Piece>,
    /// Every repo-log row: `[id, written_ms, index into segments]`.
    pub rows: Vec<[i64; 3]>,
    pub blobs: Vec<BlobPiece>,
    pub repos: Vec<RepoHead>,
}

impl Manifest {
    pub fn key(seq: u64) -> String {
        format!("{DIR}{seq:012}.age")
    }

    /// Every object this manifest needs.
    pub fn pieces(&self) -> impl Iterator<Item = &Piece> {
        std::iter::once(&self.snapshot)
            .chain(&self.segments)
            .chain(self.blobs.iter().map(|b| &b.piece))
    }

    pub fn row_names(&self) -> impl Iterator<Item = (RowName, usize)> + '_ {
        self.rows.iter().map(|[id, written_ms, seg]| {
            (
                RowName {
                    id: *id,
                    written_ms: *written_ms,
                },
                *seg as usize,
            )
        })
    }

    /// The total size of the pieces (what restoring reads).
    pub fn size(&self) -> u64 {
        self.pieces().map(|p| p.size).sum()
    }
}

/// The manifests at a destination: `(seq, listed)`, oldest first.
pub async fn list(store: &Store) -> Result<Vec<(u64, super::dest::Listed)>, BackupError> {
    let mut out: Vec<_> = store
        .list(DIR)
        .await?
        .into_iter()
        .filter_map(|l| {
            let name = l.key.strip_prefix(DIR)?.strip_suffix(".age")?;
            Some((name.parse::<u64>().ok()?, l))
        })
        .collect();
    out.sort_by_key(|(seq, _)| *seq);
    Ok(out)
}

/// Reads (and opens) manifest `seq`.
pub async fn read(store: &Store, key: &BackupKey, seq: u64) -> Result<Manifest, BackupError> {
    let sealed = store.get(&Manifest::key(seq)).await?;
    let plain = key
        .open(&sealed)
        .map_err(|e| BackupError::open(&Manifest::key(seq), e))?;
    let plain = super::run::inflate(&plain)?;
    let m: Manifest = serde_json::from_slice(&plain)
        .map_err(|e| BackupError::Damaged(format!("manifest {seq}: {e}")))?;
    if m.format != FORMAT {
        return Err(BackupError::Damaged(format!(
            "manifest {seq} is format {}, this atbox reads format {FORMAT}: restore with a newer atbox",
            m.format
        )));
    }
    Ok(m)
}

/// The newest manifest, if any.
pub async fn newest(store: &Store, key: &BackupKey) -> Result<Option<Manifest>, BackupError> {
    match list(store).await?.last() {
        Some((seq, _)) => read(store, key, *seq).await.map(Some),
        None => Ok(None),
    }
}

/// Writes manifest `m`; returns its size.
pub async fn write(store: &Store, key: &BackupKey, m: &Manifest) -> Result<u64, BackupError> {
    // Deflated: its row list grows with the log and it is written at every run.
    let json = serde_json::to_vec(m).expect("a manifest serialises");
    let sealed = key.seal(&super::run::deflate(&json));
    let size = sealed.len() as u64;
    store.put(&Manifest::key(m.seq), sealed).await?;
    Ok(size)
}

/// Which manifests to keep, given `(seq, written unix time)` oldest first: the newest
/// `RECENT`, and the newest of each of the last `DAYS` days (UTC) — a recent history to
/// go back to, at a bounded cost.
pub fn retained(manifests: &[(u64, i64)], now: i64) -> BTreeSet<u64> {
    const RECENT: usize = 12;
    const DAYS: i64 = 7;
    let mut keep: BTreeSet<u64> = manifests.iter().rev().take(RECENT).map(|m| m.0).collect();
    let today = now.div_euclid(86_400);
    let mut days_seen = BTreeSet::new();
    for (seq, at) in manifests.iter().rev() {
        let day = at.div_euclid(86_400);
        if today - day < DAYS && days_seen.insert(day) {
            keep.insert(*seq);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_keeps_the_newest_and_one_a_day_for_a_week() {
        let day = 86_400;
        let now = 100 * day + 23 * 3600;
        // One manifest an hour for ten days.
        let all: Vec<(u64, i64)> = (0..240)
            .map(|h| (h as u64, now - (239 - h) * 3600))
            .collect();
        let keep = retained(&all, now);
        for seq in 228..240 {
            assert!(keep.contains(&seq), "recent {seq}");
        }
        // The last of each of the 7 days (today's is among the recent ones).
        let days: BTreeSet<i64> = keep.iter().map(|s| all[*s as usize].1 / day).collect();
        assert_eq!(days.len(), 7);
        assert_eq!(keep.len(), 12 + 6);
        assert!(!keep.contains(&0), "ten days ago is gone");
        assert_eq!(retained(&[], now).len(), 0);
    }
}
