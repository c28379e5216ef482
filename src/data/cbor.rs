//! DAG-CBOR encoding and strict decoding, on `serde_ipld_dagcbor`.
//!
//! The crate encodes canonically (map keys sorted length-first, minimal integers) but
//! decodes leniently. atproto needs the decoder to refuse anything that would not
//! re-encode to the same bytes, because a block's CID is the hash of its bytes: so
//! [`decode_cbor`] decodes, re-encodes and compares.

use super::{check_atproto_rules, DataError, Ipld};
use serde::{de::DeserializeOwned, Serialize};

/// Encodes any serialisable value (an [`Ipld`] tree, a commit, an MST node) as DAG-CBOR.
pub fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding into a Vec fails only on allocation failure or on a value that is not
    // representable at all (e.g. a map with non-string keys), neither of which our
    // types can produce.
    serde_ipld_dagcbor::to_vec(value).expect("DAG-CBOR encoding of an in-memory value")
}

/// Encodes an [`Ipld`] tree as DAG-CBOR.
pub fn encode_cbor(value: &Ipld) -> Vec<u8> {
    to_cbor(value)
}

/// Decodes DAG-CBOR into an [`Ipld`] tree, refusing non-canonical bytes, floats and
/// values that break atproto's data-model rules.
pub fn decode_cbor(bytes: &[u8]) -> Result<Ipld, DataError> {
    let value: Ipld = from_cbor(bytes)?;
    check_atproto_rules(&value)?;
    Ok(value)
}

/// Decodes DAG-CBOR into a typed value (a commit, an MST node), refusing bytes that are
/// not the canonical encoding of what they decode to.
pub fn from_cbor<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DataError> {
    let value: T =
        serde_ipld_dagcbor::from_slice(bytes).map_err(|e| DataError::Cbor(e.to_string()))?;
    if serde_ipld_dagcbor::to_vec(&value).ok().as_deref() != Some(bytes) {
        return Err(DataError::NotCanonical);
    }
    Ok(value)
}
