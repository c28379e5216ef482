//! MST nodes: the in-memory form, the wire form (`l`, `e[]` of `p`,`k`,`v`,`t`) and
//! the conversions between them, plus key heights.
//!
//! In memory a node is a left subtree, then entries each followed by a right subtree;
//! subtrees are [`Link`]s that are loaded lazily. A node at layer `L` holds exactly the
//! keys of height `L` in its range, and its subtrees are nodes at layer `L - 1` (a
//! subtree whose range has keys, but none of height `L - 1`, is a node with no entries
//! and only a left link). This shape is a pure function of the key set, which is why
//! every implementation computes the same root CID.

use super::codec;
use crate::data::Cid;
use crate::repo::RepoError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest key atbox accepts in a tree (repo paths are `collection/rkey`: an NSID of at
/// most 317 characters, a slash and a record key of at most 512).
pub const MAX_KEY_LEN: usize = 1024;

/// The layer of a key: leading zero bits of SHA-256(key), counted in pairs (fanout ~4).
pub fn key_height(key: &[u8]) -> u32 {
    let digest = Sha256::digest(key);
    let mut zeros = 0;
    for byte in digest {
        if byte == 0 {
            zeros += 8;
        } else {
            zeros += byte.leading_zeros();
            break;
        }
    }
    zeros / 2
}

/// Number of leading bytes `a` and `b` share.
pub fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks that a key is a valid repo path as the MST stores them: `collection/rkey`,
/// ASCII from the record-key alphabet, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &[u8]) -> Result<(), RepoError> {
    let bad = |why: &str| {
        Err(RepoError::InvalidMst(format!(
            "key {:?}: {why}",
            String::from_utf8_lossy(key)
        )))
    };
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return bad("must be 1 to 1024 bytes");
    }
    let allowed =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'~' | b'/');
    if !key.iter().all(allowed) {
        return bad("has a character outside the repo path alphabet");
    }
    let slashes = key.iter().filter(|&&b| b == b'/').count();
    if slashes != 1 || key[0] == b'/' || key[key.len() - 1] == b'/' {
        return bad("must be collection/rkey");
    }
    Ok(())
}

/// A pointer to a subtree: a CID not yet read, or the node itself.
#[derive(Debug, Clone)]
pub enum Link {
    Stored(Cid),
    Loaded(Box<Node>),
}

/// A leaf and the subtree to its right.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub value: Cid,
    pub right: Option<Link>,
}

/// One MST node in memory.
#[derive(Debug, Clone)]
pub struct Node {
    pub layer: u32,
    pub left: Option<Link>,
    pub entries: Vec<Entry>,
    /// The CID this node was loaded from, while it is unchanged. `None` once modified
    /// (or for a node built in memory), which tells [`persist`](super::Mst::persist)
    /// that it needs encoding.
    pub stored_as: Option<Cid>,
}

/// The wire form of a node.
#[derive(Debug, Serialize, Deserialize)]
pub struct NodeData {
    pub l: Option<Cid>,
    pub e: Vec<EntryData>,
}

/// The wire form of an entry: `k` is the key's suffix after the `p` bytes it shares
/// with the previous key in the same node.
#[derive(Debug, Serialize, Deserialize)]
pub struct EntryData {
    pub p: u64,
    #[serde(with = "serde_bytes")]
    pub k: Vec<u8>,
    pub v: Cid,
    pub t: Option<Cid>,
}

impl Node {
    pub fn empty(layer: u32) -> Node {
        Node {
            layer,
            left: None,
            entries: Vec::new(),
            stored_as: None,
        }
    }

    /// A node with no entries and no subtree: only valid as the root of an empty tree.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.left.is_none()
    }

    /// The subtree in gap `i`: left of entry `i` (gap 0 is `left`, gap `i` is the right
    /// subtree of entry `i - 1`).
    pub fn gap(&self, i: usize) -> &Option<Link> {
        if i == 0 {
            &self.left
        } else {
            &self.entries[i - 1].right
        }
    }

    pub fn gap_mut(&mut self, i: usize) -> &mut Option<Link> {
        if i == 0 {
            &mut self.left
        } else {
            &mut self.entries[i - 1].right
        }
    }

    /// Index of the first entry whose key is `>= key`, and whether it is equal.
    pub fn search(&self, key: &str) -> (usize, bool) {
        match self.entries.binary_search_by(|e| e.key.as_str().cmp(key)) {
            Ok(i) => (i, true),
            Err(i) => (i, false),
        }
    }

    /// Decodes a node block, checking the rules that can be checked locally: canonical
    /// CBOR, valid keys in strictly ascending order, every key of height `layer`, and no
    /// subtrees below layer 0. `layer` is `None` for a root, whose layer comes from its keys.
    pub fn decode(cid: Cid, bytes: &[u8], layer: Option<u32>) -> Result<Node, RepoError> {
        let bad = |why: String| RepoError::InvalidMst(format!("node {cid}: {why}"));
        let data = codec::decode(bytes).map_err(|e| RepoError::BadBlock {
            cid: Box::new(cid),
            source: e,
        })?;
        let mut entries = Vec::with_capacity(data.e.len());
        for e in data.e {
            let prev: &[u8] = entries.last().map_or(&[], |x: &Entry| x.key.as_bytes());
            let p = usize::try_from(e.p).unwrap_or(usize::MAX);
            if p > prev.len() {
                return Err(bad(format!("prefix length {} exceeds previous key", e.p)));
            }
            let mut key = Vec::with_capacity(p + e.k.len());
            key.extend_from_slice(&prev[..p]);
            key.extend_from_slice(&e.k);
            check_key(&key)?;
            if !entries.is_empty() && key.as_slice() <= prev {
                return Err(bad("keys are not in ascending order".into()));
            }
            entries.push(Entry {
                key: String::from_utf8(key).expect("checked ASCII"),
                value: e.v,
                right: e.t.map(Link::Stored),
            });
        }
        let layer = match (layer, entries.first()) {
            (Some(l), _) => l,
            (None, Some(first)) => key_height(first.key.as_bytes()),
            (None, None) => 0,
        };
        for e in &entries {
            let h = key_height(e.key.as_bytes());
            if h != layer {
                return Err(bad(format!(
                    "key {:?} has height {h} but sits on layer {layer}",
                    e.key
                )));
            }
        }
        let node = Node {
            layer,
            left: data.l.map(Link::Stored),
            entries,
            stored_as: Some(cid),
        };
        if layer == 0 && (node.left.is_some() || node.entries.iter().any(|e| e.right.is_some())) {
            return Err(bad("a layer-0 node has a subtree".into()));
        }
        Ok(node)
    }

    /// The node's block: the canonical DAG-CBOR of its wire form. All subtrees must
    /// already be stored (persisted bottom-up).
    pub fn encode(&self) -> Vec<u8> {
        let key_bytes = self.entries.iter().map(|e| e.key.len()).sum();
        let mut enc = codec::Encoder::new(self.entries.len(), key_bytes);
        let mut prev: &[u8] = &[];
        for e in &self.entries {
            let key = e.key.as_bytes();
            let p = common_prefix_len(prev, key);
            enc.entry(p as u64, &key[p..], stored_cid(&e.right).as_ref(), &e.value);
            prev = key;
        }
        enc.finish(stored_cid(&self.left).as_ref())
    }
}

/// The CID a subtree link points at; subtrees are persisted before their parent.
fn stored_cid(link: &Option<Link>) -> Option<Cid> {
    match link {
        None => None,
        Some(Link::Stored(c)) => Some(*c),
        Some(Link::Loaded(n)) => Some(
            n.stored_as
                .expect("subtrees are persisted before their parent"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn height_counts_zero_bit_pairs() {
        assert_eq!(key_height(b""), 0);
        assert_eq!(key_height(b"blue"), 1);
        assert_eq!(key_height(b"app.bsky.feed.post/9adeb165882c"), 8);
    }

    #[test]
    fn keys_must_be_repo_paths() {
        assert!(check_key(b"app.bsky.feed.post/3k2a").is_ok());
        for bad in [
            &b""[..],
            b"noslash",
            b"/x",
            b"x/",
            b"a/b/c",
            b"a b/c",
            &[b'a'; 1025],
        ] {
            assert!(
                check_key(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
