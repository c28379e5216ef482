//! did:plc operations (the `did:plc` method spec, v0.1): building and signing
//! operations, deriving the DID of a genesis operation, and submitting to a directory.
//!
//! An operation is signed over its DAG-CBOR encoding without `sig`; `sig` is the
//! base64url (unpadded) 64-byte compact signature. A genesis operation's DID is
//! `did:plc:` + the first 24 characters of base32(sha256(signed operation)).

use super::IdentityError;
use crate::crypto::Keypair;
use crate::data::{cid_for_cbor, to_cbor};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A service entry in a PLC operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlcService {
    #[serde(rename = "type")]
    pub kind: String,
    pub endpoint: String,
}

/// A `plc_operation`, signed or not (`sig` empty until signed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlcOperation {
    #[serde(rename = "type")]
    pub kind: String,
    pub rotation_keys: Vec<String>,
    pub verification_methods: BTreeMap<String, String>,
    pub also_known_as: Vec<String>,
    pub services: BTreeMap<String, PlcService>,
    pub prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sig: Option<String>,
}

impl PlcOperation {
    /// The operation that points an account at this PDS: its signing key, its handle,
    /// and the rotation keys that may change it (highest authority first).
    pub fn for_account(
        rotation_keys: Vec<String>,
        signing_did_key: &str,
        handle: &str,
        pds_url: &str,
        prev: Option<String>,
    ) -> Self {
        PlcOperation {
            kind: "plc_operation".into(),
            rotation_keys,
            verification_methods: BTreeMap::from([(
                "atproto".to_owned(),
                signing_did_key.to_owned(),
            )]),
            also_known_as: vec![format!("at://{handle}")],
            services: BTreeMap::from([(
                "atproto_pds".to_owned(),
                PlcService {
                    kind: "AtprotoPersonalDataServer".into(),
                    endpoint: pds_url.to_owned(),
                },
            )]),
            prev,
            sig: None,
        }
    }

    /// Signs with a rotation key.
    pub fn sign(mut self, key: &Keypair) -> Self {
        self.sig = None;
        let sig = key.sign(&to_cbor(&self));
        self.sig = Some(URL_SAFE_NO_PAD.encode(sig));
        self
    }

    /// The CID of the signed operation (what the next operation's `prev` names).
    pub fn cid(&self) -> String {
        cid_for_cbor(&to_cbor(self)).to_string()
    }

    /// The DID a signed genesis operation creates.
    pub fn genesis_did(&self) -> String {
        let hash = Sha256::digest(to_cbor(self));
        let b32 = multibase::Base::Base32Lower.encode(hash);
        format!("did:plc:{}", &b32[..24])
    }
}

/// A PLC directory client.
#[derive(Clone)]
pub struct PlcClient {
    pub url: String,
    http: reqwest::Client,
}

impl PlcClient {
    pub fn new(url: &str, http: reqwest::Client) -> Self {
        PlcClient {
            url: url.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// Submits a signed operation for `did`.
    pub async fn submit(&self, did: &str, op: &PlcOperation) -> Result<(), IdentityError> {
        let res = self
            .http
            .post(format!("{}/{did}", self.url))
            .json(op)
            .send()
            .await
            .map_err(|e| IdentityError::Plc(format!("cannot reach {}: {e}", self.url)))?;
        if res.status().is_success() {
            return Ok(());
        }
        let status = res.status();
        let body = res.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(body);
        Err(IdentityError::Plc(format!("{status}: {message}")))
    }

    /// The last operation of `did` (to build the next one on).
    pub async fn last_operation(&self, did: &str) -> Result<PlcOperation, IdentityError> {
        let res = self
            .http
            .get(format!("{}/{did}/log/last", self.url))
            .send()
            .await
            .map_err(|e| IdentityError::Plc(format!("cannot reach {}: {e}", self.url)))?;
        if !res.status().is_success() {
            return Err(IdentityError::Plc(format!("{did}: {}", res.status())));
        }
        res.json()
            .await
            .map_err(|e| IdentityError::Plc(format!("{did}: unreadable operation: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyType;

    #[test]
    fn genesis_did_is_derived_from_the_signed_operation() {
        let rotation = Keypair::generate(KeyType::K256);
        let signing = Keypair::generate(KeyType::K256);
        let op = PlcOperation::for_account(
            vec![rotation.public_key().to_did_key()],
            &signing.public_key().to_did_key(),
            "alice.test",
            "https://pds.test",
            None,
        )
        .sign(&rotation);
        let did = op.genesis_did();
        assert!(did.starts_with("did:plc:") && did.len() == 32, "{did}");
        // The signature verifies over the unsigned encoding.
        let mut unsigned = op.clone();
        unsigned.sig = None;
        let sig = URL_SAFE_NO_PAD.decode(op.sig.as_ref().unwrap()).unwrap();
        rotation
            .public_key()
            .verify(&to_cbor(&unsigned), &sig)
            .unwrap();
        // JSON field names are the directory's.
        let json = serde_json::to_value(&op).unwrap();
        assert!(json.get("rotationKeys").is_some() && json.get("alsoKnownAs").is_some());
        assert_eq!(
            json["services"]["atproto_pds"]["type"],
            "AtprotoPersonalDataServer"
        );
    }
}
