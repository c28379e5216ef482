//! CAR v1 files (`specs/repository#car-file-serialization`): a header naming the root
//! CIDs, then blocks, each `varint(len) || CID bytes || block bytes`.
//!
//! The writer streams. The reader is strict, since CARs arrive from the network
//! (`importRepo`, other PDSes, relays): every block's CID must be a CIDv1 with sha2-256
//! that matches its bytes, lengths are bounded before anything is allocated, and no
//! input can make it panic (it is fuzzed: `fuzz/fuzz_targets/car_read.rs`).

use super::{BlockMap, RepoError};
use crate::data::{from_cbor, to_cbor, Cid, CODEC_DAG_CBOR, CODEC_RAW, MULTIHASH_SHA2_256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// Largest header atbox reads.
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// Largest block atbox reads: well above atproto's record limit (1 MiB), so a valid repo
/// never hits it, and small enough that a hostile length prefix cannot exhaust memory.
pub const MAX_BLOCK_LEN: usize = 2 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
struct CarHeader {
    roots: Vec<Cid>,
    version: u64,
}

fn car_err(msg: impl Into<String>) -> RepoError {
    RepoError::Car(msg.into())
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Writes a CAR v1 stream.
pub struct CarWriter<W: Write> {
    out: W,
}

impl<W: Write> CarWriter<W> {
    /// Writes the header. atproto repo CARs have exactly one root (the commit).
    pub fn new(mut out: W, roots: &[Cid]) -> std::io::Result<Self> {
        let header = to_cbor(&CarHeader {
            roots: roots.to_vec(),
            version: 1,
        });
        let mut buf = Vec::with_capacity(header.len() + 4);
        write_varint(&mut buf, header.len() as u64);
        buf.extend_from_slice(&header);
        out.write_all(&buf)?;
        Ok(CarWriter { out })
    }

    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> std::io::Result<()> {
        let cid_bytes = cid.to_bytes();
        let mut prefix = Vec::with_capacity(cid_bytes.len() + 4);
        write_varint(&mut prefix, (cid_bytes.len() + data.len()) as u64);
        prefix.extend_from_slice(&cid_bytes);
        self.out.write_all(&prefix)?;
        self.out.write_all(data)
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes a whole CAR into memory.
pub fn write_car(roots: &[Cid], blocks: &BlockMap) -> Vec<u8> {
    let mut w = CarWriter::new(Vec::new(), roots).expect("writing to memory");
    for (cid, data) in blocks.iter() {
        w.write_block(cid, data).expect("writing to memory");
    }
    w.finish().expect("writing to memory")
}

/// Reads a CAR v1 stream block by block.
pub struct CarReader<R: Read> {
    input: R,
    roots: Vec<Cid>,
    /// Bytes consumed so far (for error messages and size accounting).
    offset: u64,
}

/// Reads an unsigned LEB128 varint; `Ok(None)` at a clean end of input.
fn read_varint<R: Read>(input: &mut R, offset: &mut u64) -> Result<Option<u64>, RepoError> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let mut byte = [0u8; 1];
        match input.read(&mut byte) {
            Ok(0) if i == 0 => return Ok(None),
            Ok(0) => return Err(car_err(format!("truncated length prefix at byte {offset}"))),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(car_err(format!("read error: {e}"))),
        }
        *offset += 1;
        let b = byte[0];
        if i == 9 && b > 1 {
            return Err(car_err("length prefix overflows 64 bits"));
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i > 0 && b == 0 {
                return Err(car_err("length prefix is not minimally encoded"));
            }
            return Ok(Some(value));
        }
    }
    Err(car_err("length prefix longer than 10 bytes"))
}

fn read_exact_vec<R: Read>(
    input: &mut R,
    len: usize,
    offset: &mut u64,
) -> Result<Vec<u8>, RepoError> {
    let mut buf = Vec::new();
    input
        .take(len as u64)
        .read_to_end(&mut buf)
        .map_err(|e| car_err(format!("read error: {e}")))?;
    if buf.len() != len {
        return Err(car_err(format!(
            "truncated: wanted {len} bytes at byte {offset}, got {}",
            buf.len()
        )));
    }
    *offset += len as u64;
    Ok(buf)
}

impl<R: Read> CarReader<R> {
    /// Reads and checks the header.
    pub fn new(mut input: R) -> Result<Self, RepoError> {
        let mut offset = 0;
        let len = read_varint(&mut input, &mut offset)?.ok_or_else(|| car_err("empty input"))?;
        if len == 0 || len > MAX_HEADER_LEN as u64 {
            return Err(car_err(format!("header length {len} is out of range")));
        }
        let bytes = read_exact_vec(&mut input, len as usize, &mut offset)?;
        let header: CarHeader = from_cbor(&bytes).map_err(|e| car_err(format!("header: {e}")))?;
        if header.version != 1 {
            return Err(car_err(format!(
                "version {} (only CAR v1 is supported)",
                header.version
            )));
        }
        Ok(CarReader {
            input,
            roots: header.roots,
            offset,
        })
    }

    pub fn roots(&self) -> &[Cid] {
        &self.roots
    }

    /// The next block, checked against its CID; `None` at the end.
    pub fn next_block(&mut self) -> Result<Option<(Cid, Vec<u8>)>, RepoError> {
        let start = self.offset;
        let Some(len) = read_varint(&mut self.input, &mut self.offset)? else {
            return Ok(None);
        };
        if len == 0 || len > (MAX_BLOCK_LEN + 64) as u64 {
            return Err(car_err(format!(
                "block at byte {start}: length {len} is out of range"
            )));
        }
        let section = read_exact_vec(&mut self.input, len as usize, &mut self.offset)?;
        let mut cursor = std::io::Cursor::new(section.as_slice());
        let cid = Cid::read_bytes(&mut cursor)
            .map_err(|e| car_err(format!("block at byte {start}: bad CID: {e}")))?;
        let data = section[cursor.position() as usize..].to_vec();
        check_block(&cid, &data).map_err(|e| car_err(format!("block at byte {start}: {e}")))?;
        Ok(Some((cid, data)))
    }
}

/// Checks that `data` hashes to `cid`, and that the CID is one atproto uses
/// (CIDv1, dag-cbor or raw, sha2-256).
pub fn check_block(cid: &Cid, data: &[u8]) -> Result<(), String> {
    if cid.version() != cid::Version::V1 {
        return Err(format!("{cid} is not a CIDv1"));
    }
    if cid.codec() != CODEC_DAG_CBOR && cid.codec() != CODEC_RAW {
        return Err(format!(
            "{cid} has codec 0x{:x}; only dag-cbor and raw are allowed",
            cid.codec()
        ));
    }
    if cid.hash().code() != MULTIHASH_SHA2_256 || cid.hash().size() != 32 {
        return Err(format!("{cid} is not a sha2-256 hash"));
    }
    if data.len() > MAX_BLOCK_LEN {
        return Err(format!("{cid} is larger than {MAX_BLOCK_LEN} bytes"));
    }
    if Sha256::digest(data)[..] != *cid.hash().digest() {
        return Err(format!("bytes do not hash to {cid}"));
    }
    Ok(())
}

/// Reads a whole CAR: its roots and its blocks (duplicates collapse).
pub fn read_car<R: Read>(input: R) -> Result<(Vec<Cid>, BlockMap), RepoError> {
    let mut reader = CarReader::new(input)?;
    let mut blocks = BlockMap::new();
    while let Some((cid, data)) = reader.next_block()? {
        blocks.insert(cid, data);
    }
    Ok((reader.roots, blocks))
}

/// Where each block sits in a run of CAR sections (`varint(len) || CID || bytes`, no
/// header), as `(cid, byte range of the block's bytes)`. For storage that keeps blocks
/// in CAR-section form and finds them by offset; the bytes are not hashed here (the
/// caller wrote them), but lengths are checked, so bad input is an error, not a panic.
pub fn section_ranges(sections: &[u8]) -> Result<Vec<(Cid, std::ops::Range<usize>)>, RepoError> {
    let mut out = Vec::new();
    let mut input = sections;
    let mut offset = 0u64;
    while let Some(len) = read_varint(&mut input, &mut offset)? {
        let start = offset as usize;
        let end = start
            .checked_add(len as usize)
            .filter(|&e| e <= sections.len())
            .ok_or_else(|| car_err(format!("section at byte {start} runs past the end")))?;
        let mut cursor = std::io::Cursor::new(&sections[start..end]);
        let cid = Cid::read_bytes(&mut cursor)
            .map_err(|e| car_err(format!("section at byte {start}: bad CID: {e}")))?;
        out.push((cid, start + cursor.position() as usize..end));
        input = &sections[end..];
        offset = end as u64;
    }
    Ok(out)
}

/// The byte offset in a whole CAR where its sections begin (after the header).
pub fn sections_start(car: &[u8]) -> Result<usize, RepoError> {
    let mut input = car;
    let mut offset = 0u64;
    let len = read_varint(&mut input, &mut offset)?.ok_or_else(|| car_err("empty input"))?;
    let start = (offset as usize)
        .checked_add(len as usize)
        .filter(|&s| s <= car.len())
        .ok_or_else(|| car_err("header runs past the end"))?;
    Ok(start)
}

/// Appends one CAR section for `cid` and `data` to `out`.
pub fn push_section(out: &mut Vec<u8>, cid: &Cid, data: &[u8]) -> std::ops::Range<usize> {
    let cid_bytes = cid.to_bytes();
    write_varint(out, (cid_bytes.len() + data.len()) as u64);
    out.extend_from_slice(&cid_bytes);
    let start = out.len();
    out.extend_from_slice(data);
    start..out.len()
}
