//! The repo log: repo blocks and firehose events, appended to `repo_log` as a few
//! densely packed rows per group commit, found through an in-memory CID index.
//!
//! Why not a table of blocks keyed by CID: CIDs are random, so every block insert (and
//! every delete of a replaced MST node) lands on its own B-tree page, and each dirty
//! page is written twice (WAL, then checkpoint). A post costs ~3 KB of new data but
//! dirtied ~12 pages that way (≈50 KB written). Here a batch's blocks land in a row of
//! their own — sequential, full pages — and are stored *once*: a `#commit` event's CAR
//! already holds every new block of its commit, so the event frame is where the blocks
//! live, located by offset. Nothing is ever rewritten in place.
//!
//! - A row is a run of entries: an event (its complete frame, and where its CAR's
//!   sections are inside it), or a run of blocks in CAR-section form.
//! - [`RepoLog`] keeps, per repo, `digest → (row, offset, length, refs, rev)` for every
//!   *live* block (reachable from the repo's head), and each row's live bytes and seq
//!   range. It is rebuilt at start by scanning the rows and walking each repo from its
//!   head (so it can never disagree with what is durable), and afterwards changed only
//!   by the writer after a commit is durable.
//! - A write job does not touch the index: it queues [`Change`]s in its outbox; the
//!   writer encodes the batch's rows, commits, then applies the changes. Blocks of
//!   earlier jobs in the same batch are visible to later ones through `pending`.
//! - [`compact`](RepoLog::compact) rewrites rows that are past the firehose window or
//!   mostly dead: their live blocks move to a new row, the old rows go.
//!
//! Hand-written because it is the storage engine the issue asks us to own; the SQL is
//! two statements.

use super::StorageError;
use crate::data::Cid;
use crate::repo::car::{push_section, section_ranges, sections_start};
use crate::repo::{BlockStore, RepoError};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// A block's key: the sha2-256 digest of its bytes (every atproto CID uses it).
pub type Digest = [u8; 32];

/// Rows are cut at about this size, so reading one block never loads much more.
const ROW_TARGET: usize = 64 * 1024;

pub fn digest(cid: &Cid) -> Option<Digest> {
    (cid.hash().code() == crate::data::MULTIHASH_SHA2_256)
        .then(|| cid.hash().digest().try_into().ok())
        .flatten()
}

/// Where a live block is, how many references keep it alive, and the revision that
/// wrote it (for `getRepo?since=`).
#[derive(Debug, Clone, Copy)]
struct Loc {
    row: i64,
    off: u32,
    len: u32,
    refs: u32,
    rev: u64,
}

#[derive(Debug, Default, Clone)]
struct RowInfo {
    bytes: u64,
    live: u64,
    /// First and last seq of the events in it.
    seqs: Option<(i64, i64)>,
    written_ms: i64,
}

#[derive(Default)]
struct Index {
    repos: HashMap<String, HashMap<Digest, Loc>>,
    rows: BTreeMap<i64, RowInfo>,
    /// First seq of each row holding events → that row.
    events: BTreeMap<i64, i64>,
    last_seq: i64,
}

/// What a write job changes in the log, applied in order once its batch is durable.
pub enum Change {
    /// A block the commit added (it may already exist: then it is not stored again).
    Block { did: String, cid: Cid, bytes: Arc<Vec<u8>>, rev: u64 },
    /// One more (or one fewer) reference to a block; at zero it is dead.
    Ref { did: String, digest: Digest, delta: i32 },
    /// An event; `car` locates the CAR inside the frame when it carries blocks.
    Event { seq: i64, did: String, kind: u8, frame: Arc<Vec<u8>>, car: Option<std::ops::Range<usize>>, rev: u64 },
    /// Every block of a repo is dead (account deleted, repo replaced by an import).
    DropRepo { did: String },
}

/// The log's index, shared by the writer and every reader.
#[derive(Default)]
pub struct RepoLog {
    index: RwLock<Index>,
    /// Blocks of the batch being committed, for later jobs of the same batch.
    pending: Mutex<HashMap<(String, Digest), Arc<Vec<u8>>>>,
}

const TAG_EVENT: u8 = 1;
const TAG_BLOCKS: u8 = 2;
/// tag, kind, did length, rev, seq, payload length, sections offset and length.
const ENTRY_HEADER: usize = 1 + 1 + 2 + 8 + 8 + 4 + 4 + 4;

/// One entry of a row, borrowed from the row's bytes.
struct Entry<'a> {
    tag: u8,
    kind: u8,
    did: &'a str,
    rev: u64,
    seq: i64,
    payload: &'a [u8],
    /// Offset of the payload in the row.
    payload_at: usize,
    sections: std::ops::Range<usize>,
}

fn corrupt(row: i64, what: &str) -> StorageError {
    StorageError::Corrupt(format!("repo_log row {row}: {what}"))
}

fn parse_row(row: i64, data: &[u8]) -> Result<Vec<Entry<'_>>, StorageError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = data.get(at..at + ENTRY_HEADER).ok_or_else(|| corrupt(row, "truncated entry"))?;
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let u32_at = |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")) as usize;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let (did_len, payload_len) = (u16_at(2), u32_at(20));
        let did_at = at + ENTRY_HEADER;
        let payload_at = did_at + did_len;
        let end = payload_at + payload_len;
        let did = data
            .get(did_at..payload_at)
            .and_then(|d| std::str::from_utf8(d).ok())
            .ok_or_else(|| corrupt(row, "bad DID"))?;
        let payload = data.get(payload_at..end).ok_or_else(|| corrupt(row, "truncated payload"))?;
        let sections = u32_at(24)..u32_at(24) + u32_at(28);
        if sections.end > payload.len() {
            return Err(corrupt(row, "sections outside the payload"));
        }
        out.push(Entry { tag: h[0], kind: h[1], did, rev: u64_at(4), seq: u64_at(12) as i64, payload, payload_at, sections });
        at = end;
    }
    Ok(out)
}

fn push_entry(row: &mut Vec<u8>, tag: u8, kind: u8, did: &str, rev: u64, seq: i64, payload: &[u8], sections: std::ops::Range<usize>) -> usize {
    row.push(tag);
    row.push(kind);
    row.extend_from_slice(&(did.len() as u16).to_le_bytes());
    row.extend_from_slice(&rev.to_le_bytes());
    row.extend_from_slice(&(seq as u64).to_le_bytes());
    row.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    row.extend_from_slice(&(sections.start as u32).to_le_bytes());
    row.extend_from_slice(&(sections.len() as u32).to_le_bytes());
    row.extend_from_slice(did.as_bytes());
    let at = row.len();
    row.extend_from_slice(payload);
    at
}

/// The blocks of an entry: `(cid, range in the row)`.
fn entry_blocks(row: i64, e: &Entry) -> Result<Vec<(Cid, std::ops::Range<usize>)>, StorageError> {
    let base = e.payload_at + e.sections.start;
    Ok(section_ranges(&e.payload[e.sections.clone()])
        .map_err(|err| corrupt(row, &err.to_string()))?
        .into_iter()
        .map(|(cid, r)| (cid, base + r.start..base + r.end))
        .collect())
}

/// Rows being built for one batch, with where each new block went.
#[derive(Default)]
pub struct RowBuilder {
    rows: Vec<Vec<u8>>,
    placed: HashMap<(String, Digest), (usize, std::ops::Range<usize>)>,
    seqs: Vec<Option<(i64, i64)>>,
}

impl RowBuilder {
    fn row(&mut self, room: usize) -> usize {
        if self.rows.last().is_none_or(|r| !r.is_empty() && r.len() + room > ROW_TARGET) {
            self.rows.push(Vec::new());
            self.seqs.push(None);
        }
        self.rows.len() - 1
    }

    fn event(&mut self, did: &str, kind: u8, seq: i64, rev: u64, frame: &[u8], car: Option<&std::ops::Range<usize>>) {
        // Blocks are found inside the frame's CAR, unless the frame is big (then they
        // get a blocks entry of their own, so reading one never loads a large row).
        let sections = car
            .filter(|_| frame.len() <= ROW_TARGET)
            .and_then(|c| Some(c.start + sections_start(&frame[c.clone()]).ok()?..c.end))
            .unwrap_or(0..0);
        let i = self.row(frame.len());
        let at = push_entry(&mut self.rows[i], TAG_EVENT, kind, did, rev, seq, frame, sections.clone());
        if let Ok(found) = section_ranges(&frame[sections.clone()]) {
            for (cid, r) in found {
                if let Some(d) = digest(&cid) {
                    let range = at + sections.start + r.start..at + sections.start + r.end;
                    self.placed.entry((did.to_owned(), d)).or_insert((i, range));
                }
            }
        }
        let s = &mut self.seqs[i];
        *s = Some(s.map_or((seq, seq), |(a, _)| (a, seq)));
    }

    /// Adds blocks not already placed, grouped by repo and revision.
    fn blocks(&mut self, blocks: Vec<(&str, u64, &Cid, &[u8])>) {
        let mut groups: BTreeMap<(&str, u64), Vec<(&Cid, &[u8])>> = BTreeMap::new();
        for (did, rev, cid, bytes) in blocks {
            if let Some(d) = digest(cid) {
                if !self.placed.contains_key(&(did.to_owned(), d)) {
                    groups.entry((did, rev)).or_default().push((cid, bytes));
                }
            }
        }
        for ((did, rev), blocks) in groups {
            let mut chunk: Vec<(&Cid, &[u8])> = Vec::new();
            let mut size = 0;
            for (n, (cid, bytes)) in blocks.iter().enumerate() {
                chunk.push((cid, bytes));
                size += bytes.len() + 40;
                if size >= ROW_TARGET / 2 || n + 1 == blocks.len() {
                    let mut payload = Vec::with_capacity(size);
                    let ranges: Vec<_> = chunk.iter().map(|(c, b)| (**c, push_section(&mut payload, c, b))).collect();
                    let i = self.row(payload.len());
                    let at = push_entry(&mut self.rows[i], TAG_BLOCKS, 0, did, rev, 0, &payload, 0..payload.len());
                    for (cid, r) in ranges {
                        let d = digest(&cid).expect("checked above");
                        self.placed.insert((did.to_owned(), d), (i, at + r.start..at + r.end));
                    }
                    chunk.clear();
                    size = 0;
                }
            }
        }
    }
}

impl RepoLog {
    /// Rebuilds the index from the durable rows and the repos' heads.
    pub fn load(conn: &Connection) -> Result<RepoLog, StorageError> {
        let mut index = Index::default();
        let mut all: HashMap<String, HashMap<Digest, Loc>> = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, written_ms, data FROM repo_log ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (id, written_ms, data): (i64, i64, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let mut info = RowInfo { bytes: data.len() as u64, written_ms, ..Default::default() };
            for e in parse_row(id, &data)? {
                if e.tag == TAG_EVENT {
                    info.seqs = Some(info.seqs.map_or((e.seq, e.seq), |(a, b)| (a.min(e.seq), b.max(e.seq))));
                }
                let repo = all.entry(e.did.to_owned()).or_default();
                for (cid, range) in entry_blocks(id, &e)? {
                    if let Some(d) = digest(&cid) {
                        repo.insert(d, Loc { row: id, off: range.start as u32, len: range.len() as u32, refs: 0, rev: e.rev });
                    }
                }
            }
            if let Some((first, last)) = info.seqs {
                index.events.insert(first, id);
                index.last_seq = index.last_seq.max(last);
            }
            index.rows.insert(id, info);
        }
        drop(rows);
        let heads = super::repos::list_repos(conn, usize::MAX, None)?;
        for (did, head) in heads {
            let Some(mut blocks) = all.remove(&did) else {
                tracing::error!(%did, "the repo's blocks are missing from storage");
                continue;
            };
            if let Err(e) = count_refs(conn, &mut blocks, head.commit) {
                tracing::error!(%did, "the repo cannot be walked from its head: {e}");
            }
            blocks.retain(|_, loc| loc.refs > 0);
            for loc in blocks.values() {
                if let Some(row) = index.rows.get_mut(&loc.row) {
                    row.live += u64::from(loc.len);
                }
            }
            index.repos.insert(did, blocks);
        }
        Ok(RepoLog { index: RwLock::new(index), pending: Mutex::default() })
    }

    /// A block of `did`'s repo (committed, or queued earlier in the current batch).
    pub fn get(&self, conn: &Connection, did: &str, cid: &Cid) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(d) = digest(cid) else { return Ok(None) };
        if let Some(b) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).get(&(did.to_owned(), d)) {
            return Ok(Some(b.to_vec()));
        }
        // A compaction may move the block between the lookup and the read; look again.
        for _ in 0..50 {
            let loc = self.read_index().repos.get(did).and_then(|r| r.get(&d).copied());
            let Some(loc) = loc else { return Ok(None) };
            if let Some(bytes) = read_at(conn, loc)? {
                return Ok(Some(bytes));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(StorageError::Corrupt(format!("block {cid} of {did} is indexed but not stored")))
    }

    /// The live blocks of a repo written after revision `since` (all with `None`).
    pub fn cids_since(&self, did: &str, since: Option<u64>) -> Vec<Cid> {
        let index = self.read_index();
        let Some(repo) = index.repos.get(did) else { return Vec::new() };
        repo.iter()
            .filter(|(_, l)| since.is_none_or(|s| l.rev > s))
            .map(|(d, _)| dag_cbor_cid(d))
            .collect()
    }

    /// How many live blocks a repo has.
    pub fn block_count(&self, did: &str) -> usize {
        self.read_index().repos.get(did).map_or(0, HashMap::len)
    }

    /// Stored bytes in the log and how many of them are live blocks.
    pub fn sizes(&self) -> (u64, u64) {
        let index = self.read_index();
        index.rows.values().fold((0, 0), |(b, l), r| (b + r.bytes, l + r.live))
    }

    /// The oldest and newest event seq still stored.
    pub fn seq_bounds(&self) -> Option<(i64, i64)> {
        let index = self.read_index();
        let first = *index.events.keys().next()?;
        Some((first, index.last_seq))
    }

    /// The seq the next event gets.
    pub fn next_seq(&self) -> i64 {
        self.read_index().last_seq + 1
    }

    /// Rows holding events after `cursor`, oldest first.
    pub fn event_rows_after(&self, cursor: i64) -> Vec<i64> {
        let index = self.read_index();
        let from = index.events.range(..=cursor).next_back().map_or(i64::MIN, |(s, _)| *s);
        index.events.range(from..).map(|(_, row)| *row).collect()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a successful job's new blocks visible to the rest of its batch.
    pub fn stage(&self, changes: &[Change]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for c in changes {
            if let Change::Block { did, cid, bytes, .. } = c {
                if let Some(d) = digest(cid) {
                    pending.insert((did.clone(), d), bytes.clone());
                }
            }
        }
    }

    /// Writes a batch's rows (inside the writer's open transaction). Hand the result
    /// to [`apply`](Self::apply) once the transaction is durable.
    pub fn write_rows(&self, conn: &Connection, changes: &[Change], now_ms: i64) -> Result<Written, StorageError> {
        let mut builder = RowBuilder::default();
        for c in changes {
            if let Change::Event { seq, did, kind, frame, car, rev } = c {
                builder.event(did, *kind, *seq, *rev, frame, car.as_ref());
            }
        }
        builder.blocks(
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::Block { did, cid, bytes, rev } => Some((did.as_str(), *rev, cid, bytes.as_slice())),
                    _ => None,
                })
                .collect(),
        );
        let mut ids = Vec::with_capacity(builder.rows.len());
        for row in &builder.rows {
            conn.prepare_cached("INSERT INTO repo_log (written_ms, data) VALUES (?1, ?2)")?
                .execute(params![now_ms, row])?;
            ids.push(conn.last_insert_rowid());
        }
        Ok(Written { builder, ids, now_ms })
    }

    /// Applies a durable batch to the index, in the order its jobs made the changes.
    pub fn apply(&self, changes: Vec<Change>, written: Written) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let Written { builder, ids, now_ms } = written;
        for (i, id) in ids.iter().enumerate() {
            let seqs = builder.seqs[i];
            index.rows.insert(*id, RowInfo { bytes: builder.rows[i].len() as u64, live: 0, seqs, written_ms: now_ms });
            if let Some((first, last)) = seqs {
                index.events.insert(first, *id);
                index.last_seq = index.last_seq.max(last);
            }
        }
        let mut added: Vec<(String, Digest)> = Vec::new();
        for change in changes {
            match change {
                Change::Block { did, cid, rev, .. } => {
                    let Some(d) = digest(&cid) else { continue };
                    let Some((i, range)) = builder.placed.get(&(did.clone(), d)) else { continue };
                    let loc = Loc { row: ids[*i], off: range.start as u32, len: range.len() as u32, refs: 0, rev };
                    if let std::collections::hash_map::Entry::Vacant(v) = index.repos.entry(did.clone()).or_default().entry(d) {
                        v.insert(loc);
                        added.push((did, d));
                    }
                }
                Change::Ref { did, digest, delta } => index.add_ref(&did, &digest, delta),
                Change::DropRepo { did } => {
                    for loc in index.repos.remove(&did).unwrap_or_default().into_values() {
                        index.mark_dead(&loc);
                    }
                }
                Change::Event { .. } => {}
            }
        }
        // Blocks a commit carried that nothing references (none, normally) go again.
        for (did, d) in added {
            let repo = index.repos.get_mut(&did);
            if repo.as_ref().and_then(|r| r.get(&d)).is_some_and(|l| l.refs == 0) {
                repo.expect("checked").remove(&d);
            }
        }
        self.discard();
    }

    /// Forgets the staged blocks of a batch (after it committed or failed).
    pub fn discard(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Rewrites rows that no longer earn their space: rows past the firehose window
    /// (`before_ms`) that hold events, and rows whose blocks are mostly dead. Their live
    /// blocks move to new rows; at most `budget` bytes are read per call. Runs on the
    /// writer's connection, in its own transaction. Returns the bytes reclaimed.
    pub fn compact(&self, conn: &mut Connection, before_ms: i64, budget: u64) -> Result<u64, StorageError> {
        let picked: Vec<i64> = {
            let index = self.read_index();
            let newest = index.rows.keys().next_back().copied();
            let mut used = 0;
            index
                .rows
                .iter()
                .filter(|(id, r)| {
                    Some(**id) != newest
                        && r.seqs.is_none_or(|(_, last)| r.written_ms < before_ms && last != index.last_seq)
                        && (r.seqs.is_some() || r.live * 2 < r.bytes)
                })
                .take_while(|(_, r)| {
                    used += r.bytes;
                    used <= budget.max(r.bytes)
                })
                .map(|(id, _)| *id)
                .collect()
        };
        if picked.is_empty() {
            return Ok(0);
        }
        let tx = conn.transaction()?;
        let mut moving: Vec<(String, u64, Cid, Vec<u8>)> = Vec::new();
        let mut freed = 0;
        {
            let index = self.read_index();
            for id in &picked {
                let data: Vec<u8> = tx.query_row("SELECT data FROM repo_log WHERE id = ?1", [id], |r| r.get(0))?;
                freed += data.len() as u64;
                for e in parse_row(*id, &data)? {
                    let Some(repo) = index.repos.get(e.did) else { continue };
                    for (cid, range) in entry_blocks(*id, &e)? {
                        let live = digest(&cid).and_then(|d| repo.get(&d)).is_some_and(|l| l.row == *id && l.off as usize == range.start);
                        if live {
                            let rev = repo[&digest(&cid).expect("live")].rev;
                            moving.push((e.did.to_owned(), rev, cid, data[range].to_vec()));
                        }
                    }
                }
            }
        }
        let mut builder = RowBuilder::default();
        builder.blocks(moving.iter().map(|(did, rev, cid, b)| (did.as_str(), *rev, cid, b.as_slice())).collect());
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut ids = Vec::new();
        for row in &builder.rows {
            tx.execute("INSERT INTO repo_log (written_ms, data) VALUES (?1, ?2)", params![now_ms, row])?;
            ids.push(tx.last_insert_rowid());
        }
        for id in &picked {
            tx.execute("DELETE FROM repo_log WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        for id in &picked {
            if let Some(info) = index.rows.remove(id) {
                if let Some((first, _)) = info.seqs {
                    index.events.remove(&first);
                }
            }
        }
        for (i, id) in ids.iter().enumerate() {
            index.rows.insert(*id, RowInfo { bytes: builder.rows[i].len() as u64, live: 0, seqs: None, written_ms: now_ms });
        }
        for ((did, d), (i, range)) in builder.placed {
            let row = ids[i];
            if let Some(loc) = index.repos.get_mut(&did).and_then(|r| r.get_mut(&d)) {
                loc.row = row;
                loc.off = range.start as u32;
                index.rows.get_mut(&row).expect("inserted above").live += u64::from(loc.len);
            }
        }
        let written: u64 = builder.rows.iter().map(|r| r.len() as u64).sum();
        Ok(freed.saturating_sub(written))
    }

    /// The events stored in `row` with seq after `cursor`: `(seq, did, kind, frame)`.
    pub fn events_in(&self, conn: &Connection, row: i64, cursor: i64) -> Result<Vec<(i64, String, u8, Vec<u8>)>, StorageError> {
        let data: Option<Vec<u8>> = conn
            .prepare_cached("SELECT data FROM repo_log WHERE id = ?1")?
            .query_row([row], |r| r.get(0))
            .optional()?;
        let Some(data) = data else { return Ok(Vec::new()) };
        Ok(parse_row(row, &data)?
            .into_iter()
            .filter(|e| e.tag == TAG_EVENT && e.seq > cursor)
            .map(|e| (e.seq, e.did.to_owned(), e.kind, e.payload.to_vec()))
            .collect())
    }
}

impl Index {
    fn add_ref(&mut self, did: &str, d: &Digest, delta: i32) {
        let Some(loc) = self.repos.get_mut(did).and_then(|r| r.get_mut(d)) else { return };
        let was = loc.refs;
        loc.refs = loc.refs.saturating_add_signed(delta);
        let (now, loc) = (loc.refs, *loc);
        if was == 0 && now > 0 {
            if let Some(row) = self.rows.get_mut(&loc.row) {
                row.live += u64::from(loc.len);
            }
        } else if was > 0 && now == 0 {
            self.repos.get_mut(did).expect("found above").remove(d);
            self.mark_dead(&loc);
        }
    }

    fn mark_dead(&mut self, loc: &Loc) {
        if loc.refs > 0 {
            if let Some(row) = self.rows.get_mut(&loc.row) {
                row.live = row.live.saturating_sub(u64::from(loc.len));
            }
        }
    }
}

/// A batch's rows, written but not yet known durable.
pub struct Written {
    builder: RowBuilder,
    ids: Vec<i64>,
    now_ms: i64,
}

fn read_at(conn: &Connection, loc: Loc) -> Result<Option<Vec<u8>>, StorageError> {
    Ok(conn
        .prepare_cached("SELECT substr(data, ?2, ?3) FROM repo_log WHERE id = ?1")?
        .query_row(params![loc.row, i64::from(loc.off) + 1, i64::from(loc.len)], |r| r.get(0))
        .optional()?)
}

fn dag_cbor_cid(d: &Digest) -> Cid {
    let mh = cid::multihash::Multihash::wrap(crate::data::MULTIHASH_SHA2_256, d).expect("32 bytes fit");
    Cid::new_v1(crate::data::CODEC_DAG_CBOR, mh)
}

/// Counts references from the repo's head: the commit, each MST node, each record (once
/// per key that holds it).
fn count_refs(conn: &Connection, blocks: &mut HashMap<Digest, Loc>, commit: Cid) -> Result<(), StorageError> {
    #[derive(serde::Deserialize)]
    struct CommitData {
        data: Cid,
    }
    let read = |blocks: &HashMap<Digest, Loc>, cid: &Cid| -> Result<Vec<u8>, StorageError> {
        let loc = digest(cid).and_then(|d| blocks.get(&d).copied());
        loc.map(|l| read_at(conn, l))
            .transpose()?
            .flatten()
            .ok_or_else(|| StorageError::Corrupt(format!("block {cid} is missing")))
    };
    let bump = |blocks: &mut HashMap<Digest, Loc>, cid: &Cid| {
        if let Some(l) = digest(cid).and_then(|d| blocks.get_mut(&d)) {
            l.refs += 1;
        }
    };
    bump(blocks, &commit);
    let head: CommitData = serde_ipld_dagcbor::from_slice(&read(blocks, &commit)?)
        .map_err(|e| StorageError::Corrupt(format!("commit {commit}: {e}")))?;
    let mut stack = vec![head.data];
    let mut seen = HashSet::new();
    while let Some(node) = stack.pop() {
        bump(blocks, &node);
        if !seen.insert(node) {
            continue;
        }
        let data: crate::repo::mst::node::NodeData = serde_ipld_dagcbor::from_slice(&read(blocks, &node)?)
            .map_err(|e| StorageError::Corrupt(format!("MST node {node}: {e}")))?;
        stack.extend(data.l);
        for e in data.e {
            bump(blocks, &e.v);
            stack.extend(e.t);
        }
    }
    Ok(())
}

/// A block store over the log for one repo (used by the repo core in write jobs and
/// by readers).
pub struct LogBlocks<'a> {
    pub log: &'a RepoLog,
    pub conn: &'a Connection,
    pub did: &'a str,
}

impl BlockStore for LogBlocks<'_> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        self.log.get(self.conn, self.did, cid).map_err(|e| RepoError::Storage(e.to_string()))
    }
}

/// Schema migration 5: moves blocks and events from the old `repo_block` and
/// `repo_event` tables into the log (run once, inside the migration's transaction).
pub(super) fn import_legacy_tables(conn: &Connection) -> Result<(), StorageError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut builder = RowBuilder::default();
    let mut events = conn.prepare("SELECT seq, did, kind, event FROM repo_event ORDER BY seq")?;
    let mut rows = events.query([])?;
    while let Some(r) = rows.next()? {
        let (seq, did, kind, frame): (i64, String, String, Vec<u8>) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let kind = super::events::Kind::from_name(&kind) as u8;
        builder.event(&did, kind, seq, 0, &frame, None);
    }
    let mut stmt = conn.prepare("SELECT did, cid, rev, bytes FROM repo_block ORDER BY did, rev")?;
    let blocks: Vec<(String, Cid, u64, Vec<u8>)> = stmt
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
        })?
        .map(|row| {
            let (did, cid, rev, bytes) = row?;
            let cid = Cid::try_from(cid).map_err(|e| StorageError::Corrupt(format!("stored CID: {e}")))?;
            let rev = crate::syntax::Tid::new(rev).map(|t| t.to_u64()).unwrap_or(0);
            Ok((did, cid, rev, bytes))
        })
        .collect::<Result<_, StorageError>>()?;
    builder.blocks(blocks.iter().map(|(d, c, r, b)| (d.as_str(), *r, c, b.as_slice())).collect());
    for row in &builder.rows {
        conn.execute("INSERT INTO repo_log (written_ms, data) VALUES (?1, ?2)", params![now_ms, row])?;
    }
    Ok(())
}
