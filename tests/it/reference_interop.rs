//! Differential tests against the reference implementation (`@atproto/repo` on npm,
//! driven through the scripts in `tests/interop/`):
//!
//! - MST roots: random key sets with updates and deletions give the same root CID;
//! - CARs exported by the reference pass `atbox repo verify/inspect/ls`, and tampered
//!   copies (record bytes, signature, MST order, missing blocks) are refused;
//! - repos atbox builds and signs pass the reference's own verification, and the same
//!   records, key and rev give the very same commit CID as the reference.

use crate::common;

use atbox::crypto::{KeyType, Keypair};
use atbox::data::{cid_for_cbor, encode_cbor, ipld_from_json, Cid, Ipld};
use atbox::repo::car::{read_car, write_car};
use atbox::repo::{BlockMap, BlockStore, Commit, Mst, UnsignedCommit};
use atbox::syntax::{Did, Tid};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const COLLECTIONS: [&str; 3] = [
    "app.bsky.feed.post",
    "app.bsky.feed.like",
    "app.bsky.graph.follow",
];

fn record(rng: &mut StdRng, i: usize) -> Value {
    let mut r = json!({
        "$type": "app.bsky.feed.post",
        "text": format!("post {i} {}", rng.gen::<u32>()),
        "createdAt": "2024-05-06T07:08:09.123Z",
        "langs": ["en"],
    });
    if i.is_multiple_of(7) {
        let link = cid_for_cbor(&(i as u64).to_be_bytes()).to_string();
        r["embed"] = json!({"ref": {"$link": link}, "bytes": {"$bytes": "aGVsbG8gd29ybGQ"}, "n": -(i as i64)});
    }
    r
}

fn rkey(rng: &mut StdRng) -> String {
    let micros = rng.gen_range(1_600_000_000_000_000u64..1_800_000_000_000_000);
    Tid::from_parts(micros, rng.gen_range(0..1024)).to_string()
}

fn record_cid(record: &Value) -> (Cid, Vec<u8>) {
    let bytes = encode_cbor(&ipld_from_json(record).unwrap());
    (cid_for_cbor(&bytes), bytes)
}

#[test]
fn mst_roots_match_the_reference() {
    let sizes = [1usize, 2, 5, 17, 64, 200, 500, 1000, 2000, 3000, 4000, 5000];
    let mut rng = StdRng::seed_from_u64(2024);
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for &size in &sizes {
        let mut ops = Vec::new();
        let mut mst = Mst::new(BlockMap::new());
        let mut live: Vec<String> = Vec::new();
        let mut n = 0;
        while n < size {
            let key = format!(
                "{}/{}",
                COLLECTIONS.choose(&mut rng).unwrap(),
                rkey(&mut rng)
            );
            if live.contains(&key) {
                continue;
            }
            let rec = record(&mut rng, n);
            mst.insert(&key, record_cid(&rec).0).unwrap();
            ops.push(json!({"action": "put", "key": key, "record": rec}));
            live.push(key);
            n += 1;
        }
        // Updates, then deletions, of a third and a fifth of the keys.
        for _ in 0..size / 3 {
            let key = live.choose(&mut rng).unwrap().clone();
            let salt = rng.gen_range(0..1_000_000);
            let rec = record(&mut rng, salt);
            mst.insert(&key, record_cid(&rec).0).unwrap();
            ops.push(json!({"action": "put", "key": key, "record": rec}));
        }
        live.shuffle(&mut rng);
        for key in live.drain(..size / 5) {
            assert!(mst.delete(&key).unwrap().is_some());
            ops.push(json!({"action": "delete", "key": key}));
        }
        ours.push((mst.root_cid().to_string(), mst.entries().unwrap().len()));
        cases.push(json!({"ops": ops}));
    }
    let (ok, out) = common::run_node("mst-root.mjs", &[], &json!({"cases": cases}).to_string());
    assert!(ok, "reference failed: {out}");
    for (i, (root, count)) in ours.iter().enumerate() {
        assert_eq!(
            out["counts"][i].as_u64().unwrap() as usize,
            *count,
            "case {i} ({} keys): count",
            sizes[i]
        );
        assert_eq!(
            out["roots"][i].as_str().unwrap(),
            root,
            "case {i} ({} keys): root CID",
            sizes[i]
        );
    }
    common::report("MST root CIDs equal to @atproto/repo", sizes.len());
}

fn atbox(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

struct ReferenceRepo {
    did_key: String,
    commit: String,
    records: Vec<String>,
}

/// Has the reference build a repo over three commits (creates; updates and creates;
/// deletes) and write its CAR to `out`.
fn reference_repo(
    key: &Keypair,
    did: &str,
    out: &Path,
    rev: Option<&str>,
    n: usize,
    seed: u64,
) -> ReferenceRepo {
    let mut rng = StdRng::seed_from_u64(seed);
    let writes: Vec<Value> = (0..n)
        .map(|i| json!({"action": "create", "collection": COLLECTIONS[i % 3], "rkey": rkey(&mut rng), "record": record(&mut rng, i)}))
        .collect();
    let updates: Vec<Value> = writes
        .iter()
        .step_by(5)
        .map(|w| json!({"action": "update", "collection": w["collection"], "rkey": w["rkey"], "record": record(&mut rng, 99)}))
        .collect();
    let deletes: Vec<Value> = writes
        .iter()
        .skip(1)
        .step_by(7)
        .map(|w| json!({"action": "delete", "collection": w["collection"], "rkey": w["rkey"]}))
        .collect();
    let mut input = json!({
        "keyType": match key.key_type() { KeyType::K256 => "k256", KeyType::P256 => "p256" },
        "privateKeyHex": key.private_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "did": did,
        "commits": [writes, updates, deletes],
        "out": out.to_str().unwrap(),
    });
    if let Some(rev) = rev {
        input["rev"] = json!(rev);
    }
    let (ok, res) = common::run_node("make-repo-car.mjs", &[], &input.to_string());
    assert!(ok, "reference failed: {res}");
    let records = res["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{}/{}\t{}",
                r["collection"].as_str().unwrap(),
                r["rkey"].as_str().unwrap(),
                r["cid"].as_str().unwrap()
            )
        })
        .collect();
    ReferenceRepo {
        did_key: res["didKey"].as_str().unwrap().into(),
        commit: res["commit"].as_str().unwrap().into(),
        records,
    }
}

#[test]
fn reference_cars_pass_atbox_repo_commands() {
    let dir = tempfile::tempdir().unwrap();
    for (i, kt) in [KeyType::K256, KeyType::P256].into_iter().enumerate() {
        let key = Keypair::generate(kt);
        let did = "did:plc:abcdefghijklmnopqrstuvwx";
        let car = dir.path().join(format!("ref-{i}.car"));
        let reference = reference_repo(&key, did, &car, None, 300, i as u64);
        assert_eq!(reference.did_key, key.public_key().to_did_key());
        let car_s = car.to_str().unwrap();

        let (ok, out, err) = atbox(&["repo", "verify", car_s, "--did-key", &reference.did_key]);
        assert!(ok, "verify failed: {err}");
        assert!(out.contains("signature ok"), "{out}");

        let (ok, out, err) = atbox(&["repo", "ls", car_s]);
        assert!(ok, "{err}");
        assert_eq!(out.lines().collect::<Vec<_>>(), reference.records);

        let (ok, out, err) = atbox(&["repo", "inspect", car_s]);
        assert!(ok, "{err}");
        assert!(
            out.contains(did) && out.contains(&reference.commit),
            "{out}"
        );
        assert!(
            out.contains(&format!("records:      {}", reference.records.len())),
            "{out}"
        );

        // A different key does not verify the signature.
        let other = Keypair::generate(kt).public_key().to_did_key();
        let (ok, _, err) = atbox(&["repo", "verify", car_s, "--did-key", &other]);
        assert!(!ok && err.contains("signature"), "{err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line naming the problem: {err}"
        );

        for (name, tampered, expect) in tampered_copies(&car, &key) {
            let path = dir.path().join(format!("{name}-{i}.car"));
            std::fs::write(&path, tampered).unwrap();
            let (ok, _, err) = atbox(&[
                "repo",
                "verify",
                path.to_str().unwrap(),
                "--did-key",
                &reference.did_key,
            ]);
            assert!(!ok, "{name}: tampered CAR was accepted");
            assert!(
                err.contains(expect),
                "{name}: expected {expect:?} in {err:?}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
        }
    }
}

/// Tampered versions of a CAR, each with the error text `atbox repo verify` must give.
fn tampered_copies(car: &Path, key: &Keypair) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let bytes = std::fs::read(car).unwrap();
    let (roots, blocks) = read_car(bytes.as_slice()).unwrap();
    let root = roots[0];
    let commit = Commit::decode(root, blocks.get(&root).unwrap()).unwrap();
    let mut out = Vec::new();

    // 1. Record bytes changed in place: the block no longer hashes to its CID.
    let mut mst = Mst::load(&blocks, commit.data).unwrap();
    let (_, record_cid) = mst.entries().unwrap()[3].clone();
    let record_bytes = blocks.get(&record_cid).unwrap().to_vec();
    let pos = bytes
        .windows(record_bytes.len())
        .position(|w| w == record_bytes)
        .unwrap();
    let mut changed = bytes.clone();
    changed[pos + record_bytes.len() - 2] ^= 0x01;
    out.push(("record-bytes", changed, "do not hash"));

    // 2. Signature broken (a valid block, re-hashed, with one signature bit flipped).
    let mut bad = commit.clone();
    bad.sig[10] ^= 0x01;
    let mut b = blocks.clone();
    let new_root = b.put_cbor(&bad);
    out.push(("signature", write_car(&[new_root], &b), "signature"));

    // 3. MST entries out of order: reverse a node's entries, re-hash up to a re-signed commit.
    let (node_cid, mut node) = blocks
        .iter()
        .find_map(|(c, d)| match atbox::data::decode_cbor(d).ok()? {
            Ipld::Map(m)
                if m.contains_key("e") && matches!(&m["e"], Ipld::List(l) if l.len() >= 2) =>
            {
                Some((*c, m))
            }
            _ => None,
        })
        .unwrap();
    let Ipld::List(entries) = node.get_mut("e").unwrap() else {
        unreachable!()
    };
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut prev: Vec<u8> = Vec::new();
    for e in entries.iter() {
        let Ipld::Map(e) = e else { unreachable!() };
        let (Ipld::Integer(p), Ipld::Bytes(k)) = (&e["p"], &e["k"]) else {
            unreachable!()
        };
        let mut full = prev[..*p as usize].to_vec();
        full.extend(k);
        keys.push(full.clone());
        prev = full;
    }
    entries.reverse();
    keys.reverse();
    let mut prev: Vec<u8> = Vec::new();
    for (e, k) in entries.iter_mut().zip(&keys) {
        let Ipld::Map(e) = e else { unreachable!() };
        let p = atbox::repo::mst::common_prefix_len(&prev, k);
        e.insert("p".into(), Ipld::Integer(p as i128));
        e.insert("k".into(), Ipld::Bytes(k[p..].to_vec()));
        prev = k.clone();
    }
    let mut b = blocks.clone();
    let new_node = b.put_cbor(&Ipld::Map(node));
    let new_data = replace_link(&mut b, commit.data, node_cid, new_node);
    let tid = Tid::new(commit.rev.clone()).unwrap();
    let resigned =
        UnsignedCommit::new(&Did::new(commit.did.clone()).unwrap(), new_data, &tid).sign(key);
    let new_root = b.put_cbor(&resigned);
    out.push(("mst-order", write_car(&[new_root], &b), "order"));

    // 4. Missing blocks: a record, and an MST node.
    let mut b = blocks.clone();
    b.remove(&record_cid);
    out.push(("missing-record", write_car(&roots, &b), "missing"));
    let mut b = blocks.clone();
    b.remove(&node_cid);
    out.push(("missing-node", write_car(&roots, &b), "missing"));
    out
}

/// Rewrites the tree under `at` so the link to `from` points to `to`; returns the new root.
fn replace_link(blocks: &mut BlockMap, at: Cid, from: Cid, to: Cid) -> Cid {
    if at == from {
        return to;
    }
    let Ipld::Map(mut node) =
        atbox::data::decode_cbor(&blocks.require_block(&at).unwrap()).unwrap()
    else {
        unreachable!()
    };
    let mut changed = false;
    let mut visit = |link: &mut Ipld, blocks: &mut BlockMap| {
        if let Ipld::Link(c) = link {
            let new = replace_link(blocks, *c, from, to);
            if new != *c {
                *link = Ipld::Link(new);
                changed = true;
            }
        }
    };
    visit(node.get_mut("l").unwrap(), blocks);
    if let Ipld::List(entries) = node.get_mut("e").unwrap() {
        for e in entries {
            if let Ipld::Map(e) = e {
                visit(e.get_mut("t").unwrap(), blocks);
            }
        }
    }
    if changed {
        blocks.put_cbor(&Ipld::Map(node))
    } else {
        at
    }
}

#[test]
fn atbox_repos_pass_reference_verification_and_match_its_commits() {
    let dir = tempfile::tempdir().unwrap();
    for (i, kt) in [KeyType::K256, KeyType::P256].into_iter().enumerate() {
        let key = Keypair::generate(kt);
        let did = Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
        let rev = Tid::from_parts(1_732_000_000_000_000 + i as u64, 5);

        // The reference builds a repo over three commits...
        let ref_car = dir.path().join(format!("ref-{i}.car"));
        let reference = reference_repo(
            &key,
            did.as_str(),
            &ref_car,
            Some(rev.as_str()),
            120,
            40 + i as u64,
        );

        // ...atbox builds the same final records in one go and signs with the same rev.
        let mut blocks = BlockMap::new();
        let (_, ref_blocks) = read_car(std::fs::File::open(&ref_car).unwrap()).unwrap();
        let mut mst = Mst::new(BlockMap::new());
        for line in &reference.records {
            let (path, cid) = line.split_once('\t').unwrap();
            let cid: Cid = cid.parse().unwrap();
            let bytes = ref_blocks.get(&cid).unwrap().to_vec();
            // Re-encode from JSON to prove our encoding gives the same bytes.
            let json = atbox::data::ipld_to_json(&atbox::data::decode_cbor(&bytes).unwrap());
            let (our_cid, our_bytes) = record_cid(&json);
            assert_eq!(our_cid, cid);
            blocks.insert(our_cid, our_bytes);
            mst.insert(path, cid).unwrap();
        }
        let (data, nodes) = mst.persist();
        blocks.extend(nodes);
        let commit = UnsignedCommit::new(&did, data, &rev).sign(&key);
        let root = blocks.put_cbor(&commit);
        assert_eq!(
            root.to_string(),
            reference.commit,
            "same records, key and rev: same signed commit"
        );

        let car = dir.path().join(format!("atbox-{i}.car"));
        std::fs::write(&car, write_car(&[root], &blocks)).unwrap();
        let (ok, res) = common::run_node(
            "verify-car.mjs",
            &[car.to_str().unwrap(), did.as_str(), &reference.did_key],
            "",
        );
        assert!(ok, "reference rejected atbox's CAR: {res}");
        assert_eq!(res["commit"].as_str().unwrap(), root.to_string());
        assert_eq!(
            res["records"].as_array().unwrap().len(),
            reference.records.len()
        );
        assert_eq!(res["unreachableBlocks"].as_u64(), Some(0));

        // The reference must also refuse it under the wrong key (the check is live).
        let other = Keypair::generate(kt).public_key().to_did_key();
        let (ok, _) = common::run_node(
            "verify-car.mjs",
            &[car.to_str().unwrap(), did.as_str(), &other],
            "",
        );
        assert!(!ok, "reference accepted a CAR under the wrong key");
    }
}

#[test]
fn commit_revs_from_the_generator_strictly_increase() {
    let key = Keypair::generate(KeyType::K256);
    let did = Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap();
    let tids = atbox::syntax::TidGenerator::new();
    let mut last: Option<Tid> = None;
    let data = Mst::new(BlockMap::new()).root_cid();
    for _ in 0..100 {
        let rev = tids.next_after(last.as_ref());
        let commit = UnsignedCommit::new(&did, data, &rev).sign(&key);
        commit.verify(&key.public_key()).unwrap();
        if let Some(l) = &last {
            assert!(commit.rev.as_str() > l.as_str());
        }
        last = Some(rev);
    }
}
