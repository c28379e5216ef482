//! Proofs over the tree: the node blocks a reader needs to check a key's presence or
//! absence ([`Mst::proof`]), and the wider "covering proof" that lets a relay invert an
//! operation on that key (`specs/sync`, sync 1.1: a `#commit` carries enough of the new
//! tree to undo each op and arrive at `prevData`).

use super::node::{Link, Node};
use super::{child_layer, load_link, Mst};
use crate::repo::{BlockMap, BlockStore, RepoError};

/// Which edge of a subtree to follow down.
#[derive(Clone, Copy)]
enum Edge {
    Leftmost,
    Rightmost,
}

fn add_node(node: &Node, proof: &mut BlockMap) {
    let cid = proof.put_encoded(node.encode());
    debug_assert!(
        node.stored_as.is_none_or(|c| c == cid),
        "persisted node re-encodes to its CID"
    );
}

/// Adds the nodes along one edge of a subtree: what merging it with a neighbour reads.
fn add_edge(
    store: &dyn BlockStore,
    link: &mut Option<Link>,
    layer: u32,
    edge: Edge,
    proof: &mut BlockMap,
) -> Result<(), RepoError> {
    let Some(link) = link else { return Ok(()) };
    let node = load_link(store, link, layer)?;
    add_node(node, proof);
    let next = match edge {
        Edge::Leftmost => 0,
        Edge::Rightmost => node.entries.len(),
    };
    if node.gap(next).is_some() {
        let layer = child_layer(node)?;
        add_edge(store, node.gap_mut(next), layer, edge, proof)?;
    }
    Ok(())
}

impl<S: BlockStore> Mst<S> {
    /// The nodes on the search path for `key`: enough to prove it is present with its
    /// value, or absent. Call after [`persist`](Mst::persist).
    pub fn proof(&mut self, key: &str) -> Result<BlockMap, RepoError> {
        self.collect_proof(key, false)
    }

    /// The search path for `key` plus the inner edges of the subtrees beside it: the
    /// blocks needed to delete `key` from this tree, or to insert it back, without any
    /// other part of the tree. Call after [`persist`](Mst::persist).
    pub fn covering_proof(&mut self, key: &str) -> Result<BlockMap, RepoError> {
        self.collect_proof(key, true)
    }

    fn collect_proof(&mut self, key: &str, covering: bool) -> Result<BlockMap, RepoError> {
        let store: &dyn BlockStore = &self.store;
        let mut proof = BlockMap::new();
        let mut node = &mut self.root;
        loop {
            add_node(node, &mut proof);
            let (i, found) = node.search(key);
            if node.layer == 0 {
                return Ok(proof);
            }
            let layer = child_layer(node)?;
            if found {
                if covering {
                    add_edge(store, node.gap_mut(i), layer, Edge::Rightmost, &mut proof)?;
                    add_edge(
                        store,
                        &mut node.entries[i].right,
                        layer,
                        Edge::Leftmost,
                        &mut proof,
                    )?;
                }
                return Ok(proof);
            }
            match node.gap_mut(i) {
                None => return Ok(proof),
                Some(link) => node = load_link(store, link, layer)?,
            }
        }
    }
}
