//! The OAuth authorization server (atproto.com/specs/oauth): how every atproto app other
//! than the Bluesky app's password login signs in to an account on this box.
//!
//! - [`metadata`]: `/.well-known/oauth-protected-resource` and
//!   `/.well-known/oauth-authorization-server`.
//! - [`client`]: who the app is: its client metadata document (fetched with the
//!   SSRF-safe client, capped and cached) or a loopback development client, and its
//!   `private_key_jwt` assertions when it has keys.
//! - [`authorize`]: the pushed authorization request (PAR), then the pages a person
//!   sees (sign in, consent) and the redirect back to the app with a code.
//! - [`token`]: codes and refresh tokens for DPoP-bound access tokens; revocation.
//! - [`pages`]: the HTML (phone-first, no external assets, a strict CSP).
//! - [`permission_sets`]: `include:` sets atbox does not carry, fetched from their
//!   publishers (lexicon resolution).
//! - [`account`]: the account page: apps, app passwords, sessions, password, email.
//!
//! The resource-server half (accepting `Authorization: DPoP` on XRPC calls and
//! enforcing scopes) is in `xrpc::call`, over `auth::oauth`, `auth::dpop` and
//! `auth::scopes`.

pub(crate) mod account;
pub(crate) mod authorize;
pub(crate) mod client;
pub(crate) mod metadata;
pub(crate) mod pages;
pub(crate) mod permission_sets;
pub(crate) mod token;

use crate::auth::dpop::{DpopError, Proof, Target};
use crate::pds::Ctx;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

/// The endpoints apps call from anywhere (CORS allowed: browser apps call them).
pub(crate) fn api_routes() -> Router<Ctx> {
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(metadata::protected_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::authorization_server),
        )
        .route("/oauth/par", post(authorize::par))
        .route("/oauth/token", post(token::token))
        .route("/oauth/revoke", post(token::revoke))
}

/// The pages a person uses (same-origin only).
pub(crate) fn page_routes() -> Router<Ctx> {
    Router::new()
        .route("/oauth/authorize", get(authorize::page))
        .route("/oauth/authorize/sign-in", post(authorize::sign_in))
        .route("/oauth/authorize/consent", post(authorize::consent))
        .route("/account", get(account::page).post(account::act))
}

/// Loads the revocations of the last access-token lifetime (so a restart does not
/// bring a revoked app's last token back).
pub(crate) async fn restore(ctx: &Ctx) {
    let since = crate::storage::unix_now() - crate::auth::oauth::ACCESS_TTL_SECS;
    let rows = ctx
        .storage
        .read(move |conn| crate::storage::oauth::revoked_since(conn, since))
        .await
        .unwrap_or_default();
    for (id, at) in rows {
        ctx.oauth.revoke(&id, at);
    }
}

/// An OAuth error response (RFC 6749 §5.2): `{"error", "error_description"}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// A fresh DPoP nonce to send along (every answer to a DPoP request has one).
    pub nonce: Option<String>,
}

impl OAuthError {
    pub fn new(error: &'static str, description: impl Into<String>) -> OAuthError {
        let status = match error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        OAuthError {
            status,
            error,
            description: description.into(),
            nonce: None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_request", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> OAuthError {
        OAuthError::new("invalid_grant", d)
    }

    pub fn server(e: impl std::fmt::Display) -> OAuthError {
        OAuthError::new("server_error", e.to_string())
    }
}

impl From<crate::error::XrpcError> for OAuthError {
    fn from(e: crate::error::XrpcError) -> OAuthError {
        match e.status {
            StatusCode::TOO_MANY_REQUESTS => OAuthError {
                status: e.status,
                ..OAuthError::new("slow_down", e.message)
            },
            s if s.is_server_error() => OAuthError::server(e.message),
            _ => OAuthError::invalid_request(e.message),
        }
    }
}

impl From<crate::storage::StorageError> for OAuthError {
    fn from(e: crate::storage::StorageError) -> OAuthError {
        OAuthError::server(e)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut res = (self.status, axum::Json(body)).into_response();
        no_store(res.headers_mut());
        if let Some(n) = self.nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            res.headers_mut().insert("dpop-nonce", n);
        }
        res
    }
}

pub(crate) type OAuthResult<T> = Result<T, OAuthError>;

/// Token responses and errors are never cached (RFC 6749 §5.1).
pub(crate) fn no_store(h: &mut HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The public origin: the issuer and the base of every endpoint URL.
pub(crate) fn issuer(ctx: &crate::pds::AppState) -> &str {
    ctx.oauth.issuer()
}

/// The URLs a request to `path` may carry in a DPoP proof's `htu`: the issuer's, and
/// the Host header's (the LAN name, a tunnel's) over http and https.
pub(crate) fn request_urls(
    ctx: &crate::pds::AppState,
    headers: &HeaderMap,
    path: &str,
) -> Vec<String> {
    let mut urls = vec![format!("{}{path}", issuer(ctx))];
    if let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        if !host.is_empty() && host.len() < 256 {
            urls.push(format!("https://{host}{path}"));
            urls.push(format!("http://{host}{path}"));
        }
    }
    urls
}

/// Checks the DPoP proof an authorization-server request must carry.
pub(crate) fn check_dpop(ctx: &Ctx, headers: &HeaderMap, path: &str) -> OAuthResult<Proof> {
    let now = crate::storage::unix_now();
    let nonce = ctx.oauth.dpop.nonce(now);
    let fail = |error: &'static str, d: String| OAuthError {
        nonce: Some(nonce.clone()),
        ..OAuthError::new(error, d)
    };
    let proof = crate::auth::credentials::dpop_proof(headers).ok_or_else(|| {
        fail(
            "invalid_dpop_proof",
            "exactly one DPoP proof is required".into(),
        )
    })?;
    let urls = request_urls(ctx, headers, path);
    let target = Target {
        method: "POST",
        urls: &urls,
        access_token: None,
    };
    ctx.oauth
        .dpop
        .check(proof, &target, now)
        .map_err(|e| match e {
            DpopError::UseNonce => fail(
                "use_dpop_nonce",
                "use the DPoP nonce in the DPoP-Nonce header".into(),
            ),
            DpopError::Invalid(why) => fail("invalid_dpop_proof", why),
        })
}

/// The form body of an OAuth endpoint as name → value (the last of repeated names).
pub(crate) fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}
