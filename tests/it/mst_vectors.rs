//! The interop MST vectors: key heights, common prefixes, example keys, and the
//! commit-proof fixtures (tree shapes, covering proofs and op inversion).

use crate::common;

use atbox::data::{parse_cid, Cid};
use atbox::repo::mst::{common_prefix_len, key_height};
use atbox::repo::{BlockMap, BlockStore, Mst};

#[test]
fn key_heights() {
    let cases = common::vector_json("mst/key_heights.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let key = case["key"].as_str().unwrap();
        assert_eq!(
            u64::from(key_height(key.as_bytes())),
            case["height"].as_u64().unwrap(),
            "{key:?}"
        );
        n += 1;
    }
    common::report("mst key heights", n);
}

#[test]
fn common_prefix() {
    let cases = common::vector_json("mst/common_prefix.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let (l, r) = (
            case["left"].as_str().unwrap(),
            case["right"].as_str().unwrap(),
        );
        assert_eq!(
            common_prefix_len(l.as_bytes(), r.as_bytes()) as u64,
            case["len"].as_u64().unwrap(),
            "{l:?} {r:?}"
        );
        n += 1;
    }
    common::report("mst common prefix", n);
}

/// `example_keys.txt` names each key by its height: `A2/...` sits on layer 2.
#[test]
fn example_keys_have_their_named_height() {
    let mut n = 0;
    for key in common::vector_lines("mst/example_keys.txt") {
        let named: u32 = key[1..2].parse().unwrap();
        assert_eq!(key_height(key.as_bytes()), named, "{key}");
        n += 1;
    }
    common::report("mst example keys", n);
}

fn cids(v: &serde_json::Value) -> Vec<Cid> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| parse_cid(c.as_str().unwrap()).unwrap())
        .collect()
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn commit_proof_fixtures() {
    let cases = common::vector_json("firehose/commit-proof-fixtures.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let comment = case["comment"].as_str().unwrap();
        let leaf = parse_cid(case["leafValue"].as_str().unwrap()).unwrap();
        let (adds, dels) = (strs(&case["adds"]), strs(&case["dels"]));

        // Build the tree before the commit; its root must match.
        let mut store = BlockMap::new();
        let mut mst = Mst::new(BlockMap::new());
        for key in strs(&case["keys"]) {
            mst.insert(&key, leaf).unwrap();
        }
        let (before, blocks) = mst.persist();
        store.extend(blocks);
        assert_eq!(
            before.to_string(),
            case["rootBeforeCommit"].as_str().unwrap(),
            "{comment}: root before"
        );

        // Apply the commit's ops on the stored tree; only changed nodes are new.
        let mut mst = Mst::load(&store, before).unwrap();
        for key in &adds {
            assert_eq!(mst.insert(key, leaf).unwrap(), None);
        }
        for key in &dels {
            assert_eq!(mst.delete(key).unwrap(), Some(leaf));
        }
        let (after, new_blocks) = mst.persist();
        assert_eq!(
            after.to_string(),
            case["rootAfterCommit"].as_str().unwrap(),
            "{comment}: root after"
        );
        let mut all = store.clone();
        all.extend(new_blocks);

        // The covering proofs of the ops hold every block the fixture lists...
        let mut mst = Mst::load(&all, after).unwrap();
        let mut proof = BlockMap::new();
        for key in adds.iter().chain(&dels) {
            proof.extend(mst.covering_proof(key).unwrap());
        }
        for cid in cids(&case["blocksInProof"]) {
            assert!(proof.contains(&cid), "{comment}: proof lacks {cid}");
        }
        // ...and suffice to invert the ops back to the old root, in any order.
        let ops: Vec<(bool, &String)> = adds
            .iter()
            .map(|k| (true, k))
            .chain(dels.iter().map(|k| (false, k)))
            .collect();
        for order in permutations(ops.len()) {
            let mut inverted = Mst::load(&proof, after).unwrap();
            for &i in &order {
                let (was_add, key) = ops[i];
                if was_add {
                    inverted
                        .delete(key)
                        .unwrap_or_else(|e| panic!("{comment}: invert add {key}: {e}"));
                } else {
                    inverted
                        .insert(key, leaf)
                        .unwrap_or_else(|e| panic!("{comment}: invert del {key}: {e}"));
                }
            }
            assert_eq!(
                inverted.root_cid(),
                before,
                "{comment}: inverting {order:?}"
            );
        }
        assert!(proof
            .iter()
            .all(|(c, _)| all.get_block(c).unwrap().is_some()));
        n += 1;
    }
    common::report("firehose commit-proof fixtures", n);
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}
