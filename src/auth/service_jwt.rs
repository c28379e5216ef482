//! Verifying service-auth JWTs (`specs/xrpc#inter-service-authentication-jwt`): compact
//! JWS signed with an account's atproto key (`ES256K` or `ES256`), used when another PDS
//! vouches for an account moving here (createAccount during migration).

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
}

/// Reads the issuer without verifying (to know whose key to fetch).
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: ServiceClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
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
    if claims.lxm.as_deref().is_some_and(|l| l != method) {
        return Err(format!(
            "the token is for {}, not {method}",
            claims.lxm.unwrap_or_default()
        ));
    }
    if claims.exp <= now {
        return Err("the token has expired".into());
    }
    Ok(claims)
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
        assert_eq!(unverified_issuer(&token).as_deref(), Some("did:plc:abc"));
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
}
