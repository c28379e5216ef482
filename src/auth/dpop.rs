//! DPoP (RFC 9449): proofs that the caller holds the key an OAuth token is bound to.
//!
//! Every OAuth request carries a `DPoP` header, a JWT signed by the app's own key
//! (ES256, the key in its header) naming the request's method (`htm`) and URL (`htu`),
//! when it was made (`iat`), a unique `jti`, the server's current nonce and, at the
//! resource server, a hash of the access token (`ath`). [`Dpop::check`] verifies all
//! of that; a proof is good once (a bounded replay cache), and nonces rotate every
//! minute (HMAC of the minute's number with a secret made at start: nothing stored).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long one nonce is current; the previous and next are accepted too.
pub const NONCE_ROTATION_SECS: i64 = 60;
/// How old a proof may be, and how far its clock may run ahead (phones drift): the
/// reference accepts 10 s of age plus 180 s of clock tolerance.
pub const MAX_AGE_SECS: i64 = 10;
pub const CLOCK_TOLERANCE_SECS: i64 = 180;
/// Proofs remembered at most (a few MB); more in flight are refused until old ones age out.
const REPLAY_ENTRIES: usize = 100_000;

/// A verified proof: the key's thumbprint (what tokens are bound to) and its `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
    pub jti: String,
}

/// Why a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    /// The proof is malformed, forged, stale, for another request, or replayed.
    Invalid(String),
    /// The proof has no nonce or an old one: retry with the one in `DPoP-Nonce`.
    UseNonce,
}

/// The request a proof must be for.
pub struct Target<'a> {
    pub method: &'a str,
    /// Every URL (without query) this request may be named by: the public origin's
    /// and the Host header's.
    pub urls: &'a [String],
    /// The access token presented with the proof (resource requests), for `ath`.
    pub access_token: Option<&'a str>,
}

/// Nonces and the replay cache, shared by the authorization and resource servers.
pub struct Dpop {
    secret: [u8; 32],
    seen: Mutex<HashMap<[u8; 16], i64>>,
}

impl Default for Dpop {
    fn default() -> Self {
        Dpop {
            secret: rand::random(),
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Dpop {
    /// The nonce to hand out now.
    pub fn nonce(&self, now: i64) -> String {
        self.nonce_for(now.div_euclid(NONCE_ROTATION_SECS))
    }

    fn nonce_for(&self, counter: i64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(counter.to_be_bytes());
        URL_SAFE_NO_PAD.encode(&h.finalize()[..18])
    }

    fn nonce_ok(&self, nonce: &str, now: i64) -> bool {
        let c = now.div_euclid(NONCE_ROTATION_SECS);
        (c - 1..=c + 1).any(|c| self.nonce_for(c) == nonce)
    }

    /// Verifies `proof` for `target` at `now`; remembers it so it is good once.
    pub fn check(&self, proof: &str, target: &Target, now: i64) -> Result<Proof, DpopError> {
        let bad = |why: &str| DpopError::Invalid(why.to_owned());
        let (header, claims) = verify_signature(proof).map_err(|e| bad(&e))?;
        let jkt = thumbprint(&header["jwk"])
            .ok_or_else(|| bad("DPoP proof key is not a P-256 public key"))?;
        let iat = claims["iat"]
            .as_i64()
            .ok_or_else(|| bad("DPoP proof has no \"iat\""))?;
        if iat < now - MAX_AGE_SECS - CLOCK_TOLERANCE_SECS || iat > now + CLOCK_TOLERANCE_SECS {
            return Err(bad("DPoP proof is too old or from the future"));
        }
        let jti = claims["jti"]
            .as_str()
            .filter(|j| !j.is_empty() && j.len() <= 256)
            .ok_or_else(|| bad("DPoP proof has no \"jti\""))?;
        if claims["htm"].as_str() != Some(target.method) {
            return Err(bad("DPoP \"htm\" mismatch"));
        }
        let htu = claims["htu"]
            .as_str()
            .ok_or_else(|| bad("DPoP proof has no \"htu\""))?;
        let htu = htu.split(['?', '#']).next().unwrap_or_default();
        if !target.urls.iter().any(|u| same_url(u, htu)) {
            return Err(bad("DPoP \"htu\" mismatch"));
        }
        match (target.access_token, claims.get("ath")) {
            (Some(token), Some(Value::String(ath))) if *ath == sha256_b64(token) => {}
            (Some(_), _) => return Err(bad("DPoP \"ath\" mismatch")),
            (None, None) => {}
            (None, Some(_)) => return Err(bad("DPoP \"ath\" is not allowed here")),
        }
        match claims["nonce"].as_str() {
            Some(n) if self.nonce_ok(n, now) => {}
            _ => return Err(DpopError::UseNonce),
        }
        self.first_use(&jkt, jti, now)?;
        Ok(Proof {
            jkt,
            jti: jti.to_owned(),
        })
    }

    fn first_use(&self, jkt: &str, jti: &str, now: i64) -> Result<(), DpopError> {
        let mut h = Sha256::new();
        h.update(jkt);
        h.update([0]);
        h.update(jti);
        let key: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REPLAY_ENTRIES {
            seen.retain(|_, until| *until > now);
        }
        if seen.len() >= REPLAY_ENTRIES {
            return Err(DpopError::Invalid(
                "too many DPoP proofs in flight; try again in a minute".into(),
            ));
        }
        let until = now + MAX_AGE_SECS + 2 * CLOCK_TOLERANCE_SECS;
        match seen.insert(key, until) {
            Some(old) if old > now => Err(DpopError::Invalid("DPoP proof replayed".into())),
            _ => Ok(()),
        }
    }
}

/// base64url(SHA-256(s)), as `ath` and PKCE's S256 use it.
pub fn sha256_b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()))
}

/// Checks a `dpop+jwt` signed ES256 by the public key in its own header; returns the
/// header and the claims.
fn verify_signature(jwt: &str) -> Result<(Value, Value), String> {
    if jwt.len() > 8192 {
        return Err("DPoP proof is too long".into());
    }
    let part = |s: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "DPoP proof is not a JWT")?;
        serde_json::from_slice(&bytes).map_err(|_| "DPoP proof is not a JWT".to_owned())
    };
    let mut parts = jwt.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("DPoP proof is not a JWT".into());
    };
    let header = part(h)?;
    if header["typ"] != "dpop+jwt" {
        return Err("DPoP proof must have typ \"dpop+jwt\"".into());
    }
    if header["alg"] != "ES256" {
        return Err("DPoP proofs must be signed with ES256".into());
    }
    let jwk = &header["jwk"];
    if jwk.get("d").is_some() {
        return Err("DPoP proof carries a private key".into());
    }
    let (Some(x), Some(y)) = (jwk["x"].as_str(), jwk["y"].as_str()) else {
        return Err("DPoP proof has no public key".into());
    };
    let key = jsonwebtoken::DecodingKey::from_ec_components(x, y)
        .map_err(|_| "DPoP proof key is not valid".to_owned())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(jwt, &key, &v)
        .map_err(|_| "DPoP proof signature is not valid".to_owned())?;
    Ok((header, data.claims))
}

/// The RFC 7638 thumbprint of a P-256 public JWK.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
        return None;
    }
    let (x, y) = (jwk["x"].as_str()?, jwk["y"].as_str()?);
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    Some(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// Compares URLs as RFC 9449 asks (scheme and host case-insensitively, default ports).
fn same_url(expected: &str, given: &str) -> bool {
    match (url::Url::parse(expected), url::Url::parse(given)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
                && a.path() == b.path()
                && b.username().is_empty()
                && b.password().is_none()
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use p256::ecdsa::{signature::Signer, Signature, SigningKey};

    /// Makes a proof as an app would (for tests here and in `oauth`).
    pub(crate) fn proof(key: &SigningKey, claims: Value) -> String {
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn key() -> SigningKey {
        SigningKey::random(&mut rand::rngs::OsRng)
    }

    #[test]
    fn a_good_proof_passes_once_and_binds_to_its_key() {
        let dpop = Dpop::default();
        let now = 1_800_000_000;
        let urls = ["https://pds.example/oauth/token".to_owned()];
        let target = Target {
            method: "POST",
            urls: &urls,
            access_token: None,
        };
        let k = key();
        let claims = serde_json::json!({"jti": "a", "htm": "POST",
            "htu": "https://PDS.example:443/oauth/token", "iat": now, "nonce": dpop.nonce(now)});
        let p = dpop
            .check(&proof(&k, claims.clone()), &target, now)
            .unwrap();
        assert_eq!(p.jkt.len(), 43);
        assert_eq!(
            dpop.check(&proof(&k, claims), &target, now),
            Err(DpopError::Invalid("DPoP proof replayed".into()))
        );
    }

    #[test]
    fn wrong_request_old_proofs_missing_nonce_and_ath_are_refused() {
        let dpop = Dpop::default();
        let now = 1_800_000_000;
        let urls = ["https://pds.example/xrpc/x".to_owned()];
        let k = key();
        let n = dpop.nonce(now);
        let check = |claims: Value, token: Option<&str>| {
            let target = Target {
                method: "GET",
                urls: &urls,
                access_token: token,
            };
            dpop.check(&proof(&k, claims), &target, now)
        };
        let base = |jti: &str| {
            serde_json::json!({"jti": jti, "htm": "GET",
            "htu": "https://pds.example/xrpc/x", "iat": now, "nonce": n, "ath": sha256_b64("tok")})
        };
        assert!(check(base("ok"), Some("tok")).is_ok());
        let mut c = base("1");
        c["htm"] = "POST".into();
        assert!(matches!(check(c, Some("tok")), Err(DpopError::Invalid(_))));
        let mut c = base("2");
        c["htu"] = "https://evil.example/xrpc/x".into();
        assert!(matches!(check(c, Some("tok")), Err(DpopError::Invalid(_))));
        let mut c = base("3");
        c["iat"] = (now - 600).into();
        assert!(matches!(check(c, Some("tok")), Err(DpopError::Invalid(_))));
        let mut c = base("4");
        c.as_object_mut().unwrap().remove("nonce");
        assert_eq!(check(c, Some("tok")), Err(DpopError::UseNonce));
        assert!(matches!(
            check(base("5"), Some("other")),
            Err(DpopError::Invalid(_))
        ));
        // A nonce from ten minutes ago is no longer good.
        let mut c = base("6");
        c["nonce"] = dpop.nonce(now - 600).into();
        assert_eq!(check(c, Some("tok")), Err(DpopError::UseNonce));
    }
}
