//! `did:key` and multikey encoding of public keys (`specs/cryptography#public-key-encoding`):
//! `did:key:z` + base58btc(multicodec varint of the curve + compressed SEC1 point).

use super::{CryptoError, KeyType, PublicKey};

/// Multicodec prefixes, already varint-encoded: secp256k1-pub (0xe7), p256-pub (0x1200).
const K256_PREFIX: [u8; 2] = [0xe7, 0x01];
const P256_PREFIX: [u8; 2] = [0x80, 0x24];

impl PublicKey {
    /// The multikey string: `z` + base58btc(prefix || compressed point), as used in
    /// DID documents' `publicKeyMultibase`.
    pub fn to_multikey(&self) -> String {
        let prefix = match self.key_type() {
            KeyType::K256 => K256_PREFIX,
            KeyType::P256 => P256_PREFIX,
        };
        let mut bytes = prefix.to_vec();
        bytes.extend(self.to_compressed());
        multibase::encode(multibase::Base::Base58Btc, bytes)
    }

    /// `did:key:z...`
    pub fn to_did_key(&self) -> String {
        format!("did:key:{}", self.to_multikey())
    }
}

/// Parses a multikey (`z...` with a curve prefix) into a public key.
pub fn parse_multikey(s: &str) -> Result<PublicKey, CryptoError> {
    let err = |m: &str| CryptoError::DidKey(format!("{s:?}: {m}"));
    if !s.starts_with('z') {
        return Err(err("must be base58btc multibase (start with 'z')"));
    }
    let (_, bytes) = multibase::decode(s).map_err(|e| err(&e.to_string()))?;
    let (key_type, point) = if let Some(p) = bytes.strip_prefix(&K256_PREFIX) {
        (KeyType::K256, p)
    } else if let Some(p) = bytes.strip_prefix(&P256_PREFIX) {
        (KeyType::P256, p)
    } else {
        return Err(err("not a secp256k1 or P-256 public key"));
    };
    PublicKey::from_sec1(key_type, point).map_err(|e| err(&e.to_string()))
}

/// Parses `did:key:z...` into a public key.
pub fn parse_did_key(did: &str) -> Result<PublicKey, CryptoError> {
    let multikey = did
        .strip_prefix("did:key:")
        .ok_or_else(|| CryptoError::DidKey(format!("{did:?}: must start with \"did:key:\"")))?;
    parse_multikey(multikey)
}
