//! CIDv1 with sha2-256: `dag-cbor` (0x71) for records and repo nodes, `raw` (0x55) for blobs.

use super::DataError;
use cid::Cid;
use sha2::{Digest, Sha256};

pub const CODEC_DAG_CBOR: u64 = 0x71;
pub const CODEC_RAW: u64 = 0x55;
pub const MULTIHASH_SHA2_256: u64 = 0x12;

fn cid_for(codec: u64, bytes: &[u8]) -> Cid {
    let digest = Sha256::digest(bytes);
    let hash = cid::multihash::Multihash::<64>::wrap(MULTIHASH_SHA2_256, &digest)
        .expect("a 32-byte digest fits a 64-byte multihash");
    Cid::new_v1(codec, hash)
}

/// The CID of a DAG-CBOR block.
pub fn cid_for_cbor(bytes: &[u8]) -> Cid {
    cid_for(CODEC_DAG_CBOR, bytes)
}

/// The CID of a blob (raw bytes).
pub fn cid_for_raw(bytes: &[u8]) -> Cid {
    cid_for(CODEC_RAW, bytes)
}

/// Parses a CID string as atproto uses them: CIDv1 only.
pub fn parse_cid(s: &str) -> Result<Cid, DataError> {
    let cid = Cid::try_from(s).map_err(|e| DataError::Cid(format!("{s:?}: {e}")))?;
    if cid.version() != cid::Version::V1 {
        return Err(DataError::Cid(format!("{s:?}: CIDv0 is not allowed")));
    }
    Ok(cid)
}
