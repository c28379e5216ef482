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
//!   sections are inside it), or a run of blocks in CAR-section form. Rows are stored
//!   deflated: a batch's frames repeat the same CIDs and MST nodes (every commit
//!   names the previous one, the proofs share the tree's right edge), so a row
//!   shrinks about fourfold — fewer pages to write, twice. Recently read rows are
//!   kept inflated in a small cache.
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
//!   [`pack`](RepoLog::pack) copies the live blocks of small or mostly dead event rows
//!   into dense rows and keeps the rows for their events, so reading a repo built by
//!   many small commits inflates a few rows, not one per commit.
//!
//! Hand-written because it is the storage engine the issue asks us to own; the SQL is
//! two statements.

mod compact;
mod export;
mod row;

pub(super) use compact::import_legacy_tables;
pub use row::Kind;
use row::{
    corrupt, entry_blocks, inflate, insert_row, parse_row, read_row, RowBuilder, ROW_TARGET,
    TAG_EVENT,
};

use super::StorageError;
use crate::data::Cid;
use crate::repo::{BlockStore, RepoError};
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

/// A block's key: the sha2-256 digest of its bytes (every atproto CID uses it).
pub type Digest = [u8; 32];

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
    Block {
        did: String,
        cid: Cid,
        bytes: Arc<Vec<u8>>,
        rev: u64,
    },
    /// One more (or one fewer) reference to a block; at zero it is dead.
    Ref {
        did: String,
        digest: Digest,
        delta: i32,
    },
    /// An event; `car` locates the CAR inside the frame when it carries blocks.
    Event {
        seq: i64,
        did: String,
        kind: u8,
        frame: Arc<Vec<u8>>,
        car: Option<std::ops::Range<usize>>,
        rev: u64,
    },
    /// Every block of a repo is dead (account deleted, repo replaced by an import).
    DropRepo { did: String },
}

/// A block of a repo.
type BlockKey = (String, Digest);

/// An event as stored.
pub struct StoredEvent {
    pub seq: i64,
    pub did: String,
    pub kind: u8,
    pub frame: Vec<u8>,
}

/// The log's index, shared by the writer and every reader.
#[derive(Default)]
pub struct RepoLog {
    index: RwLock<Index>,
    /// Blocks of the batch being committed, for later jobs of the same batch.
    pending: Mutex<HashMap<BlockKey, Arc<Vec<u8>>>>,
    /// The most recently read rows, inflated, newest last.
    recent: Mutex<Vec<(i64, Arc<Vec<u8>>)>>,
}

/// Rows kept inflated (at most `ROW_TARGET` each, bigger ones are not cached).
const RECENT_ROWS: usize = 16;

impl RepoLog {
    /// Rebuilds the index from the durable rows and the repos' heads.
    pub fn load(conn: &Connection) -> Result<RepoLog, StorageError> {
        let log = RepoLog::default();
        let mut index = Index::default();
        let mut all: HashMap<String, HashMap<Digest, Loc>> = HashMap::new();
        let mut copies: HashMap<String, HashSet<Digest>> = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, written_ms, data FROM repo_log ORDER BY id")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (id, written_ms, stored): (i64, i64, Vec<u8>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let data = inflate(id, &stored)?;
            let mut info = RowInfo {
                bytes: data.len() as u64,
                written_ms,
                ..Default::default()
            };
            for e in parse_row(id, &data)? {
                if e.tag == TAG_EVENT {
                    info.seqs = Some(
                        info.seqs
                            .map_or((e.seq, e.seq), |(a, b)| (a.min(e.seq), b.max(e.seq))),
                    );
                }
                let repo = all.entry(e.did.to_owned()).or_default();
                // Where a block is stored more than once, the newest copy in a blocks
                // entry (packing and compaction write those) holds it, as while running:
                // a later commit's frame that carries the block again as a proof does
                // not move it.
                // Its revision is the newest of any copy: a block that died and came
                // back must count as written then (for `getRepo?since=`); one that did
                // not only goes out once more.
                let copied = copies.entry(e.did.to_owned()).or_default();
                for (cid, range) in entry_blocks(id, &e)? {
                    let Some(d) = digest(&cid) else { continue };
                    let rev = repo.get(&d).map_or(e.rev, |l| l.rev.max(e.rev));
                    if e.tag == TAG_EVENT && copied.contains(&d) {
                        repo.get_mut(&d).expect("copied above").rev = rev;
                        continue;
                    }
                    if e.tag != TAG_EVENT {
                        copied.insert(d);
                    }
                    let loc = Loc {
                        row: id,
                        off: range.start as u32,
                        len: range.len() as u32,
                        refs: 0,
                        rev,
                    };
                    repo.insert(d, loc);
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
            if let Err(e) = log.count_refs(conn, &mut blocks, head.commit) {
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
        *log.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        Ok(log)
    }

    /// A block of `did`'s repo (committed, or queued earlier in the current batch).
    ///
    /// Call it with no statement open on `conn`: an open statement holds the
    /// connection's read snapshot, which cannot see rows that packing or compaction
    /// wrote after it began — and the index may already point there.
    pub fn get(
        &self,
        conn: &Connection,
        did: &str,
        cid: &Cid,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(d) = digest(cid) else {
            return Ok(None);
        };
        if let Some(b) = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(did.to_owned(), d))
        {
            return Ok(Some(b.to_vec()));
        }
        // A compaction may move the block between the lookup and the read; look again.
        for _ in 0..50 {
            let loc = self
                .read_index()
                .repos
                .get(did)
                .and_then(|r| r.get(&d).copied());
            let Some(loc) = loc else { return Ok(None) };
            if let Some(bytes) = self.read_at(conn, loc)? {
                return Ok(Some(bytes));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Err(StorageError::Corrupt(format!(
            "block {cid} of {did} is indexed but not stored"
        )))
    }

    /// The live blocks of a repo written after revision `since` (all with `None`).
    pub fn cids_since(&self, did: &str, since: Option<u64>) -> Vec<Cid> {
        let index = self.read_index();
        let Some(repo) = index.repos.get(did) else {
            return Vec::new();
        };
        repo.iter()
            .filter(|(_, l)| since.is_none_or(|s| l.rev > s))
            .map(|(d, _)| dag_cbor_cid(d))
            .collect()
    }

    /// The revision (a TID as its integer) whose commit wrote a live block.
    pub fn block_rev(&self, did: &str, cid: &Cid) -> Option<u64> {
        let d = digest(cid)?;
        Some(self.read_index().repos.get(did)?.get(&d)?.rev)
    }

    /// How many rows hold a repo's live blocks: what reading the whole repo inflates.
    pub fn rows_holding(&self, did: &str) -> usize {
        let index = self.read_index();
        let rows: HashSet<i64> = index
            .repos
            .get(did)
            .map(|r| r.values().map(|l| l.row).collect())
            .unwrap_or_default();
        rows.len()
    }

    /// How many live blocks a repo has.
    pub fn block_count(&self, did: &str) -> usize {
        self.read_index().repos.get(did).map_or(0, HashMap::len)
    }

    /// Stored bytes in the log and how many of them are live blocks.
    pub fn sizes(&self) -> (u64, u64) {
        let index = self.read_index();
        index
            .rows
            .values()
            .fold((0, 0), |(b, l), r| (b + r.bytes, l + r.live))
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

    /// Makes the next event's seq at least `floor`: a box restored from a backup goes
    /// on above any number the old box may have used after that backup (relays refuse
    /// a seq they have seen). Call before any write (the writer numbers from here).
    pub fn raise_next_seq(&self, floor: i64) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        index.last_seq = index.last_seq.max(floor - 1);
    }

    /// Rows holding events after `cursor`, oldest first.
    pub fn event_rows_after(&self, cursor: i64) -> Vec<i64> {
        let index = self.read_index();
        let from = index
            .events
            .range(..=cursor)
            .next_back()
            .map_or(i64::MIN, |(s, _)| *s);
        index.events.range(from..).map(|(_, row)| *row).collect()
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a successful job's new blocks visible to the rest of its batch.
    pub fn stage(&self, changes: &[Change]) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for c in changes {
            if let Change::Block {
                did, cid, bytes, ..
            } = c
            {
                if let Some(d) = digest(cid) {
                    pending.insert((did.clone(), d), bytes.clone());
                }
            }
        }
    }

    /// Writes a batch's rows (inside the writer's open transaction). Hand the result
    /// to [`apply`](Self::apply) once the transaction is durable.
    pub fn write_rows(
        &self,
        conn: &Connection,
        changes: &[Change],
        now_ms: i64,
    ) -> Result<Written, StorageError> {
        let mut builder = RowBuilder::default();
        for c in changes {
            if let Change::Event {
                seq,
                did,
                kind,
                frame,
                car,
                rev,
            } = c
            {
                builder.event(did, *kind, *seq, *rev, frame, car.as_ref());
            }
        }
        builder.blocks(
            changes
                .iter()
                .filter_map(|c| match c {
                    Change::Block {
                        did,
                        cid,
                        bytes,
                        rev,
                    } => Some((did.as_str(), *rev, cid, bytes.as_slice())),
                    _ => None,
                })
                .collect(),
        );
        let ids = builder
            .rows
            .iter()
            .map(|row| insert_row(conn, now_ms, row).map(|(id, _)| id))
            .collect::<Result<_, _>>()?;
        Ok(Written {
            builder,
            ids,
            now_ms,
        })
    }

    /// Applies a durable batch to the index, in the order its jobs made the changes.
    pub fn apply(&self, changes: Vec<Change>, written: Written) {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let Written {
            builder,
            ids,
            now_ms,
        } = written;
        for (i, id) in ids.iter().enumerate() {
            let seqs = builder.seqs[i];
            index.rows.insert(
                *id,
                RowInfo {
                    bytes: builder.rows[i].len() as u64,
                    live: 0,
                    seqs,
                    written_ms: now_ms,
                },
            );
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
                    let Some((i, range)) = builder.placed.get(&(did.clone(), d)) else {
                        continue;
                    };
                    let loc = Loc {
                        row: ids[*i],
                        off: range.start as u32,
                        len: range.len() as u32,
                        refs: 0,
                        rev,
                    };
                    if let std::collections::hash_map::Entry::Vacant(v) =
                        index.repos.entry(did.clone()).or_default().entry(d)
                    {
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
            if repo
                .as_ref()
                .and_then(|r| r.get(&d))
                .is_some_and(|l| l.refs == 0)
            {
                repo.expect("checked").remove(&d);
            }
        }
        drop(index);
        // The next commit to each repo reads the nodes this one wrote: keep them at hand.
        for (id, row) in ids.iter().zip(builder.rows) {
            self.remember(*id, Arc::new(row));
        }
        self.discard();
    }

    /// Forgets the staged blocks of a batch (after it committed or failed).
    pub fn discard(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The events stored in `row` with seq after `cursor`.
    pub fn events_in(
        &self,
        conn: &Connection,
        row: i64,
        cursor: i64,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        let Some(data) = self.row(conn, row)? else {
            return Ok(Vec::new());
        };
        Ok(parse_row(row, &data)?
            .into_iter()
            .filter(|e| e.tag == TAG_EVENT && e.seq > cursor)
            .map(|e| StoredEvent {
                seq: e.seq,
                did: e.did.to_owned(),
                kind: e.kind,
                frame: e.payload.to_vec(),
            })
            .collect())
    }
}

impl Index {
    fn add_ref(&mut self, did: &str, d: &Digest, delta: i32) {
        let Some(loc) = self.repos.get_mut(did).and_then(|r| r.get_mut(d)) else {
            return;
        };
        let was = loc.refs;
        loc.refs = loc.refs.saturating_add_signed(delta);
        let (now, loc) = (loc.refs, *loc);
        if was == 0 && now > 0 {
            if let Some(row) = self.rows.get_mut(&loc.row) {
                row.live += u64::from(loc.len);
            }
        } else if was > 0 && now == 0 {
            self.repos.get_mut(did).expect("found above").remove(d);
            self.mark_dead(&Loc { refs: was, ..loc });
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

impl RepoLog {
    /// A row, inflated (from the cache when recently read); `None` if it is gone.
    fn row(&self, conn: &Connection, id: i64) -> Result<Option<Arc<Vec<u8>>>, StorageError> {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = recent.iter().position(|(r, _)| *r == id) {
            let hit = recent.remove(i);
            recent.push(hit.clone());
            return Ok(Some(hit.1));
        }
        drop(recent);
        let Some(row) = read_row(conn, id)? else {
            return Ok(None);
        };
        let row = Arc::new(row);
        self.remember(id, row.clone());
        Ok(Some(row))
    }

    /// Keeps an inflated row in the cache of recent rows (small rows only).
    fn remember(&self, id: i64, row: Arc<Vec<u8>>) {
        if row.len() <= ROW_TARGET * 2 {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            if recent.len() >= RECENT_ROWS {
                recent.remove(0);
            }
            recent.push((id, row));
        }
    }

    fn read_at(&self, conn: &Connection, loc: Loc) -> Result<Option<Vec<u8>>, StorageError> {
        let Some(row) = self.row(conn, loc.row)? else {
            return Ok(None);
        };
        let range = loc.off as usize..(loc.off + loc.len) as usize;
        row.get(range)
            .map(|b| Some(b.to_vec()))
            .ok_or_else(|| corrupt(loc.row, "a block lies outside its row"))
    }

    /// Counts references from the repo's head: the commit, each MST node, each record
    /// (once per key that holds it).
    fn count_refs(
        &self,
        conn: &Connection,
        blocks: &mut HashMap<Digest, Loc>,
        commit: Cid,
    ) -> Result<(), StorageError> {
        #[derive(serde::Deserialize)]
        struct CommitData {
            data: Cid,
        }
        let read = |blocks: &HashMap<Digest, Loc>, cid: &Cid| -> Result<Vec<u8>, StorageError> {
            let loc = digest(cid).and_then(|d| blocks.get(&d).copied());
            loc.map(|l| self.read_at(conn, l))
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
            let data = crate::repo::mst::codec::decode(&read(blocks, &node)?)
                .map_err(|e| StorageError::Corrupt(format!("MST node {node}: {e}")))?;
            stack.extend(data.l);
            for e in data.e {
                bump(blocks, &e.v);
                stack.extend(e.t);
            }
        }
        Ok(())
    }
}

fn dag_cbor_cid(d: &Digest) -> Cid {
    let mh =
        cid::multihash::Multihash::wrap(crate::data::MULTIHASH_SHA2_256, d).expect("32 bytes fit");
    Cid::new_v1(crate::data::CODEC_DAG_CBOR, mh)
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
        self.log
            .get(self.conn, self.did, cid)
            .map_err(|e| RepoError::Storage(e.to_string()))
    }
}
