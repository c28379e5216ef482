//! Session tokens: HS256 JWTs signed with the server's secret, as the reference PDS
//! issues them. Access tokens live two hours; refresh tokens 90 days, and each refresh
//! token is also a row in the database, so using it (or logging out) revokes it.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ACCESS_TTL_SECS: i64 = 2 * 60 * 60;
pub const REFRESH_TTL_SECS: i64 = 90 * 24 * 60 * 60;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Full access (a login with the account password).
    #[serde(rename = "com.atproto.access")]
    Access,
    /// An app password: everything but account settings.
    #[serde(rename = "com.atproto.appPass")]
    AppPass,
    /// A privileged app password (may also use chat/DMs).
    #[serde(rename = "com.atproto.appPassPrivileged")]
    AppPassPrivileged,
    #[serde(rename = "com.atproto.refresh")]
    Refresh,
}

/// The claims atbox puts in (and requires of) a session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub scope: Scope,
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// Why a token was refused. The XRPC names match the reference PDS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("Token has expired")]
    Expired,
    #[error("Token could not be verified")]
    Invalid,
}

/// Signs and verifies session tokens for one service DID.
#[derive(Clone)]
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    service_did: String,
}

impl TokenSigner {
    pub fn new(secret: &[u8], service_did: &str) -> Self {
        TokenSigner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            service_did: service_did.to_owned(),
        }
    }

    fn sign(&self, typ: &str, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(typ.to_owned());
        encode(&header, claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// A fresh access token for `did` with `scope`.
    pub fn access_token(&self, did: &str, scope: Scope) -> String {
        let iat = crate::storage::unix_now();
        let claims = Claims {
            scope,
            sub: did.to_owned(),
            aud: self.service_did.clone(),
            iat,
            exp: iat + ACCESS_TTL_SECS,
            jti: None,
        };
        self.sign("at+jwt", &claims)
    }

    /// A fresh refresh token; returns it with its id (`jti`) and expiry.
    pub fn refresh_token(&self, did: &str) -> (String, String, i64) {
        let iat = crate::storage::unix_now();
        let jti: String = (0..32)
            .map(|_| format!("{:x}", rand::random::<u8>() & 0xf))
            .collect();
        let exp = iat + REFRESH_TTL_SECS;
        let claims = Claims {
            scope: Scope::Refresh,
            sub: did.to_owned(),
            aud: self.service_did.clone(),
            iat,
            exp,
            jti: Some(jti.clone()),
        };
        (self.sign("refresh+jwt", &claims), jti, exp)
    }

    /// Verifies a token's signature, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[&self.service_did]);
        v.set_required_spec_claims(&["exp", "sub", "aud"]);
        v.leeway = 0;
        decode::<Claims>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_the_secret_and_audience() {
        let s = TokenSigner::new(b"0123456789abcdef0123456789abcdef", "did:web:pds.test");
        let t = s.access_token("did:plc:abc", Scope::Access);
        let c = s.verify(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.scope), ("did:plc:abc", Scope::Access));
        let (r, jti, _) = s.refresh_token("did:plc:abc");
        assert_eq!(s.verify(&r).unwrap().jti.as_deref(), Some(jti.as_str()));
        let other = TokenSigner::new(b"another secret, 32 bytes long!!!", "did:web:pds.test");
        assert_eq!(other.verify(&t).unwrap_err(), TokenError::Invalid);
        let elsewhere = TokenSigner::new(b"0123456789abcdef0123456789abcdef", "did:web:other.test");
        assert_eq!(elsewhere.verify(&t).unwrap_err(), TokenError::Invalid);
        assert_eq!(s.verify("garbage").unwrap_err(), TokenError::Invalid);
    }
}
