//! The atproto data model (`specs/data-model`): values, their DAG-CBOR and JSON forms,
//! and content identifiers.
//!
//! Values are [`Ipld`] trees from `ipld-core`. atproto is a strict subset of IPLD:
//! no floats, integers within 64 bits, `$type` a non-empty string, blobs of a fixed shape,
//! and DAG-CBOR in its one canonical byte form. Every decoder here enforces that subset,
//! so nothing non-canonical ever reaches the repo (where it would hash to a CID other
//! implementations cannot reproduce).

mod blobs;
mod cbor;
mod cids;
mod json;
mod rules;

pub use blobs::{blob_refs, BlobRef};
pub use cbor::{decode_cbor, encode_cbor, from_cbor, to_cbor};
pub use cids::{
    cid_for_cbor, cid_for_raw, parse_cid, CODEC_DAG_CBOR, CODEC_RAW, MULTIHASH_SHA2_256,
};
pub use json::{ipld_from_json, ipld_to_json};
pub use rules::check_atproto_rules;

pub use cid::Cid;
pub use ipld_core::ipld::Ipld;

/// Why bytes or JSON are not valid atproto data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    #[error("invalid DAG-CBOR: {0}")]
    Cbor(String),
    #[error("DAG-CBOR is not in canonical form (map key order, integer width or duplicate keys)")]
    NotCanonical,
    #[error("floating-point numbers are not allowed in atproto data")]
    Float,
    #[error("integer {0} is outside the 64-bit signed range")]
    IntegerRange(i128),
    #[error("invalid CID: {0}")]
    Cid(String),
    #[error("invalid JSON data: {0}")]
    Json(String),
    #[error("{0}")]
    Rule(String),
}
