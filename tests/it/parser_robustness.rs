//! Seeded mutation fuzzing of the parsers that read untrusted bytes, in every test run:
//! valid inputs (CBOR fixtures, a repo CAR, its MST nodes) are mutated thousands of
//! times and fed to the same entry points as the libFuzzer targets in `fuzz/`. None may
//! panic, and whatever they accept must round-trip exactly (checked inside the targets).
//! Long coverage-guided runs are on demand: see README.md, "Fuzzing".

use crate::common;

use atbox::crypto::{KeyType, Keypair};
use atbox::data::{cid_for_cbor, ipld_from_json};
use atbox::fuzz_targets::{car_read, cbor_decode, json_body, mst_node_decode};
use atbox::repo::car::write_car;
use atbox::repo::{BlockMap, Mst, UnsignedCommit};
use atbox::syntax::{Did, Tid};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        let len = out.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                out[i] = *[
                    0x00, 0x17, 0x18, 0x1b, 0x7f, 0x80, 0xa1, 0xbf, 0xd8, 0xf6, 0xfb, 0xff,
                ]
                .get(rng.gen_range(0..12))
                .unwrap();
            }
            2 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                out.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 16));
                out.drain(i..j);
            }
            4 => out.truncate(rng.gen_range(0..=len)),
            5 if len > 1 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..len);
                let chunk = out[i..=j].to_vec();
                let at = rng.gen_range(0..=len);
                out.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    out
}

fn run(name: &str, seeds: &[Vec<u8>], rounds: usize, target: fn(&[u8])) {
    let mut rng = StdRng::seed_from_u64(0xa7b0);
    let mut n = 0;
    for seed in seeds {
        target(seed);
        for _ in 0..rounds {
            target(&mutate(&mut rng, seed));
            n += 1;
        }
    }
    for _ in 0..2000 {
        let len = rng.gen_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        target(&bytes);
        n += 1;
    }
    println!("{name}: {n} mutated inputs, no panic");
}

/// A small signed repo: its CAR, and its MST node blocks.
fn sample_repo() -> (Vec<u8>, Vec<Vec<u8>>) {
    let key = Keypair::generate(KeyType::K256);
    let mut blocks = BlockMap::new();
    let mut mst = Mst::new(BlockMap::new());
    for i in 0..40u64 {
        let rec = serde_json::json!({"$type": "app.bsky.feed.post", "text": format!("hello {i}"), "createdAt": "2024-01-01T00:00:00Z"});
        let cid = blocks.put_cbor(&ipld_from_json(&rec).unwrap());
        mst.insert(
            &format!(
                "app.bsky.feed.post/{}",
                Tid::from_parts(1_700_000_000_000_000 + i * 7919, 0)
            ),
            cid,
        )
        .unwrap();
    }
    let (data, nodes) = mst.persist();
    let node_bytes: Vec<Vec<u8>> = nodes.iter().map(|(_, b)| b.to_vec()).collect();
    blocks.extend(nodes);
    let commit = UnsignedCommit::new(
        &Did::new("did:plc:abc").unwrap(),
        data,
        &Tid::from_parts(1, 0),
    )
    .sign(&key);
    let root = blocks.put_cbor(&commit);
    (write_car(&[root], &blocks), node_bytes)
}

#[test]
fn cbor_decoder_survives_mutations() {
    let fixtures = common::vector_json("data-model/data-model-fixtures.json");
    let seeds: Vec<Vec<u8>> = fixtures
        .as_array()
        .unwrap()
        .iter()
        .map(|c| common::b64(c["cbor_base64"].as_str().unwrap()))
        .collect();
    run("cbor_decode", &seeds, 5000, cbor_decode);
}

#[test]
fn car_reader_survives_mutations() {
    let (car, _) = sample_repo();
    run("car_read", &[car], 10_000, car_read);
}

#[test]
fn mst_node_decoder_survives_mutations() {
    let (_, nodes) = sample_repo();
    run("mst_node_decode", &nodes, 2000, mst_node_decode);
}

#[test]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    // 100,000 nested one-element arrays, then a map nested as deep.
    let mut arrays = vec![0xa1, 0x61, b'a'];
    arrays.extend(std::iter::repeat_n(0x81, 100_000));
    arrays.push(0x01);
    cbor_decode(&arrays);
    let mut maps = Vec::new();
    for _ in 0..100_000 {
        maps.extend([0xa1, 0x61, b'a']);
    }
    maps.push(0x01);
    cbor_decode(&maps);
    let _ = cid_for_cbor(&maps);
}

#[test]
fn huge_length_prefixes_do_not_allocate() {
    // A CAR whose header claims 2^63 bytes, and a block claiming 1 TB.
    assert!(atbox::repo::car::read_car(
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f][..]
    )
    .is_err());
    let (car, _) = sample_repo();
    let header_len = car[0] as usize + 1;
    let mut bad = car[..header_len].to_vec();
    bad.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
    assert!(atbox::repo::car::read_car(bad.as_slice()).is_err());
    // A CBOR byte string claiming 2^64-1 bytes.
    cbor_decode(&[
        0xa1, 0x61, b'a', 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
}

#[test]
fn json_bodies_survive_mutations() {
    let seeds: Vec<Vec<u8>> = [
        common::vector_json("data-model/data-model-valid.json"),
        common::vector_json("data-model/data-model-fixtures.json"),
        common::vector_json("lexicon/record-data-valid.json"),
    ]
    .iter()
    .flat_map(|v| v.as_array().unwrap().clone())
    .map(|case| serde_json::to_vec(case.get("json").or(case.get("data")).unwrap_or(&case)).unwrap())
    .chain([serde_json::to_vec(&serde_json::json!({
        "$type": "app.bsky.feed.post", "text": "hello", "createdAt": "2024-01-01T00:00:00Z",
        "facets": [{"index": {"byteStart": 0, "byteEnd": 5}, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "https://x.test"}]}],
        "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "", "image": {"$type": "blob", "ref": {"$link": "bafkreiccldh766hwcnuxnf2wh6jgzepf2nlu2lvcllt63eww5p6chi4ity"}, "mimeType": "image/png", "size": 10}}]}
    }))
    .unwrap()])
    .collect();
    run("json_body", &seeds, 2000, json_body);
}
