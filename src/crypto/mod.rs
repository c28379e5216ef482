//! Keys and signatures for atproto (`specs/cryptography`): the two curves atproto
//! allows — secp256k1 ("k256", JWT alg `ES256K`) and NIST P-256 ("p256", `ES256`) —
//! behind one [`Keypair`] / [`PublicKey`] pair, and `did:key` encoding.
//!
//! Signatures are always the 64-byte compact `r || s` form over the SHA-256 of the
//! message, with `s` in the low half of the curve order. Signing normalises to low-S;
//! verification rejects high-S and DER-encoded signatures, as the spec requires.

mod didkey;
mod keys;

pub use didkey::{parse_did_key, parse_multikey};
pub use keys::{KeyType, Keypair, PublicKey};

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid key: {0}")]
    Key(String),
    #[error("invalid did:key: {0}")]
    DidKey(String),
    #[error("signature must be 64 bytes (compact r||s), got {0}")]
    SignatureLength(usize),
    #[error("signature is not in low-S form")]
    HighS,
    #[error("signature does not verify")]
    BadSignature,
}
