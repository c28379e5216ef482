//! The interop crypto vectors: signature fixtures (low-S valid, high-S and DER refused)
//! and the W3C did:key vectors for both curves.

use crate::common;

use atbox::crypto::*;

#[test]
fn signature_fixtures() {
    let cases = common::vector_json("crypto/signature-fixtures.json");
    let mut n = 0;
    for case in cases.as_array().unwrap() {
        let comment = case["comment"].as_str().unwrap();
        let key = parse_did_key(case["publicKeyDid"].as_str().unwrap()).unwrap();
        let expected_type = match case["algorithm"].as_str().unwrap() {
            "ES256K" => KeyType::K256,
            "ES256" => KeyType::P256,
            other => panic!("unknown algorithm {other}"),
        };
        assert_eq!(key.key_type(), expected_type, "{comment}");
        assert_eq!(
            key.key_type().jwt_alg(),
            case["algorithm"].as_str().unwrap()
        );
        // The legacy multibase form is the bare compressed point.
        let (_, point) = multibase::decode(case["publicKeyMultibase"].as_str().unwrap()).unwrap();
        assert_eq!(
            PublicKey::from_sec1(expected_type, &point).unwrap(),
            key,
            "{comment}"
        );
        let msg = common::b64(case["messageBase64"].as_str().unwrap());
        let sig = common::b64(case["signatureBase64"].as_str().unwrap());
        let valid = case["validSignature"].as_bool().unwrap();
        assert_eq!(key.verify(&msg, &sig).is_ok(), valid, "{comment}");
        n += 1;
    }
    common::report("crypto signature fixtures", n);
}

#[test]
fn w3c_did_key_vectors() {
    let mut n = 0;
    for case in common::vector_json("crypto/w3c_didkey_K256.json")
        .as_array()
        .unwrap()
    {
        let private = hex(case["privateKeyBytesHex"].as_str().unwrap());
        let kp = Keypair::from_private_bytes(KeyType::K256, &private).unwrap();
        let did = case["publicDidKey"].as_str().unwrap();
        assert_eq!(kp.public_key().to_did_key(), did);
        assert_eq!(parse_did_key(did).unwrap(), kp.public_key());
        n += 1;
    }
    for case in common::vector_json("crypto/w3c_didkey_P256.json")
        .as_array()
        .unwrap()
    {
        let b58 = format!("z{}", case["privateKeyBytesBase58"].as_str().unwrap());
        let (_, private) = multibase::decode(b58).unwrap();
        let kp = Keypair::from_private_bytes(KeyType::P256, &private).unwrap();
        let did = case["publicDidKey"].as_str().unwrap();
        assert_eq!(kp.public_key().to_did_key(), did);
        assert_eq!(parse_did_key(did).unwrap(), kp.public_key());
        n += 1;
    }
    common::report("crypto w3c did:key", n);
}

#[test]
fn signatures_are_low_s_and_verify_for_both_curves() {
    for kt in [KeyType::K256, KeyType::P256] {
        let kp = Keypair::generate(kt);
        let pk = kp.public_key();
        for i in 0..64u8 {
            let msg = [i; 17];
            let sig = kp.sign(&msg);
            pk.verify(&msg, &sig).unwrap();
            assert!(pk.verify(&[i ^ 1; 17], &sig).is_err());
        }
        let restored = Keypair::from_private_bytes(kt, &kp.private_bytes()).unwrap();
        assert_eq!(restored.public_key(), pk);
        assert_eq!(parse_did_key(&pk.to_did_key()).unwrap(), pk);
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
