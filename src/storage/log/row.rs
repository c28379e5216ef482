//! The row format of the repo log: a row is a run of entries, each a fixed header
//! (tag, event kind, DID length, rev, seq, payload length, where the CAR sections are
//! in the payload), the DID, and the payload — an event frame, or blocks in CAR-section
//! form. Rows are stored deflated. [`RowBuilder`] lays out one batch's rows and
//! remembers where each block went.

use super::{digest, Digest};
use crate::data::Cid;
use crate::repo::car::{push_section, section_ranges, sections_start};
use crate::storage::StorageError;
use rusqlite::{params, Connection};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// Rows are cut at about this size, so reading one block never loads much more.
pub(super) const ROW_TARGET: usize = 64 * 1024;
/// Largest row inflated (a bound against a damaged database, far above any row).
const MAX_ROW: u64 = 64 * 1024 * 1024;

thread_local! {
    // One compressor and one decompressor per thread, reset between rows: a fresh
    // miniz compressor is ~300 KiB of tables, allocated and zeroed (and, above glibc's
    // mmap threshold, mapped and faulted in) for every row otherwise.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::fast(), false));
    static INFLATE: std::cell::RefCell<flate2::Decompress> =
        std::cell::RefCell::new(flate2::Decompress::new(false));
}

fn deflate(row: &[u8]) -> Vec<u8> {
    DEFLATE.with_borrow_mut(|z| {
        z.reset();
        let mut out = Vec::with_capacity(row.len() / 2 + 64);
        loop {
            let before = z.total_in() as usize;
            let status = z
                .compress_vec(&row[before..], &mut out, flate2::FlushCompress::Finish)
                .expect("deflating to memory");
            if status == flate2::Status::StreamEnd {
                return out;
            }
            out.reserve(out.len().max(4096));
        }
    })
}

/// A row read from the database and inflated (no cache); `None` if it is gone.
pub(super) fn read_row(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>, StorageError> {
    let mut out = Vec::new();
    Ok(read_row_into(conn, id, &mut out)?.then_some(out))
}

/// Reads and inflates a row into `out` (replacing what it held, keeping its capacity:
/// an export reuses one buffer for every row), straight from SQLite's copy of the
/// stored bytes; false if the row is gone.
pub(super) fn read_row_into(
    conn: &Connection,
    id: i64,
    out: &mut Vec<u8>,
) -> Result<bool, StorageError> {
    let mut stmt = conn.prepare_cached("SELECT data FROM repo_log WHERE id = ?1")?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(false);
    };
    let stored = row.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
    inflate_into(id, stored, out)?;
    Ok(true)
}

pub(super) fn inflate(id: i64, stored: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = Vec::new();
    inflate_into(id, stored, &mut out)?;
    Ok(out)
}

fn inflate_into(id: i64, stored: &[u8], out: &mut Vec<u8>) -> Result<(), StorageError> {
    out.clear();
    out.reserve(stored.len() * 4 + 64);
    INFLATE.with_borrow_mut(|z| {
        z.reset(false);
        loop {
            let before = z.total_in() as usize;
            let status = z
                // `None`, not `Finish`: miniz treats `Finish` as "the output buffer holds
                // it all" and cannot resume once the buffer had to grow.
                .decompress_vec(&stored[before..], out, flate2::FlushDecompress::None)
                .map_err(|e| corrupt(id, &format!("cannot inflate: {e}")))?;
            match status {
                flate2::Status::StreamEnd => return Ok(()),
                _ if z.total_in() as usize == stored.len() && out.len() < out.capacity() => {
                    return Err(corrupt(id, "cannot inflate: the row is truncated"))
                }
                _ if out.len() as u64 >= MAX_ROW => {
                    return Err(corrupt(id, "cannot inflate: the row is too large"))
                }
                _ => out.reserve(out.len().max(4096)),
            }
        }
    })
}

/// Stores a row, deflated; returns its id and its stored size.
pub(super) fn insert_row(
    conn: &Connection,
    now_ms: i64,
    row: &[u8],
) -> Result<(i64, usize), StorageError> {
    let stored = deflate(row);
    conn.prepare_cached("INSERT INTO repo_log (written_ms, data) VALUES (?1, ?2)")?
        .execute(params![now_ms, stored])?;
    Ok((conn.last_insert_rowid(), stored.len()))
}

pub(super) const TAG_EVENT: u8 = 1;
const TAG_BLOCKS: u8 = 2;
/// tag, kind, did length, rev, seq, payload length, sections offset and length.
const ENTRY_HEADER: usize = 1 + 1 + 2 + 8 + 8 + 4 + 4 + 4;

/// One entry of a row, borrowed from the row's bytes.
pub(super) struct Entry<'a> {
    pub tag: u8,
    pub kind: u8,
    pub did: &'a str,
    pub rev: u64,
    pub seq: i64,
    pub payload: &'a [u8],
    /// Offset of the payload in the row.
    payload_at: usize,
    sections: Range<usize>,
}

pub(super) fn corrupt(row: i64, what: &str) -> StorageError {
    StorageError::Corrupt(format!("repo_log row {row}: {what}"))
}

pub(super) fn parse_row(row: i64, data: &[u8]) -> Result<Vec<Entry<'_>>, StorageError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let h = data
            .get(at..at + ENTRY_HEADER)
            .ok_or_else(|| corrupt(row, "truncated entry"))?;
        let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]) as usize;
        let u32_at =
            |i: usize| u32::from_le_bytes(h[i..i + 4].try_into().expect("4 bytes")) as usize;
        let u64_at = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().expect("8 bytes"));
        let (did_len, payload_len) = (u16_at(2), u32_at(20));
        let did_at = at + ENTRY_HEADER;
        let payload_at = did_at + did_len;
        let end = payload_at + payload_len;
        let did = data
            .get(did_at..payload_at)
            .and_then(|d| std::str::from_utf8(d).ok())
            .ok_or_else(|| corrupt(row, "bad DID"))?;
        let payload = data
            .get(payload_at..end)
            .ok_or_else(|| corrupt(row, "truncated payload"))?;
        let sections = u32_at(24)..u32_at(24) + u32_at(28);
        if sections.end > payload.len() {
            return Err(corrupt(row, "sections outside the payload"));
        }
        out.push(Entry {
            tag: h[0],
            kind: h[1],
            did,
            rev: u64_at(4),
            seq: u64_at(12) as i64,
            payload,
            payload_at,
            sections,
        });
        at = end;
    }
    Ok(out)
}

/// An entry's header fields (see the module doc).
struct Head<'a> {
    tag: u8,
    kind: u8,
    did: &'a str,
    rev: u64,
    seq: i64,
}

/// Appends an entry; returns where its payload starts in the row.
fn push_entry(row: &mut Vec<u8>, head: Head, payload: &[u8], sections: Range<usize>) -> usize {
    let Head {
        tag,
        kind,
        did,
        rev,
        seq,
    } = head;
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
pub(super) fn entry_blocks(row: i64, e: &Entry) -> Result<Vec<(Cid, Range<usize>)>, StorageError> {
    let base = e.payload_at + e.sections.start;
    Ok(section_ranges(&e.payload[e.sections.clone()])
        .map_err(|err| corrupt(row, &err.to_string()))?
        .into_iter()
        .map(|(cid, r)| (cid, base + r.start..base + r.end))
        .collect())
}

/// The CID written just before the block at `off` (every block in a row is a CAR
/// section: length, CID, bytes), when it is the usual dag-cbor sha2-256 CIDv1: an
/// export names each block without hashing it again.
pub(super) fn cid_before(row: &[u8], off: usize) -> Option<Cid> {
    const PREFIX: [u8; 4] = [0x01, 0x71, 0x12, 0x20];
    let cid = row.get(off.checked_sub(36)?..off)?;
    (cid[..4] == PREFIX).then(|| super::dag_cbor_cid(cid[4..].try_into().expect("32 bytes")))
}

/// Rows being built for one batch, with where each new block went.
#[derive(Default)]
pub struct RowBuilder {
    pub(super) rows: Vec<Vec<u8>>,
    pub(super) placed: HashMap<(String, Digest), (usize, Range<usize>)>,
    pub(super) seqs: Vec<Option<(i64, i64)>>,
}

impl RowBuilder {
    fn row(&mut self, room: usize) -> usize {
        if self
            .rows
            .last()
            .is_none_or(|r| !r.is_empty() && r.len() + room > ROW_TARGET)
        {
            self.rows.push(Vec::new());
            self.seqs.push(None);
        }
        self.rows.len() - 1
    }

    pub(super) fn event(
        &mut self,
        did: &str,
        kind: u8,
        seq: i64,
        rev: u64,
        frame: &[u8],
        car: Option<&Range<usize>>,
    ) {
        // Blocks are found inside the frame's CAR, unless the frame is big (then they
        // get a blocks entry of their own, so reading one never loads a large row).
        let sections = car
            .filter(|_| frame.len() <= ROW_TARGET)
            .and_then(|c| Some(c.start + sections_start(&frame[c.clone()]).ok()?..c.end))
            .unwrap_or(0..0);
        let i = self.row(frame.len());
        let head = Head {
            tag: TAG_EVENT,
            kind,
            did,
            rev,
            seq,
        };
        let at = push_entry(&mut self.rows[i], head, frame, sections.clone());
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
    pub(super) fn blocks(&mut self, blocks: Vec<(&str, u64, &Cid, &[u8])>) {
        type Group<'b> = Vec<(&'b Cid, &'b [u8])>;
        let mut groups: BTreeMap<(&str, u64), Group> = BTreeMap::new();
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
                    let ranges: Vec<_> = chunk
                        .iter()
                        .map(|(c, b)| (**c, push_section(&mut payload, c, b)))
                        .collect();
                    let i = self.row(payload.len());
                    let head = Head {
                        tag: TAG_BLOCKS,
                        kind: 0,
                        did,
                        rev,
                        seq: 0,
                    };
                    let at = push_entry(&mut self.rows[i], head, &payload, 0..payload.len());
                    for (cid, r) in ranges {
                        let d = digest(&cid).expect("checked above");
                        self.placed
                            .insert((did.to_owned(), d), (i, at + r.start..at + r.end));
                    }
                    chunk.clear();
                    size = 0;
                }
            }
        }
    }
}

/// What an event announces (stored with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Commit = 0,
    Sync = 1,
    Identity = 2,
    Account = 3,
}

impl Kind {
    pub fn from_name(name: &str) -> Kind {
        match name {
            "commit" => Kind::Commit,
            "sync" => Kind::Sync,
            "identity" => Kind::Identity,
            _ => Kind::Account,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{deflate, inflate};

    /// Rows of every size round-trip through the reused (de)compressor, including rows
    /// that compress badly (more output than the first buffer holds) and well.
    #[test]
    fn rows_round_trip_through_the_reused_compressor() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect()
        };
        for n in [0, 1, 100, 4095, 4096, 70_000, 300_000] {
            let random = noise(n);
            let repetitive: Vec<u8> = (0..n).map(|i| (i % 7) as u8).collect();
            for row in [random, repetitive] {
                let stored = deflate(&row);
                assert_eq!(inflate(1, &stored).unwrap(), row, "{n} bytes");
            }
        }
        let stored = deflate(&noise(10_000));
        assert!(inflate(1, &stored[..stored.len() / 2]).is_err());
    }
}
