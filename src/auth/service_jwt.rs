//! Service-auth JWTs (`specs/xrpc#inter-service-authentication-jwt`): compact JWS signed
//! with an account's atproto key (`ES256K` or `ES256`). atbox signs them for the
//! services it proxies to, and verifies them when another PDS vouches for an account
//! moving here (createAccount). A verified token names its method (`lxm`), lives at
//! most an hour, and is accepted once ([`ReplayCache`]).

use crate::crypto::{KeyType, PublicKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

/// The claims atbox checks.
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceClaims {
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default)]
    pub lxm: Option<String>,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
}

/// The longest lifetime a service token may claim.
pub const MAX_LIFETIME_SECS: i64 = 60 * 60;

/// Whether a bearer token is a service-auth JWT (signed with an atproto key) rather
/// than one of this server's session tokens (HS256), and if so, who claims to issue it
/// (unverified: it says whose key to check the signature with).
pub fn service_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (h, p) = (parts.next()?, parts.next()?);
    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    if !matches!(header["alg"].as_str(), Some("ES256K" | "ES256")) {
        return None;
    }
    let claims: ServiceClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    Some(claims.iss.split('#').next()?.to_owned())
}

/// Verifies signature, audience, method and expiry.
pub fn verify(
    token: &str,
    key: &PublicKey,
    audience: &str,
    method: &str,
    now: i64,
) -> Result<ServiceClaims, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT".into());
    };
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("unreadable header")?;
    let alg = header["alg"].as_str().unwrap_or("");
    let expected_alg = match key.key_type() {
        KeyType::K256 => "ES256K",
        KeyType::P256 => "ES256",
    };
    if alg != expected_alg {
        return Err(format!(
            "alg {alg:?} does not match the signing key ({expected_alg})"
        ));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "unreadable signature")?;
    key.verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|e| format!("signature: {e}"))?;
    let claims: ServiceClaims = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("unreadable claims")?;
    if claims.aud.split('#').next() != Some(audience) {
        return Err(format!("the token is for {}, not {audience}", claims.aud));
    }
    match claims.lxm.as_deref() {
        Some(l) if l == method => {}
        Some(l) => return Err(format!("the token is for {l}, not {method}")),
        None => {
            return Err(format!(
                "missing jwt lexicon method (\"lxm\"). must match: {method}"
            ))
        }
    }
    if claims.exp <= now {
        return Err("the token has expired".into());
    }
    let issued = claims.iat.unwrap_or(now).min(now);
    if claims.exp - issued > MAX_LIFETIME_SECS {
        return Err("the token claims a lifetime of more than an hour".into());
    }
    Ok(claims)
}

/// The `jti`s of service tokens already accepted, kept until they expire, so that a
/// token is accepted once. Bounded: ids over 128 bytes are refused, and a full cache
/// refuses new tokens until entries expire (at most an hour).
#[derive(Default)]
pub struct ReplayCache {
    seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

const REPLAY_CACHE_ENTRIES: usize = 10_000;

impl ReplayCache {
    /// Records `claims.jti`; an error if it was seen before (or cannot be kept).
    pub fn first_use(&self, claims: &ServiceClaims, now: i64) -> Result<(), String> {
        let Some(jti) = &claims.jti else {
            return Ok(());
        };
        if jti.len() > 128 {
            return Err("the token's jti is too long".into());
        }
        self.first_use_key(jti, claims.exp, now)
    }

    /// Records `key` (good until `until`); an error if it was seen before (or cannot
    /// be kept). Also used for OAuth client assertions' `jti`s.
    pub fn first_use_key(&self, key: &str, until: i64, now: i64) -> Result<(), String> {
        if key.len() > 2200 {
            return Err("the key is too long".into());
        }
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REPLAY_CACHE_ENTRIES {
            seen.retain(|_, exp| *exp > now);
        }
        if seen.len() >= REPLAY_CACHE_ENTRIES {
            return Err("too many service tokens in flight; try again later".into());
        }
        match seen.insert(key.to_owned(), until) {
            Some(exp) if exp > now => Err("the token was already used".into()),
            _ => Ok(()),
        }
    }
}

/// A compact JWS signed with an atproto key (`ES256K` or `ES256`, low-S r||s).
pub fn sign(key: &crate::crypto::Keypair, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "typ": "JWT", "alg": key.key_type().jwt_alg() });
    let signing_input = format!(
        "{}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header.to_string()),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    #[test]
    fn service_tokens_verify_only_for_their_audience_method_and_key() {
        let key = Keypair::generate(KeyType::K256);
        let claims = serde_json::json!({"iss": "did:plc:abc", "aud": "did:web:pds.test", "lxm": "com.atproto.server.createAccount", "exp": 2000, "iat": 1000});
        let token = sign(&key, &claims);
        let ok = verify(
            &token,
            &key.public_key(),
            "did:web:pds.test",
            "com.atproto.server.createAccount",
            1500,
        );
        assert_eq!(ok.unwrap().iss, "did:plc:abc");
        assert!(verify(
            &token,
            &key.public_key(),
            "did:web:other.test",
            "com.atproto.server.createAccount",
            1500
        )
        .is_err());
        assert!(verify(
            &token,
            &key.public_key(),
            "did:web:pds.test",
            "com.atproto.repo.createRecord",
            1500
        )
        .is_err());
        assert!(verify(
            &token,
            &key.public_key(),
            "did:web:pds.test",
            "com.atproto.server.createAccount",
            2500
        )
        .is_err());
        let other = Keypair::generate(KeyType::K256).public_key();
        assert!(verify(
            &token,
            &other,
            "did:web:pds.test",
            "com.atproto.server.createAccount",
            1500
        )
        .is_err());
    }

    /// Security review L5: a token without `lxm`, one claiming more than an hour, and
    /// the second use of a token are all refused.
    #[test]
    fn l5_service_auth_requires_lxm_bounds_lifetime_and_refuses_replay() {
        let key = Keypair::generate(KeyType::K256);
        let (aud, lxm) = ("did:web:pds.test", "com.atproto.server.createAccount");
        let check = |claims: serde_json::Value| {
            verify(&sign(&key, &claims), &key.public_key(), aud, lxm, 1500)
        };
        let no_lxm =
            serde_json::json!({"iss": "did:plc:abc", "aud": aud, "exp": 1600, "iat": 1490});
        assert!(check(no_lxm).unwrap_err().contains("lxm"));
        let long = serde_json::json!({"iss": "did:plc:abc", "aud": aud, "lxm": lxm, "exp": 1500 + 2 * 3600, "iat": 1490});
        assert!(check(long).unwrap_err().contains("hour"));
        let long_no_iat =
            serde_json::json!({"iss": "did:plc:abc", "aud": aud, "lxm": lxm, "exp": 1500 + 3601});
        assert!(check(long_no_iat).is_err());

        let cache = ReplayCache::default();
        let once = serde_json::json!({"iss": "did:plc:abc", "aud": aud, "lxm": lxm, "exp": 1600, "iat": 1490, "jti": "a1"});
        let claims = check(once).unwrap();
        assert!(cache.first_use(&claims, 1500).is_ok());
        assert!(cache
            .first_use(&claims, 1501)
            .unwrap_err()
            .contains("already used"));
    }
}
