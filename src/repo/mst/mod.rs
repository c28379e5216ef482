//! The Merkle Search Tree that maps repo paths (`collection/rkey`) to record CIDs.
//!
//! [`Mst`] edits a tree in place: nodes are read from the block store only along the
//! paths an operation touches, changed nodes are marked dirty, and
//! [`persist`](Mst::persist) encodes just those, bottom-up — so a write costs the new
//! record plus one new node per layer, never a rewrite of unchanged nodes.
//!
//! Shape invariants (see [`node`]): a node on layer `L` holds the keys of height `L` in
//! its range; its subtrees are on layer `L - 1`; a subtree with keys but none of its own
//! height is a node with only a left link; the root is the node of the highest key
//! height and is never such a leafless node (the empty tree is a root with nothing).

pub mod codec;
mod diff;
pub mod node;
mod proof;

pub use diff::{diff, MstDiff};
pub use node::{common_prefix_len, key_height, MAX_KEY_LEN};

use crate::data::Cid;
use crate::repo::{BlockMap, BlockStore, RepoError};
use node::{check_key, Entry, Link, Node};

/// A Merkle Search Tree over a block store.
pub struct Mst<S: BlockStore> {
    store: Reads<S>,
    root: Node,
}

/// The tree's block store, remembering which nodes were read: every node an edit
/// changes or drops was read first, so after [`Mst::persist`] the nodes read that the
/// tree no longer holds are exactly the ones the new tree dropped.
struct Reads<S> {
    inner: S,
    read: std::cell::RefCell<Vec<Cid>>,
}

impl<S: BlockStore> BlockStore for Reads<S> {
    fn get_block(&self, cid: &Cid) -> Result<Option<Vec<u8>>, RepoError> {
        self.read.borrow_mut().push(*cid);
        self.inner.get_block(cid)
    }
}

impl<S> Reads<S> {
    fn new(inner: S) -> Self {
        Reads {
            inner,
            read: Default::default(),
        }
    }
}

/// The CIDs of the nodes the in-memory part of the tree holds: its loaded nodes (as
/// last persisted) and the subtrees it links to without having read them.
fn held_nodes(node: &Node, out: &mut std::collections::HashSet<Cid>) {
    if let Some(cid) = node.stored_as {
        out.insert(cid);
    }
    let links = std::iter::once(&node.left).chain(node.entries.iter().map(|e| &e.right));
    for link in links.flatten() {
        match link {
            Link::Stored(cid) => {
                out.insert(*cid);
            }
            Link::Loaded(child) => held_nodes(child, out),
        }
    }
}

/// Reads a subtree into memory (if it is not already) and returns it.
fn load_link<'n>(
    store: &dyn BlockStore,
    link: &'n mut Link,
    layer: u32,
) -> Result<&'n mut Node, RepoError> {
    if let Link::Stored(cid) = *link {
        let bytes = store.require_block(&cid)?;
        let node = Node::decode(cid, &bytes, Some(layer))?;
        if node.is_empty() {
            return Err(RepoError::InvalidMst(format!(
                "node {cid}: an empty node inside the tree"
            )));
        }
        *link = Link::Loaded(Box::new(node));
    }
    match link {
        Link::Loaded(node) => Ok(node),
        Link::Stored(_) => unreachable!("replaced above"),
    }
}

/// Takes a subtree out of its link, loading it if needed.
fn take_node(store: &dyn BlockStore, link: Link, layer: u32) -> Result<Box<Node>, RepoError> {
    let mut link = link;
    load_link(store, &mut link, layer)?;
    match link {
        Link::Loaded(node) => Ok(node),
        Link::Stored(_) => unreachable!("loaded above"),
    }
}

fn child_layer(node: &Node) -> Result<u32, RepoError> {
    node.layer
        .checked_sub(1)
        .ok_or_else(|| RepoError::InvalidMst("a layer-0 node has a subtree".into()))
}

/// A node holding just `key` on layer `height`, wrapped in leafless nodes up to `layer`.
fn chain(key: &str, value: Cid, height: u32, layer: u32) -> Node {
    let mut node = Node::empty(height);
    node.entries.push(Entry {
        key: key.to_owned(),
        value,
        right: None,
    });
    while node.layer < layer {
        let mut parent = Node::empty(node.layer + 1);
        parent.left = Some(Link::Loaded(Box::new(node)));
        node = parent;
    }
    node
}

fn into_link(node: Node) -> Option<Link> {
    (!node.is_empty()).then(|| Link::Loaded(Box::new(node)))
}

fn insert(
    store: &dyn BlockStore,
    node: &mut Node,
    key: &str,
    height: u32,
    value: Cid,
) -> Result<Option<Cid>, RepoError> {
    let (i, found) = node.search(key);
    if height == node.layer {
        if found {
            let old = std::mem::replace(&mut node.entries[i].value, value);
            if old != value {
                node.stored_as = None;
            }
            return Ok(Some(old));
        }
        let gap = node.gap_mut(i).take();
        let (lo, hi) = match gap {
            None => (None, None),
            Some(link) => split(store, link, key, child_layer(node)?)?,
        };
        *node.gap_mut(i) = lo;
        node.entries.insert(
            i,
            Entry {
                key: key.to_owned(),
                value,
                right: hi,
            },
        );
        node.stored_as = None;
        return Ok(None);
    }
    let layer = child_layer(node)?;
    let previous = match node.gap_mut(i) {
        gap @ None => {
            *gap = Some(Link::Loaded(Box::new(chain(key, value, height, layer))));
            None
        }
        Some(link) => {
            let child = load_link(store, link, layer)?;
            let previous = insert(store, child, key, height, value)?;
            if child.stored_as.is_some() {
                return Ok(previous); // unchanged (an update to the same value)
            }
            previous
        }
    };
    node.stored_as = None;
    Ok(previous)
}

/// Splits a subtree around `key` (which it does not contain) into the parts below and above.
fn split(
    store: &dyn BlockStore,
    link: Link,
    key: &str,
    layer: u32,
) -> Result<(Option<Link>, Option<Link>), RepoError> {
    let mut node = take_node(store, link, layer)?;
    let (i, _) = node.search(key);
    let (lo, hi) = match node.gap_mut(i).take() {
        None => (None, None),
        Some(gap) => split(store, gap, key, child_layer(&node)?)?,
    };
    // A key beyond either edge leaves the node whole: keep it (and its CID) as it was.
    if i == 0 && lo.is_none() {
        node.left = hi;
        mark_dirty_unless_clean(&mut node, 0);
        return Ok((None, Some(Link::Loaded(node))));
    }
    if i == node.entries.len() && hi.is_none() {
        *node.gap_mut(i) = lo;
        mark_dirty_unless_clean(&mut node, i);
        return Ok((Some(Link::Loaded(node)), None));
    }
    let right_entries = node.entries.split_off(i);
    let mut left = Node {
        layer,
        left: node.left.take(),
        entries: std::mem::take(&mut node.entries),
        stored_as: None,
    };
    *left.gap_mut(i) = lo;
    let right = Node {
        layer,
        left: hi,
        entries: right_entries,
        stored_as: None,
    };
    Ok((into_link(left), into_link(right)))
}

/// Whether a link points at an unchanged subtree (one that keeps its stored CID).
fn is_clean(link: &Option<Link>) -> bool {
    match link {
        None | Some(Link::Stored(_)) => true,
        Some(Link::Loaded(n)) => n.stored_as.is_some(),
    }
}

/// After replacing gap `i`, the node is unchanged only if the new subtree is.
fn mark_dirty_unless_clean(node: &mut Node, i: usize) {
    if !is_clean(node.gap(i)) {
        node.stored_as = None;
    }
}

fn delete(
    store: &dyn BlockStore,
    node: &mut Node,
    key: &str,
    height: u32,
) -> Result<Option<Cid>, RepoError> {
    let (i, found) = node.search(key);
    if height == node.layer {
        if !found {
            return Ok(None);
        }
        let entry = node.entries.remove(i);
        let lo = node.gap_mut(i).take();
        let merged = match (lo, entry.right) {
            (None, None) => None,
            (lo, hi) => merge(store, lo, hi, child_layer(node)?)?,
        };
        *node.gap_mut(i) = merged;
        node.stored_as = None;
        return Ok(Some(entry.value));
    }
    if height > node.layer {
        return Ok(None);
    }
    let layer = child_layer(node)?;
    let Some(link) = node.gap_mut(i) else {
        return Ok(None);
    };
    let child = load_link(store, link, layer)?;
    let removed = delete(store, child, key, height)?;
    if removed.is_some() {
        if child.is_empty() {
            *node.gap_mut(i) = None;
        }
        node.stored_as = None;
    }
    Ok(removed)
}

/// Joins two adjacent subtrees (every key of `a` below every key of `b`).
fn merge(
    store: &dyn BlockStore,
    a: Option<Link>,
    b: Option<Link>,
    layer: u32,
) -> Result<Option<Link>, RepoError> {
    let (a, b) = match (a, b) {
        (None, x) | (x, None) => return Ok(x),
        (Some(a), Some(b)) => (a, b),
    };
    let mut a = take_node(store, a, layer)?;
    let mut b = take_node(store, b, layer)?;
    let last = a.entries.len();
    let seam = match (a.gap_mut(last).take(), b.left.take()) {
        (None, None) => None,
        (x, y) => merge(store, x, y, child_layer(&a)?)?,
    };
    *a.gap_mut(last) = seam;
    a.entries.append(&mut b.entries);
    a.stored_as = None;
    Ok(Some(Link::Loaded(a)))
}

/// In-order traversal; `f` returns `false` to stop early.
fn walk(
    store: &dyn BlockStore,
    node: &mut Node,
    f: &mut dyn FnMut(&str, Cid) -> Result<bool, RepoError>,
) -> Result<bool, RepoError> {
    for i in 0..=node.entries.len() {
        if node.gap(i).is_some() {
            let layer = child_layer(node)?;
            let child = load_link(store, node.gap_mut(i).as_mut().expect("checked"), layer)?;
            if !walk(store, child, f)? {
                return Ok(false);
            }
        }
        if let Some(e) = node.entries.get(i) {
            if !f(&e.key, e.value)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn persist_node(node: &mut Node, blocks: &mut BlockMap) -> Cid {
    if let Some(cid) = node.stored_as {
        return cid;
    }
    let links =
        std::iter::once(&mut node.left).chain(node.entries.iter_mut().map(|e| &mut e.right));
    for link in links.flatten() {
        if let Link::Loaded(child) = link {
            persist_node(child, blocks);
        }
    }
    let cid = blocks.put_encoded(node.encode());
    node.stored_as = Some(cid);
    cid
}

impl<S: BlockStore> Mst<S> {
    /// An empty tree.
    pub fn new(store: S) -> Self {
        Mst {
            store: Reads::new(store),
            root: Node::empty(0),
        }
    }

    /// The tree whose root node is `root`. Reads (and checks) the root block only.
    pub fn load(store: S, root: Cid) -> Result<Self, RepoError> {
        let bytes = store.require_block(&root)?;
        let node = Node::decode(root, &bytes, None)?;
        if node.entries.is_empty() && node.left.is_some() {
            return Err(RepoError::InvalidMst(format!(
                "root {root} has no entries, only a subtree"
            )));
        }
        let store = Reads::new(store);
        store.read.borrow_mut().push(root);
        Ok(Mst { store, root: node })
    }

    pub fn store(&self) -> &S {
        &self.store.inner
    }

    /// The value stored under `key`, if any.
    pub fn get(&mut self, key: &str) -> Result<Option<Cid>, RepoError> {
        let store: &dyn BlockStore = &self.store;
        let mut node = &mut self.root;
        loop {
            let (i, found) = node.search(key);
            if found {
                return Ok(Some(node.entries[i].value));
            }
            let layer = match node.layer.checked_sub(1) {
                Some(l) => l,
                None => return Ok(None),
            };
            match node.gap_mut(i) {
                None => return Ok(None),
                Some(link) => node = load_link(store, link, layer)?,
            }
        }
    }

    /// Sets `key` to `value` (adding or replacing); returns the previous value.
    pub fn insert(&mut self, key: &str, value: Cid) -> Result<Option<Cid>, RepoError> {
        check_key(key.as_bytes())?;
        let height = key_height(key.as_bytes());
        if self.root.is_empty() {
            self.root = chain(key, value, height, height);
            return Ok(None);
        }
        while self.root.layer < height {
            let old = std::mem::replace(&mut self.root, Node::empty(0));
            let mut parent = Node::empty(old.layer + 1);
            parent.left = Some(Link::Loaded(Box::new(old)));
            self.root = parent;
        }
        insert(&self.store, &mut self.root, key, height, value)
    }

    /// Removes `key`; returns the value it had.
    pub fn delete(&mut self, key: &str) -> Result<Option<Cid>, RepoError> {
        let height = key_height(key.as_bytes());
        let removed = delete(&self.store, &mut self.root, key, height)?;
        // The root must hold a key: drop leafless roots down to the first real one.
        while self.root.entries.is_empty() {
            let Some(link) = self.root.left.take() else {
                self.root = Node::empty(0);
                break;
            };
            let layer = child_layer(&self.root)?;
            self.root = *take_node(&self.store, link, layer)?;
        }
        Ok(removed)
    }

    /// Encodes every changed node; returns the root CID and the new node blocks.
    pub fn persist(&mut self) -> (Cid, BlockMap) {
        let mut blocks = BlockMap::new();
        let root = persist_node(&mut self.root, &mut blocks);
        (root, blocks)
    }

    /// The nodes of the stored tree that the edits since loading dropped (changed,
    /// merged away or emptied): those read that the tree no longer holds. Sorted.
    /// Call after [`persist`](Self::persist); it needs no block reads, unlike a
    /// [`diff`] of the two roots.
    pub fn dropped_nodes(&self) -> Vec<Cid> {
        let mut held = std::collections::HashSet::new();
        held_nodes(&self.root, &mut held);
        let mut dropped: Vec<Cid> = self
            .store
            .read
            .borrow()
            .iter()
            .filter(|c| !held.contains(*c))
            .copied()
            .collect();
        dropped.sort();
        dropped.dedup();
        dropped
    }

    /// The root CID (encoding any pending changes, whose blocks are discarded).
    pub fn root_cid(&mut self) -> Cid {
        self.persist().0
    }

    /// Visits every `(key, value)` in key order. `f` returns `false` to stop.
    /// Checks on the way that keys ascend strictly across the whole tree.
    pub fn walk(
        &mut self,
        mut f: impl FnMut(&str, Cid) -> Result<bool, RepoError>,
    ) -> Result<(), RepoError> {
        let mut last: Option<String> = None;
        let mut checked = |key: &str, value: Cid| {
            if last.as_deref().is_some_and(|l| l >= key) {
                return Err(RepoError::InvalidMst(format!(
                    "key {key:?} is out of order"
                )));
            }
            last = Some(key.to_owned());
            f(key, value)
        };
        walk(&self.store, &mut self.root, &mut checked)?;
        Ok(())
    }

    /// All `(key, value)` pairs in key order.
    pub fn entries(&mut self) -> Result<Vec<(String, Cid)>, RepoError> {
        let mut out = Vec::new();
        self.walk(|k, v| {
            out.push((k.to_owned(), v));
            Ok(true)
        })?;
        Ok(out)
    }
}
