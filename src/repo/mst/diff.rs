//! The difference between two trees: which keys were created, updated and deleted,
//! and which node blocks the new tree has that the old one lacks.
//!
//! Both trees are walked layer by layer from the top. A node on layer `L` whose CID
//! appears on layer `L` of both trees is the same subtree with the same keys, so it is
//! skipped with everything below it; only the nodes that differ are read. (A node's
//! layer is fixed by its keys, or by its parent for a leafless node, so equal CIDs on
//! equal layers are exactly the shared subtrees.) The cost is proportional to the change,
//! not to the size of the repo.

use super::node::{Link, Node};
use crate::data::Cid;
use crate::repo::{BlockStore, RepoError};
use std::collections::{BTreeMap, BTreeSet};

/// What changed between two trees.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MstDiff {
    /// Keys only in the new tree, with their values.
    pub creates: BTreeMap<String, Cid>,
    /// Keys in both trees whose value changed: `(old, new)`.
    pub updates: BTreeMap<String, (Cid, Cid)>,
    /// Keys only in the old tree, with their old values.
    pub deletes: BTreeMap<String, Cid>,
    /// Node blocks of the new tree that the old tree does not have.
    pub new_nodes: BTreeSet<Cid>,
    /// Node blocks of the old tree that the new tree no longer has.
    pub removed_nodes: BTreeSet<Cid>,
}

/// Compares the tree at `old` (or the empty tree) with the tree at `new`. Every node of
/// both trees that differs must be readable from `store`.
pub fn diff(store: &dyn BlockStore, old: Option<Cid>, new: Cid) -> Result<MstDiff, RepoError> {
    let mut out = MstDiff::default();
    let mut old_leaves: BTreeMap<String, Cid> = BTreeMap::new();
    let mut new_leaves: BTreeMap<String, Cid> = BTreeMap::new();

    let read_root = |cid: Cid| -> Result<Node, RepoError> {
        Node::decode(cid, &store.require_block(&cid)?, None)
    };
    let new_root = read_root(new)?;
    let old_root = old.map(read_root).transpose()?;
    let top = new_root.layer.max(old_root.as_ref().map_or(0, |n| n.layer));

    // Pending nodes per side, keyed by the layer they sit on.
    let mut pending_old: BTreeMap<u32, BTreeSet<Cid>> = BTreeMap::new();
    let mut pending_new: BTreeMap<u32, BTreeSet<Cid>> = BTreeMap::new();
    pending_new.entry(new_root.layer).or_default().insert(new);
    if let (Some(cid), Some(root)) = (old, &old_root) {
        pending_old.entry(root.layer).or_default().insert(cid);
    }

    for layer in (0..=top).rev() {
        let olds = pending_old.remove(&layer).unwrap_or_default();
        let news = pending_new.remove(&layer).unwrap_or_default();
        for (cids, other, leaves, pending, is_new) in [
            (&olds, &news, &mut old_leaves, &mut pending_old, false),
            (&news, &olds, &mut new_leaves, &mut pending_new, true),
        ] {
            for cid in cids {
                if other.contains(cid) {
                    continue; // a shared subtree
                }
                if is_new {
                    out.new_nodes.insert(*cid);
                } else {
                    out.removed_nodes.insert(*cid);
                }
                let node = Node::decode(*cid, &store.require_block(cid)?, Some(layer))?;
                let links =
                    std::iter::once(&node.left).chain(node.entries.iter().map(|e| &e.right));
                for link in links.flatten() {
                    let Link::Stored(child) = link else {
                        unreachable!("decoded nodes hold stored links")
                    };
                    let child_layer = layer.checked_sub(1).ok_or_else(|| {
                        RepoError::InvalidMst(format!("node {cid}: a layer-0 node has a subtree"))
                    })?;
                    pending.entry(child_layer).or_default().insert(*child);
                }
                for e in node.entries {
                    leaves.insert(e.key, e.value);
                }
            }
        }
    }

    for (key, new_value) in new_leaves {
        match old_leaves.remove(&key) {
            None => {
                out.creates.insert(key, new_value);
            }
            Some(old_value) if old_value != new_value => {
                out.updates.insert(key, (old_value, new_value));
            }
            Some(_) => {}
        }
    }
    out.deletes = old_leaves;
    Ok(out)
}
