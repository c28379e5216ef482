//! Entry points for fuzzing the parsers that read untrusted bytes: DAG-CBOR, CAR files
//! and MST nodes. Each takes arbitrary input, must never panic, and checks the
//! invariants that make a parser trustworthy (whatever it accepts re-encodes to the
//! very same bytes).
//!
//! The libFuzzer targets in `fuzz/` call these (`cargo +nightly fuzz run car_read`),
//! and `tests/it/parser_robustness.rs` drives them with seeded mutations in every test
//! run, so a regression shows up in CI without a nightly toolchain.

use crate::data::{cid_for_cbor, decode_cbor, encode_cbor, ipld_from_json, ipld_to_json};
use crate::lexicon::Lexicons;
use crate::repo::car::{read_car, write_car};
use crate::repo::mst::node::Node;
use crate::repo::{BlockMap, Mst};
use std::sync::LazyLock;

/// DAG-CBOR: a value that decodes re-encodes to the same bytes and survives JSON.
pub fn cbor_decode(data: &[u8]) {
    if let Ok(value) = decode_cbor(data) {
        assert_eq!(encode_cbor(&value), data, "accepted CBOR must be canonical");
        if matches!(value, crate::data::Ipld::Map(_)) {
            let json = ipld_to_json(&value);
            assert_eq!(
                ipld_from_json(&json).as_ref(),
                Ok(&value),
                "JSON round trip"
            );
        }
    }
}

/// CAR: every block read hashes to its CID, and a re-written CAR reads back the same.
pub fn car_read(data: &[u8]) {
    if let Ok((roots, blocks)) = read_car(data) {
        let again = write_car(&roots, &blocks);
        let (roots2, blocks2) = read_car(again.as_slice()).expect("a CAR we wrote reads back");
        assert_eq!(roots, roots2);
        assert_eq!(blocks, blocks2);
        // Treat it as a repo too: verification may fail, but must not panic.
        if let Some(root) = roots.first() {
            let _ = crate::repo::verify::verify_repo(&blocks, *root, None);
        }
    }
}

/// MST node: an accepted node re-encodes to its bytes; walking a one-node tree works.
pub fn mst_node_decode(data: &[u8]) {
    let cid = cid_for_cbor(data);
    for layer in [None, Some(0), Some(1), Some(3)] {
        if let Ok(node) = Node::decode(cid, data, layer) {
            assert_eq!(node.encode(), data, "accepted node must re-encode exactly");
        }
    }
    let mut store = BlockMap::new();
    store.insert(cid, data.to_vec());
    if let Ok(mut mst) = Mst::load(&store, cid) {
        let _ = mst.entries();
        let _ = mst.insert("app.bsky.feed.post/3k2aa", cid);
        let _ = mst.delete("app.bsky.feed.post/3k2aa");
        let _ = mst.persist();
    }
}

static LEXICONS: LazyLock<Lexicons> = LazyLock::new(Lexicons::embedded);

/// JSON request bodies and records: whatever parses as atproto data survives the trip
/// through DAG-CBOR and back, and lexicon validation answers (valid, unknown or an
/// error) without panicking, whatever the `$type`.
pub fn json_body(data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(value) = ipld_from_json(&json) else {
        return;
    };
    let bytes = encode_cbor(&value);
    assert_eq!(
        decode_cbor(&bytes).as_ref(),
        Ok(&value),
        "JSON data re-reads from CBOR"
    );
    let collection = match json
        .get("$type")
        .and_then(|t| t.as_str())
        .map(crate::syntax::Nsid::new)
    {
        Some(Ok(nsid)) => nsid,
        _ => crate::syntax::Nsid::new("app.bsky.feed.post").expect("valid NSID"),
    };
    let _ = LEXICONS.validate_record(&collection, &value);
}
