//! DID documents: the parts atproto reads (`specs/did`): the handle in `alsoKnownAs`,
//! the `#atproto` signing key, and the `#atproto_pds` service endpoint.

use crate::crypto::{parse_multikey, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A DID document, kept as JSON (it is served and proxied as received) with typed
/// accessors for what atproto needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DidDocument(pub Value);

fn matches_fragment(id: &str, did: &str, fragment: &str) -> bool {
    id == fragment || id == format!("{did}{fragment}")
}

impl DidDocument {
    pub fn id(&self) -> Option<&str> {
        self.0.get("id")?.as_str()
    }

    /// The handle the document claims (`at://` entry of `alsoKnownAs`), unverified.
    pub fn handle(&self) -> Option<String> {
        self.0
            .get("alsoKnownAs")?
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find_map(|a| a.strip_prefix("at://"))
            .map(str::to_owned)
    }

    /// The atproto signing key (`#atproto` verification method).
    pub fn signing_key(&self) -> Option<PublicKey> {
        let did = self.id()?;
        self.0
            .get("verificationMethod")?
            .as_array()?
            .iter()
            .find_map(|vm| {
                let id = vm.get("id")?.as_str()?;
                if !matches_fragment(id, did, "#atproto") {
                    return None;
                }
                parse_multikey(vm.get("publicKeyMultibase")?.as_str()?).ok()
            })
    }

    /// The endpoint of a service by fragment (e.g. `#atproto_pds`) and type.
    pub fn service_endpoint(&self, fragment: &str) -> Option<String> {
        let did = self.id()?;
        self.0.get("service")?.as_array()?.iter().find_map(|s| {
            let id = s.get("id")?.as_str()?;
            if !matches_fragment(id, did, fragment) {
                return None;
            }
            s.get("serviceEndpoint")?
                .as_str()
                .map(|e| e.trim_end_matches('/').to_owned())
        })
    }

    pub fn pds_endpoint(&self) -> Option<String> {
        self.service_endpoint("#atproto_pds")
    }

    /// The document a PDS would publish for an account (what `did:web` users put at
    /// `/.well-known/did.json`, and the shape of a PLC document).
    pub fn for_account(
        did: &str,
        handle: &str,
        signing_key: &PublicKey,
        pds_url: &str,
    ) -> DidDocument {
        DidDocument(json!({
            "@context": [
                "https://www.w3.org/ns/did/v1",
                "https://w3id.org/security/multikey/v1",
                "https://w3id.org/security/suites/secp256k1-2019/v1"
            ],
            "id": did,
            "alsoKnownAs": [format!("at://{handle}")],
            "verificationMethod": [{
                "id": format!("{did}#atproto"),
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": signing_key.to_multikey()
            }],
            "service": [{
                "id": "#atproto_pds",
                "type": "AtprotoPersonalDataServer",
                "serviceEndpoint": pds_url
            }]
        }))
    }
}
