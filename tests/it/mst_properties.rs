//! Properties of atbox's MST on random workloads: the tree matches a sorted map, its
//! root depends only on the final key set (not on the order of edits), edits write only
//! the changed path, diffs and proofs say exactly what changed, and the nodes an edit
//! knows it dropped are the ones a diff of the two trees finds removed.

use atbox::data::{cid_for_cbor, Cid};
use atbox::repo::mst::diff;
use atbox::repo::{BlockMap, BlockStore, Mst};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

fn value(n: u64) -> Cid {
    cid_for_cbor(&n.to_be_bytes())
}

fn random_key(rng: &mut StdRng) -> String {
    let collection = [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "app.bsky.graph.follow",
        "com.example.x",
    ]
    .choose(rng)
    .unwrap();
    let rkey: String = (0..rng.gen_range(1..14))
        .map(|_| *b"234567abcdefghijklmnopqrstuvwxyz".choose(rng).unwrap() as char)
        .collect();
    format!("{collection}/{rkey}")
}

fn build(entries: &BTreeMap<String, Cid>) -> (Cid, BlockMap) {
    let mut mst = Mst::new(BlockMap::new());
    for (k, v) in entries {
        mst.insert(k, *v).unwrap();
    }
    mst.persist()
}

#[test]
fn random_edits_match_a_sorted_map_and_a_fresh_build() {
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut model: BTreeMap<String, Cid> = BTreeMap::new();
        let mut store = BlockMap::new();
        let (mut root, blocks) = Mst::new(BlockMap::new()).persist();
        store.extend(blocks);
        for round in 0..20 {
            // Each round is one "commit": a few edits on the stored tree.
            let mut mst = Mst::load(&store, root).unwrap();
            for _ in 0..rng.gen_range(1..40) {
                let existing: Vec<String> = model.keys().cloned().collect();
                match rng.gen_range(0..10) {
                    0..=5 => {
                        let k = random_key(&mut rng);
                        let v = value(rng.gen());
                        assert_eq!(mst.insert(&k, v).unwrap(), model.insert(k, v));
                    }
                    6..=7 if !existing.is_empty() => {
                        let k = existing.choose(&mut rng).unwrap();
                        let v = value(rng.gen());
                        assert_eq!(mst.insert(k, v).unwrap(), model.insert(k.clone(), v));
                    }
                    _ if !existing.is_empty() => {
                        let k = existing.choose(&mut rng).unwrap();
                        assert_eq!(mst.delete(k).unwrap(), model.remove(k));
                    }
                    _ => {}
                }
            }
            assert_eq!(mst.delete("app.bsky.feed.post/absent").unwrap(), None);
            let (new_root, new_blocks) = mst.persist();
            // What the tree knows it dropped, without reading anything more.
            let dropped = mst.dropped_nodes();
            let (fresh_root, _) = build(&model);
            assert_eq!(
                new_root, fresh_root,
                "seed {seed} round {round}: edited tree differs from a fresh build"
            );

            // The diff between the two roots is exactly the change in the map.
            let old_entries: BTreeMap<String, Cid> = Mst::load(&store, root)
                .unwrap()
                .entries()
                .unwrap()
                .into_iter()
                .collect();
            store.extend(new_blocks.clone());
            let d = diff(&store, Some(root), new_root).unwrap();
            for (k, v) in &model {
                match old_entries.get(k) {
                    None => assert_eq!(d.creates.get(k), Some(v)),
                    Some(old) if old != v => assert_eq!(d.updates.get(k), Some(&(*old, *v))),
                    Some(_) => assert!(!d.creates.contains_key(k) && !d.updates.contains_key(k)),
                }
            }
            for (k, v) in &old_entries {
                assert_eq!(d.deletes.get(k), (!model.contains_key(k)).then_some(v));
            }
            assert_eq!(
                d.creates.len() + d.updates.len() + d.deletes.len(),
                changes(&old_entries, &model)
            );
            assert_eq!(
                dropped,
                d.removed_nodes.iter().copied().collect::<Vec<_>>(),
                "seed {seed} round {round}: dropped nodes differ from the diff's removed nodes"
            );
            for cid in &new_blocks.cids().copied().collect::<Vec<_>>() {
                if *cid != root && !old_nodes_contain(&store, root, cid) {
                    assert!(d.new_nodes.contains(cid), "diff misses new node {cid}");
                }
            }
            root = new_root;
            let listed: Vec<(String, Cid)> = Mst::load(&store, root).unwrap().entries().unwrap();
            assert_eq!(
                listed,
                model
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect::<Vec<_>>()
            );
        }
    }
}

fn changes(a: &BTreeMap<String, Cid>, b: &BTreeMap<String, Cid>) -> usize {
    let mut n = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).count();
    n += b.keys().filter(|k| !a.contains_key(*k)).count();
    n
}

fn old_nodes_contain(store: &BlockMap, root: Cid, cid: &Cid) -> bool {
    // Every node reachable from `root`: walk through the diff against the empty tree.
    let empty = Mst::new(BlockMap::new()).persist().0;
    let mut s = store.clone();
    s.extend(Mst::new(BlockMap::new()).persist().1);
    diff(&s, Some(empty), root).unwrap().new_nodes.contains(cid)
}

#[test]
fn root_is_independent_of_insertion_order() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut entries: Vec<(String, Cid)> =
        (0..600).map(|i| (random_key(&mut rng), value(i))).collect();
    entries.sort();
    entries.dedup_by(|a, b| a.0 == b.0);
    let expected = build(&entries.iter().cloned().collect()).0;
    for _ in 0..5 {
        entries.shuffle(&mut rng);
        let mut mst = Mst::new(BlockMap::new());
        for (k, v) in &entries {
            mst.insert(k, *v).unwrap();
        }
        assert_eq!(mst.root_cid(), expected);
    }
    // Deleting everything, in random order, gives back the empty tree.
    let (root, blocks) = build(&entries.iter().cloned().collect());
    let mut mst = Mst::load(&blocks, root).unwrap();
    entries.shuffle(&mut rng);
    for (k, v) in &entries {
        assert_eq!(mst.delete(k).unwrap(), Some(*v));
    }
    assert_eq!(mst.root_cid(), Mst::new(BlockMap::new()).root_cid());
}

#[test]
fn one_edit_writes_only_its_path() {
    let mut rng = StdRng::seed_from_u64(3);
    let entries: BTreeMap<String, Cid> = (0..5000)
        .map(|i| (random_key(&mut rng), value(i)))
        .collect();
    let (root, store) = build(&entries);
    let mut mst = Mst::load(&store, root).unwrap();
    mst.insert("app.bsky.feed.post/3zzzzzzzzzzzz", value(99))
        .unwrap();
    let (_, new_blocks) = mst.persist();
    // ~log4(5000) ≈ 6 layers: a handful of nodes, not a rewrite.
    assert!(
        new_blocks.len() <= 12,
        "{} new nodes for one insert",
        new_blocks.len()
    );
    assert!(new_blocks.iter().all(|(cid, _)| !store.contains(cid)));
}

#[test]
fn proofs_prove_presence_and_absence() {
    let mut rng = StdRng::seed_from_u64(11);
    let entries: BTreeMap<String, Cid> =
        (0..800).map(|i| (random_key(&mut rng), value(i))).collect();
    let (root, store) = build(&entries);
    let mut mst = Mst::load(&store, root).unwrap();
    for (k, v) in entries.iter().take(50) {
        let proof = mst.proof(k).unwrap();
        assert_eq!(Mst::load(&proof, root).unwrap().get(k).unwrap(), Some(*v));
        let absent = format!("{k}0");
        if !entries.contains_key(&absent) {
            let proof = mst.proof(&absent).unwrap();
            assert_eq!(Mst::load(&proof, root).unwrap().get(&absent).unwrap(), None);
        }
    }
}

#[test]
fn corrupt_trees_are_refused() {
    let mut rng = StdRng::seed_from_u64(5);
    let entries: BTreeMap<String, Cid> =
        (0..300).map(|i| (random_key(&mut rng), value(i))).collect();
    let (root, store) = build(&entries);
    // A missing node is reported, not skipped.
    let mut partial = store.clone();
    let victim = *store.cids().find(|c| **c != root).unwrap();
    partial.remove(&victim);
    assert!(Mst::load(&partial, root)
        .and_then(|mut m| m.entries())
        .is_err());
    // A key on the wrong layer is refused when the node is read.
    let k = entries
        .keys()
        .find(|k| atbox::repo::mst::key_height(k.as_bytes()) == 0)
        .unwrap();
    let mut wrong = BlockMap::new();
    let node = serde_json::json!({"l": null, "e": [{"p": 0, "k": {"$bytes": base64_std(k.as_bytes())}, "v": {"$link": value(1).to_string()}, "t": null}]});
    let ipld = atbox::data::ipld_from_json(&node).unwrap();
    let cid = wrong.put_cbor(&ipld);
    // Layer 0 is right for a root holding a height-0 key...
    assert!(Mst::load(&wrong, cid).unwrap().entries().is_ok());
    // ...but as the child of a layer-2 node it is on the wrong layer.
    let parent = serde_json::json!({"l": {"$link": cid.to_string()}, "e": []});
    let pcid = wrong.put_cbor(&atbox::data::ipld_from_json(&parent).unwrap());
    assert!(
        Mst::load(&wrong, pcid).is_err(),
        "a leafless root is not canonical"
    );
    assert!(wrong.get_block(&pcid).unwrap().is_some());
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(b)
}
