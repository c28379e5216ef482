//! OAuth tokens and the authorization server's short-lived state, as plain data.
//!
//! Access tokens are HS256 JWTs signed with the server's secret (only atbox reads
//! them), bound to the app's DPoP key (`cnf.jkt`), naming the grant they belong to
//! (`jti`) and its scope; they live 15 minutes. Grants (one per signed-in app, holding
//! the refresh token's hash) are rows in SQLite (`storage::oauth`); revoking one also
//! lands in [`OAuthState::revoke`]'s in-memory list, checked on every request, so a
//! revoked app stops at once instead of when its token expires.
//!
//! Pushed authorization requests and codes live only in memory: minutes long, and a
//! restart merely asks the person to sign in again (no SD-card writes for them).

use super::dpop::Dpop;
use super::scopes::{Permissions, SetLookup};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Access token lifetime (the spec: short, never over an hour).
pub const ACCESS_TTL_SECS: i64 = 15 * 60;
/// A pushed request waits this long for the person to finish signing in.
pub const REQUEST_TTL_SECS: i64 = 5 * 60;
/// A code must be exchanged within this.
pub const CODE_TTL_SECS: i64 = 60;
/// Public apps (no key of their own): a refresh token and the whole session end two
/// weeks after sign-in.
pub const PUBLIC_SESSION_SECS: i64 = 14 * 24 * 60 * 60;
/// Confidential apps: each refresh token lasts three months, the session two years.
pub const CONFIDENTIAL_REFRESH_SECS: i64 = 90 * 24 * 60 * 60;
pub const CONFIDENTIAL_SESSION_SECS: i64 = 2 * 365 * 24 * 60 * 60;

/// The claims of an OAuth access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    /// The grant's id.
    pub jti: String,
    pub scope: String,
    pub client_id: String,
    pub cnf: Confirmation,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// How an app proved who it is at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public app (browser, phone, loopback): nothing but its DPoP key.
    None,
    /// A confidential app: a JWT signed by one of its published keys.
    PrivateKeyJwt { kid: String },
}

/// A pushed authorization request, until the person allows or denies it.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub client_name: String,
    pub client_auth: ClientAuth,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub login_hint: Option<String>,
    /// `query` or `fragment`.
    pub response_mode: String,
    pub dpop_jkt: String,
    pub expires_at: i64,
    /// The account that signed in on the page (set by the sign-in step).
    pub did: Option<String>,
    /// `prompt=none` / `login` / `consent`, as asked.
    pub prompt: Option<String>,
}

/// An issued code, until exchanged (once).
#[derive(Debug, Clone)]
pub struct IssuedCode {
    pub request: AuthRequest,
    pub did: String,
    pub expires_at: i64,
    /// The grant made when it was exchanged: a second exchange revokes it.
    pub grant: Option<String>,
}

/// OAuth state shared by the authorization and resource servers.
pub struct OAuthState {
    pub dpop: Dpop,
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    revoked: Mutex<HashMap<String, i64>>,
    permissions: Mutex<HashMap<String, Arc<Permissions>>>,
    /// Permission sets published elsewhere (`include:` of a lexicon atbox does not
    /// carry): NSID → (its `main` definition, when it was fetched).
    remote_sets: Mutex<HashMap<String, (Value, i64)>>,
    pub requests: Mutex<HashMap<String, AuthRequest>>,
    pub codes: Mutex<HashMap<String, IssuedCode>>,
}

/// Bounds on the in-memory maps (a flood of PARs cannot grow them without end).
const MAX_PENDING: usize = 10_000;
const MAX_CACHED_SCOPES: usize = 1_000;
pub const MAX_REMOTE_SETS: usize = 256;

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    Expired,
    Invalid,
    Revoked,
}

impl OAuthState {
    /// `secret`: the server's token secret; `issuer`: the public origin; `audience`:
    /// the service DID.
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> OAuthState {
        OAuthState {
            dpop: Dpop::default(),
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            revoked: Mutex::new(HashMap::new()),
            permissions: Mutex::new(HashMap::new()),
            remote_sets: Mutex::new(HashMap::new()),
            requests: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A fresh access token for a grant.
    pub fn access_token(
        &self,
        grant_id: &str,
        did: &str,
        client_id: &str,
        scope: &str,
        jkt: &str,
        now: i64,
    ) -> String {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: did.to_owned(),
            iat: now,
            exp: now + ACCESS_TTL_SECS,
            jti: grant_id.to_owned(),
            scope: scope.to_owned(),
            client_id: client_id.to_owned(),
            cnf: Confirmation {
                jkt: jkt.to_owned(),
            },
        };
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".to_owned());
        encode(&header, &claims, &self.encoding).expect("HS256 signing cannot fail")
    }

    /// Verifies an access token's signature, issuer, audience and expiry, and that its
    /// grant was not revoked.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, AccessError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AccessError::Invalid)?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err(AccessError::Invalid);
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[&self.audience]);
        v.set_issuer(&[&self.issuer]);
        v.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        v.leeway = 0;
        let claims = decode::<AccessClaims>(token, &self.decoding, &v)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AccessError::Expired,
                _ => AccessError::Invalid,
            })?
            .claims;
        if self.is_revoked(&claims.jti) {
            return Err(AccessError::Revoked);
        }
        Ok(claims)
    }

    /// Whether a token is one of these (DPoP-bound) access tokens, unverified: a
    /// presented Bearer token that is one is refused as such.
    pub fn looks_like_access_token(token: &str) -> bool {
        jsonwebtoken::decode_header(token).is_ok_and(|h| h.typ.as_deref() == Some("at+jwt"))
            && token
                .split('.')
                .nth(1)
                .and_then(|p| {
                    base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p)
                        .ok()
                })
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|c| c.get("cnf").is_some())
    }

    /// Stops a grant's access tokens at once (until they would have expired anyway).
    pub fn revoke(&self, grant_id: &str, now: i64) {
        let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.retain(|_, until| *until > now);
        revoked.insert(grant_id.to_owned(), now + ACCESS_TTL_SECS);
    }

    fn is_revoked(&self, grant_id: &str) -> bool {
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        revoked.contains_key(grant_id)
    }

    /// A permission set fetched from its publisher, if one was.
    pub fn remote_set(&self, nsid: &str) -> Option<Value> {
        let sets = self.remote_sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(nsid).map(|(def, _)| def.clone())
    }

    /// When the permission set `nsid` was fetched, if it was.
    pub fn remote_set_fetched(&self, nsid: &str) -> Option<i64> {
        let sets = self.remote_sets.lock().unwrap_or_else(|p| p.into_inner());
        sets.get(nsid).map(|(_, at)| *at)
    }

    /// Keeps a fetched permission set (at most [`MAX_REMOTE_SETS`]; the oldest go).
    pub fn put_remote_set(&self, nsid: &str, def: Value, now: i64) {
        let mut sets = self.remote_sets.lock().unwrap_or_else(|p| p.into_inner());
        if sets.len() >= MAX_REMOTE_SETS && !sets.contains_key(nsid) {
            if let Some(oldest) = sets
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                sets.remove(&oldest);
            }
        }
        sets.insert(nsid.to_owned(), (def, now));
        // A scope parsed before may now read differently.
        self.permissions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The permissions of a scope (parsed once, then cached).
    pub fn permissions(&self, scope: &str, sets: SetLookup) -> Result<Arc<Permissions>, String> {
        let mut cache = self.permissions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.get(scope) {
            return Ok(p.clone());
        }
        let parsed = Arc::new(Permissions::parse(scope, sets)?);
        if cache.len() >= MAX_CACHED_SCOPES {
            cache.clear();
        }
        cache.insert(scope.to_owned(), parsed.clone());
        Ok(parsed)
    }

    /// Keeps a pushed request; `None` when too many are pending.
    pub fn push_request(&self, request: AuthRequest, now: i64) -> Option<String> {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if requests.len() >= MAX_PENDING {
            requests.retain(|_, r| r.expires_at > now);
        }
        if requests.len() >= MAX_PENDING {
            return None;
        }
        let id = format!("req-{}", random_hex(16));
        requests.insert(id.clone(), request);
        Some(id)
    }

    /// A pending request (not expired).
    pub fn request(&self, id: &str, now: i64) -> Option<AuthRequest> {
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.get(id).filter(|r| r.expires_at > now).cloned()
    }

    /// Updates a pending request (the account that signed in).
    pub fn update_request(&self, id: &str, f: impl FnOnce(&mut AuthRequest)) {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = requests.get_mut(id) {
            f(r);
        }
    }

    /// Ends a pending request, returning it.
    pub fn take_request(&self, id: &str, now: i64) -> Option<AuthRequest> {
        let mut requests = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        requests.remove(id).filter(|r| r.expires_at > now)
    }

    /// Issues a code for an allowed request.
    pub fn issue_code(&self, request: AuthRequest, did: &str, now: i64) -> String {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, c| c.expires_at > now);
        let code = format!("cod-{}", random_hex(32));
        codes.insert(
            code.clone(),
            IssuedCode {
                request,
                did: did.to_owned(),
                expires_at: now + CODE_TTL_SECS,
                grant: None,
            },
        );
        code
    }
}

/// `n` random bytes as hex.
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_verify_and_stop_when_revoked() {
        let s = OAuthState::new(
            b"0123456789abcdef0123456789abcdef",
            "https://pds.example",
            "did:web:pds.example",
        );
        let now = crate::storage::unix_now();
        let t = s.access_token(
            "tok-1",
            "did:plc:abc",
            "https://app.example/c.json",
            "atproto",
            "jkt",
            now,
        );
        assert!(OAuthState::looks_like_access_token(&t));
        let c = s.verify_access(&t).unwrap();
        assert_eq!((c.sub.as_str(), c.cnf.jkt.as_str()), ("did:plc:abc", "jkt"));
        s.revoke("tok-1", now);
        assert_eq!(s.verify_access(&t).unwrap_err(), AccessError::Revoked);
        let other = OAuthState::new(
            b"another secret, another server!!",
            "https://pds.example",
            "did:web:pds.example",
        );
        assert_eq!(other.verify_access(&t).unwrap_err(), AccessError::Invalid);
        let old = s.access_token(
            "tok-2",
            "did:plc:abc",
            "c",
            "atproto",
            "jkt",
            now - ACCESS_TTL_SECS - 5,
        );
        assert_eq!(s.verify_access(&old).unwrap_err(), AccessError::Expired);
    }
}
