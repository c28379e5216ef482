//! The MST node's wire form, encoded and decoded by hand.
//!
//! A node block has one shape (`specs/repository`): a map `{e, l}` whose `e` is a list
//! of maps `{k, p, t, v}` — `k` bytes, `p` an unsigned integer, `t` a CID or null, `v` a
//! CID — and `l` a CID or null. Its canonical DAG-CBOR is therefore fixed down to the
//! byte: keys in the order `e, l` and `k, p, t, v` (all one byte long), shortest
//! integer and length headers, CIDs as tag 42 over `0x00 ‖ CID bytes`.
//!
//! Why not serde: this is the repo core's hottest codec (every write reads and writes a
//! node per tree layer, and every import, verification and start-up index walk reads
//! them all). Through `serde_ipld_dagcbor` a write spent ~500 small allocations on
//! nodes (buffered map fields to sort keys, CIDs turned into `Vec`s), and every decode
//! re-encoded the node to prove it canonical. Here the encoder writes into one buffer
//! and the decoder accepts exactly the canonical bytes — anything else (another key
//! order, a missing `t`, a long-form integer, trailing bytes) is refused while reading —
//! so no re-encoding is needed. Tests check both against `serde_ipld_dagcbor`.

use super::node::{EntryData, NodeData};
use crate::data::{Cid, DataError};

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const NULL: u8 = 0xf6;
/// Tag 42 (a CID), in its one-byte-argument form.
const TAG_CID: [u8; 2] = [0xd8, 0x2a];

/// Writes a CBOR head: major type and argument in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A one-character text key (`"e"`, `"k"`, ...): head 0x61, then the character.
fn key(out: &mut Vec<u8>, k: u8) {
    out.extend_from_slice(&[0x61, k]);
}

fn cid(out: &mut Vec<u8>, cid: &Cid) {
    out.extend_from_slice(&TAG_CID);
    head(out, MAJOR_BYTES, cid.encoded_len() as u64 + 1);
    out.push(0x00);
    cid.write_bytes(&mut *out).expect("writing to a Vec");
}

fn nullable_cid(out: &mut Vec<u8>, c: Option<&Cid>) {
    match c {
        Some(c) => cid(out, c),
        None => out.push(NULL),
    }
}

/// Writes a node's block entry by entry, straight from whatever holds the node.
pub struct Encoder {
    out: Vec<u8>,
}

impl Encoder {
    /// Starts a node of `entries` entries whose keys add up to `key_bytes` bytes.
    pub fn new(entries: usize, key_bytes: usize) -> Encoder {
        let mut out = Vec::with_capacity(48 + entries * 96 + key_bytes);
        head(&mut out, MAJOR_MAP, 2);
        key(&mut out, b'e');
        head(&mut out, MAJOR_ARRAY, entries as u64);
        Encoder { out }
    }

    /// The next entry: `k` is the key's suffix after the `p` bytes it shares with the
    /// previous key.
    pub fn entry(&mut self, p: u64, k: &[u8], t: Option<&Cid>, v: &Cid) {
        let out = &mut self.out;
        head(out, MAJOR_MAP, 4);
        key(out, b'k');
        head(out, MAJOR_BYTES, k.len() as u64);
        out.extend_from_slice(k);
        key(out, b'p');
        head(out, MAJOR_UNSIGNED, p);
        key(out, b't');
        nullable_cid(out, t);
        key(out, b'v');
        cid(out, v);
    }

    /// Ends the node with its left subtree.
    pub fn finish(mut self, l: Option<&Cid>) -> Vec<u8> {
        key(&mut self.out, b'l');
        nullable_cid(&mut self.out, l);
        self.out
    }
}

/// Reads a node block, accepting only the canonical encoding.
pub fn decode(bytes: &[u8]) -> Result<NodeData, DataError> {
    let mut r = Reader { bytes, pos: 0 };
    r.expect_head(MAJOR_MAP, 2, "a node is a map of e and l")?;
    r.expect_key(b'e')?;
    let n = r.head_of(MAJOR_ARRAY, "e must be a list")?;
    // An entry takes at least 20 bytes, so a length past that cannot be real; and
    // room is reserved only for what a real node holds: an untrusted block's claimed
    // length never decides an allocation.
    if n > (bytes.len() - r.pos) as u64 / 20 {
        return Err(r.error("e is longer than the block"));
    }
    let mut e = Vec::with_capacity((n as usize).min(64));
    for _ in 0..n {
        r.expect_head(MAJOR_MAP, 4, "an entry is a map of k, p, t and v")?;
        r.expect_key(b'k')?;
        let len = r.head_of(MAJOR_BYTES, "k must be bytes")?;
        let k = r.take(len)?.to_vec();
        r.expect_key(b'p')?;
        let p = r.head_of(MAJOR_UNSIGNED, "p must be an unsigned integer")?;
        r.expect_key(b't')?;
        let t = r.nullable_cid()?;
        r.expect_key(b'v')?;
        let v = r.cid()?;
        e.push(EntryData { p, k, v, t });
    }
    r.expect_key(b'l')?;
    let l = r.nullable_cid()?;
    if r.pos != bytes.len() {
        return Err(r.error("trailing bytes after the node"));
    }
    Ok(NodeData { l, e })
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, why: &str) -> DataError {
        DataError::Cbor(format!("MST node, at byte {}: {why}", self.pos))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], DataError> {
        let n = usize::try_from(n).map_err(|_| self.error("length out of range"))?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| self.error("unexpected end of the block"))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, DataError> {
        Ok(self.take(1)?[0])
    }

    /// A head's major type and argument, refusing arguments not in their shortest form
    /// (and indefinite lengths, which DAG-CBOR does not allow).
    fn head(&mut self) -> Result<(u8, u64), DataError> {
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        let (n, min) = match info {
            0..=23 => return Ok((major, info as u64)),
            24 => (self.byte()? as u64, 24),
            25 => (
                u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")) as u64,
                0x100,
            ),
            26 => (
                u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as u64,
                0x1_0000,
            ),
            27 => (
                u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")),
                0x1_0000_0000,
            ),
            _ => return Err(self.error("indefinite or reserved length")),
        };
        if n < min {
            return Err(DataError::NotCanonical);
        }
        Ok((major, n))
    }

    fn head_of(&mut self, major: u8, why: &str) -> Result<u64, DataError> {
        match self.head()? {
            (m, n) if m == major => Ok(n),
            _ => Err(self.error(why)),
        }
    }

    fn expect_head(&mut self, major: u8, n: u64, why: &str) -> Result<(), DataError> {
        match self.head()? {
            (m, got) if m == major && got == n => Ok(()),
            _ => Err(self.error(why)),
        }
    }

    fn expect_key(&mut self, k: u8) -> Result<(), DataError> {
        if self.take(2).ok() == Some(&[0x61, k][..]) {
            return Ok(());
        }
        Err(self.error(&format!(
            "expected the key {:?} here (keys e, l and k, p, t, v, in that order)",
            k as char
        )))
    }

    fn cid(&mut self) -> Result<Cid, DataError> {
        if self.take(2).ok() != Some(&TAG_CID[..]) {
            return Err(self.error("expected a CID (tag 42)"));
        }
        let len = self.head_of(MAJOR_BYTES, "a CID is a byte string")?;
        let raw = self.take(len)?;
        let Some((&0x00, body)) = raw.split_first() else {
            return Err(self.error("a CID's bytes start with 0x00"));
        };
        let mut rest = body;
        let c = Cid::read_bytes(&mut rest).map_err(|e| DataError::Cid(e.to_string()))?;
        // The CID must be all of the byte string and in its one encoding.
        let mut again = [0u8; 128];
        let written = match c.write_bytes(&mut again[..]) {
            Ok(n) if rest.is_empty() => n,
            _ => return Err(DataError::Cid("a CID with extra bytes".into())),
        };
        if &again[..written] != body {
            return Err(DataError::NotCanonical);
        }
        Ok(c)
    }

    fn nullable_cid(&mut self) -> Result<Option<Cid>, DataError> {
        if self.bytes.get(self.pos) == Some(&NULL) {
            self.pos += 1;
            return Ok(None);
        }
        self.cid().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cid_for_cbor;

    /// The wire form written through the [`Encoder`] (as `Node::encode` does).
    fn encode(node: &NodeData) -> Vec<u8> {
        let mut enc = Encoder::new(node.e.len(), node.e.iter().map(|e| e.k.len()).sum());
        for e in &node.e {
            enc.entry(e.p, &e.k, e.t.as_ref(), &e.v);
        }
        enc.finish(node.l.as_ref())
    }

    fn sample(entries: usize, key_len: usize, with_links: bool) -> NodeData {
        let c = |i: usize| cid_for_cbor(format!("block {i}").as_bytes());
        NodeData {
            l: with_links.then(|| c(0)),
            e: (0..entries)
                .map(|i| EntryData {
                    p: (i * 7 % 300) as u64,
                    k: vec![b'a' + (i % 26) as u8; key_len + i],
                    v: c(i + 1),
                    t: (with_links && i % 2 == 0).then(|| c(i + 100)),
                })
                .collect(),
        }
    }

    #[test]
    fn encodes_as_serde_ipld_dagcbor_does_and_reads_back() {
        for (n, key_len, links) in [
            (0, 0, false),
            (0, 0, true),
            (1, 5, false),
            (4, 20, true),
            (30, 300, true),
        ] {
            let node = sample(n, key_len, links);
            let bytes = encode(&node);
            assert_eq!(bytes, serde_ipld_dagcbor::to_vec(&node).unwrap());
            let back = decode(&bytes).unwrap();
            assert_eq!(encode(&back), bytes);
        }
    }

    #[test]
    fn refuses_every_non_canonical_or_broken_form() {
        let good = encode(&sample(2, 10, true));
        // Every truncation and every trailing byte.
        for end in 0..good.len() {
            assert!(decode(&good[..end]).is_err(), "truncated at {end}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        // Keys out of order: {l, e} instead of {e, l}.
        let empty = encode(&sample(0, 0, false));
        assert_eq!(empty, [0xa2, 0x61, b'e', 0x80, 0x61, b'l', 0xf6]);
        assert!(decode(&[0xa2, 0x61, b'l', 0xf6, 0x61, b'e', 0x80]).is_err());
        // A long-form length for the empty list.
        assert!(matches!(
            decode(&[0xa2, 0x61, b'e', 0x98, 0x00, 0x61, b'l', 0xf6]),
            Err(DataError::NotCanonical)
        ));
        // An indefinite-length list.
        assert!(decode(&[0xa2, 0x61, b'e', 0x9f, 0xff, 0x61, b'l', 0xf6]).is_err());
        // A list claiming more entries than the block could hold.
        assert!(decode(&[0xa2, 0x61, b'e', 0x9a, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Whatever serde_ipld_dagcbor accepts and re-encodes identically, we accept too;
        // and nothing else: flip every byte of a good node and compare the verdicts.
        for i in 0..good.len() {
            for flip in [0x01u8, 0x20, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= flip;
                let ours = decode(&bad).ok().map(|d| encode(&d));
                let reference = crate::data::from_cbor::<NodeData>(&bad)
                    .ok()
                    .map(|d| encode(&d));
                assert_eq!(ours, reference, "byte {i} ^ {flip:#x}");
            }
        }
    }
}
