//! Reading credentials from a request: bearer session tokens and the admin's HTTP
//! basic auth. Error names and statuses follow the reference PDS, which the official
//! clients key their behaviour on (`ExpiredToken` makes them refresh). Which method
//! needs which credential is declared in the XRPC method table (`crate::xrpc::methods`).

use super::tokens::{Claims, Scope, TokenError, TokenSigner};
use super::Session;
use crate::error::{XrpcError, XrpcResult};
use axum::http::HeaderMap;
use base64::Engine;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The OAuth access token of a request (`Authorization: DPoP <token>`), if any.
pub fn dpop_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("dpop").then(|| token.trim())
}

/// The request's DPoP proof, when it carries exactly one.
pub fn dpop_proof(headers: &HeaderMap) -> Option<&str> {
    let mut proofs = headers.get_all("dpop").iter();
    match (proofs.next(), proofs.next()) {
        (Some(p), None) => p.to_str().ok().filter(|p| !p.is_empty()),
        _ => None,
    }
}

/// Refuses an OAuth access token sent as a Bearer token: it is bound to a key, and
/// worthless without a proof of holding it.
pub fn refuse_bound_bearer(headers: &HeaderMap) -> XrpcResult<()> {
    if bearer(headers).is_some_and(super::oauth::OAuthState::looks_like_access_token) {
        return Err(XrpcError::auth_required(
            "this OAuth token is DPoP-bound: send it as \"Authorization: DPoP\" with a DPoP proof",
        )
        .with_headers(vec![(
            "www-authenticate",
            "DPoP error=\"invalid_token\", error_description=\"DPoP-bound token used as a Bearer token\""
                .into(),
        )]));
    }
    Ok(())
}

fn token_error(e: TokenError) -> XrpcError {
    match e {
        TokenError::Expired => XrpcError::named("ExpiredToken", "Token has expired"),
        TokenError::Invalid => XrpcError::named("InvalidToken", "Token could not be verified"),
    }
}

fn verify(tokens: &TokenSigner, headers: &HeaderMap) -> XrpcResult<Claims> {
    let token =
        bearer(headers).ok_or_else(|| XrpcError::auth_required("Authentication Required"))?;
    tokens.verify(token).map_err(token_error)
}

/// The access session of a request that must be authenticated.
pub fn access(tokens: &TokenSigner, headers: &HeaderMap) -> XrpcResult<Session> {
    let claims = verify(tokens, headers)?;
    match claims.scope {
        Scope::Access | Scope::AppPass | Scope::AppPassPrivileged => {
            Ok(Session::new(claims.sub, claims.scope))
        }
        Scope::Refresh => Err(XrpcError::named(
            "InvalidToken",
            "Bad token scope: a refresh token cannot be used here",
        )),
    }
}

/// The access session, if the request carries one (for endpoints where auth is optional).
pub fn optional_access(tokens: &TokenSigner, headers: &HeaderMap) -> XrpcResult<Option<Session>> {
    if bearer(headers).is_none() {
        return Ok(None);
    }
    access(tokens, headers).map(Some)
}

/// The claims of a refresh token (refreshSession, deleteSession).
pub fn refresh(tokens: &TokenSigner, headers: &HeaderMap) -> XrpcResult<Claims> {
    let claims = verify(tokens, headers)?;
    if claims.scope != Scope::Refresh || claims.jti.is_none() {
        return Err(XrpcError::named(
            "InvalidToken",
            "Bad token scope: a refresh token is needed",
        ));
    }
    Ok(claims)
}

/// Checks the admin's HTTP basic auth (`admin:<admin_password>`).
pub fn admin(admin_password: Option<&str>, headers: &HeaderMap) -> XrpcResult<()> {
    let Some(expected) = admin_password else {
        return Err(XrpcError::auth_required(
            "admin endpoints are disabled: set admin_password (ATBOX_ADMIN_PASSWORD)",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    match given.as_deref().and_then(|s| s.split_once(':')) {
        Some(("admin", pass)) if constant_time_eq(pass.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(XrpcError::auth_required(
            "admin authentication required (HTTP basic, user \"admin\")",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
