//! The interop data-model vectors: valid JSON accepted, invalid JSON refused, and the
//! fixtures' JSON ↔ DAG-CBOR ↔ CID triples reproduced exactly in both directions.

use crate::common;

use atbox::data::*;

#[test]
fn valid_json_is_accepted_and_round_trips() {
    let cases = common::vector_json("data-model/data-model-valid.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let note = &case["note"];
        let ipld = ipld_from_json(&case["json"]).unwrap_or_else(|e| panic!("{note}: {e}"));
        let bytes = encode_cbor(&ipld);
        assert_eq!(
            decode_cbor(&bytes).unwrap(),
            ipld,
            "{note}: CBOR round trip"
        );
        assert_eq!(
            ipld_from_json(&ipld_to_json(&ipld)).unwrap(),
            ipld,
            "{note}: JSON round trip"
        );
        n += 1;
    }
    common::report("data-model valid", n);
}

#[test]
fn invalid_json_is_refused() {
    let cases = common::vector_json("data-model/data-model-invalid.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        assert!(
            ipld_from_json(&case["json"]).is_err(),
            "{}: should be refused",
            case["note"]
        );
        n += 1;
    }
    common::report("data-model invalid", n);
}

#[test]
fn fixtures_match_bytes_and_cids() {
    let cases = common::vector_json("data-model/data-model-fixtures.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let expected_bytes = common::b64(case["cbor_base64"].as_str().unwrap());
        let expected_cid = case["cid"].as_str().unwrap();
        let ipld = ipld_from_json(&case["json"]).unwrap();
        let bytes = encode_cbor(&ipld);
        assert_eq!(bytes, expected_bytes, "JSON → CBOR bytes");
        assert_eq!(cid_for_cbor(&bytes).to_string(), expected_cid, "CID");
        let decoded = decode_cbor(&expected_bytes).unwrap();
        assert_eq!(ipld_to_json(&decoded), case["json"], "CBOR → JSON");
        n += 1;
    }
    common::report("data-model fixtures", n);
}

#[test]
fn non_canonical_and_forbidden_cbor_is_refused() {
    // {"a": 1, "b": 2} canonically, then with keys swapped, a non-minimal integer,
    // a duplicate key, a float, a non-string key and trailing bytes.
    let canonical = [0xa2, 0x61, b'a', 0x01, 0x61, b'b', 0x02];
    assert!(decode_cbor(&canonical).is_ok());
    let cases: &[(&str, &[u8])] = &[
        (
            "wrong key order",
            &[0xa2, 0x61, b'b', 0x02, 0x61, b'a', 0x01],
        ),
        (
            "length-first order",
            &[0xa2, 0x62, b'a', b'a', 0x01, 0x61, b'b', 0x02],
        ),
        ("non-minimal integer", &[0xa1, 0x61, b'a', 0x18, 0x01]),
        ("duplicate key", &[0xa2, 0x61, b'a', 0x01, 0x61, b'a', 0x02]),
        (
            "float",
            &[0xa1, 0x61, b'a', 0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0],
        ),
        ("integer key", &[0xa1, 0x01, 0x02]),
        ("trailing bytes", &[0xa1, 0x61, b'a', 0x01, 0x00]),
        ("indefinite-length map", &[0xbf, 0x61, b'a', 0x01, 0xff]),
        (
            "empty $type",
            &[0xa1, 0x65, b'$', b't', b'y', b'p', b'e', 0x60],
        ),
        ("truncated", &[0xa2, 0x61, b'a']),
    ];
    for (what, bytes) in cases {
        assert!(decode_cbor(bytes).is_err(), "{what} should be refused");
    }
}

#[test]
fn integers_outside_64_bits_are_refused() {
    assert!(ipld_from_json(&serde_json::json!({"n": u64::MAX})).is_err());
    assert!(ipld_from_json(&serde_json::json!({"n": i64::MIN})).is_ok());
    // CBOR major type 0 with value 2^64-1: decodes in IPLD, refused by atproto.
    let big = [
        0xa1, 0x61, b'n', 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(decode_cbor(&big).is_err());
}

#[test]
fn raw_cids_use_codec_0x55() {
    let cid = cid_for_raw(b"hello");
    assert_eq!(cid.codec(), CODEC_RAW);
    assert!(cid.to_string().starts_with("bafkrei"));
    assert_eq!(parse_cid(&cid.to_string()).unwrap(), cid);
    assert!(
        parse_cid("QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR").is_err(),
        "CIDv0 refused"
    );
}
