//! The token endpoint and revocation. A code becomes a grant (a row, see
//! `storage::oauth`) with a DPoP-bound access token and a refresh token; each refresh
//! replaces the refresh token (one small UPDATE). Reusing a code or a replaced refresh
//! token revokes the grant: one of the two holders is not the app.

use super::client;
use super::{check_dpop, form, no_store, OAuthError, OAuthResult};
use crate::auth::dpop::{sha256_b64, Proof};
use crate::auth::oauth::{
    random_hex, ClientAuth, ACCESS_TTL_SECS, CONFIDENTIAL_REFRESH_SECS, CONFIDENTIAL_SESSION_SECS,
    PUBLIC_SESSION_SECS,
};
use crate::pds::Ctx;
use crate::storage::oauth::{self as db, Grant, RefreshMatch};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// `POST /oauth/token`.
pub(crate) async fn token(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange(&ctx, &headers, &body).await {
        Ok(res) => res,
        Err(mut e) => {
            e.nonce
                .get_or_insert_with(|| ctx.oauth.dpop.nonce(crate::storage::unix_now()));
            e.into_response()
        }
    }
}

async fn exchange(ctx: &Ctx, headers: &HeaderMap, body: &[u8]) -> OAuthResult<Response> {
    let proof = check_dpop(ctx, headers, "/oauth/token")?;
    let f = form(body);
    let client_id = f
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
    let client = client::resolve(ctx, client_id).await?;
    let auth = client::authenticate(ctx, &client, &f)?;
    let grant = match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => code_grant(ctx, &client, &auth, &proof, &f).await?,
        Some("refresh_token") => refresh_grant(ctx, &client, &auth, &proof, &f).await?,
        _ => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            ))
        }
    };
    let (grant, refresh) = grant;
    // The resource server reads permission sets from memory: have them there.
    super::permission_sets::fetch_included(ctx, &grant.scope).await;
    let now = crate::storage::unix_now();
    let access = ctx.oauth.access_token(
        &grant.id,
        &grant.did,
        &grant.client_id,
        &grant.scope,
        &grant.dpop_jkt,
        now,
    );
    let body = serde_json::json!({
        "access_token": access,
        "token_type": "DPoP",
        "expires_in": ACCESS_TTL_SECS,
        "refresh_token": refresh,
        "scope": grant.scope,
        "sub": grant.did,
    });
    let mut res = axum::Json(body).into_response();
    no_store(res.headers_mut());
    if let Ok(n) = HeaderValue::from_str(&ctx.oauth.dpop.nonce(now)) {
        res.headers_mut().insert("dpop-nonce", n);
    }
    Ok(res)
}

fn hash(refresh: &str) -> Vec<u8> {
    Sha256::digest(refresh.as_bytes()).to_vec()
}

fn new_refresh_token() -> String {
    format!("ref-{}", random_hex(32))
}

/// A code for a new grant: same client, redirect URI and DPoP key as the request,
/// and the PKCE verifier of its challenge.
async fn code_grant(
    ctx: &Ctx,
    client: &client::Client,
    auth: &ClientAuth,
    proof: &Proof,
    f: &HashMap<String, String>,
) -> OAuthResult<(Grant, String)> {
    let code = f
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let now = crate::storage::unix_now();
    let grant_id = format!("tok-{}", random_hex(16));
    let issued = {
        let mut codes = ctx.oauth.codes.lock().unwrap_or_else(|p| p.into_inner());
        match codes.get_mut(code) {
            Some(c) if c.expires_at > now => match c.grant.replace(grant_id.clone()) {
                None => Ok(c.clone()),
                Some(earlier) => Err(earlier),
            },
            _ => return Err(OAuthError::invalid_grant("the code is unknown or expired")),
        }
    };
    let issued = match issued {
        Ok(c) => c,
        Err(earlier) => {
            crate::pds::signed_in::revoke_app(ctx, None, &earlier).await?;
            return Err(OAuthError::invalid_grant(
                "the code was already used; the tokens issued for it are revoked",
            ));
        }
    };
    let req = &issued.request;
    if req.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the code was issued to another client",
        ));
    }
    if f.get("redirect_uri") != Some(&req.redirect_uri) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the request's",
        ));
    }
    let verifier = f
        .get("code_verifier")
        .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
    if !(43..=128).contains(&verifier.len()) || sha256_b64(verifier) != req.code_challenge {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        ));
    }
    if proof.jkt != req.dpop_jkt {
        return Err(OAuthError::new(
            "invalid_dpop_proof",
            "the DPoP key is not the one the request was made with",
        ));
    }
    if *auth != req.client_auth {
        return Err(OAuthError::new(
            "invalid_client",
            "the client authenticated differently than at PAR",
        ));
    }
    let (refresh_secs, session_secs) = if client.is_confidential() {
        (CONFIDENTIAL_REFRESH_SECS, CONFIDENTIAL_SESSION_SECS)
    } else {
        (PUBLIC_SESSION_SECS, PUBLIC_SESSION_SECS)
    };
    let grant = Grant {
        id: grant_id,
        did: issued.did.clone(),
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        client_auth: serde_json::to_string(auth).map_err(OAuthError::server)?,
        scope: req.scope.clone(),
        dpop_jkt: proof.jkt.clone(),
        created_at: now,
        used_at: now,
        refresh_expires_at: now + refresh_secs,
        session_expires_at: now + session_secs,
        revoked_at: None,
    };
    let refresh = new_refresh_token();
    let (row, h) = (grant.clone(), hash(&refresh));
    ctx.storage
        .write(move |conn| db::insert_grant(conn, &row, &h))
        .await?;
    Ok((grant, refresh))
}

/// A refresh: the grant's current refresh token, from the same client and DPoP key,
/// replaced by a new one.
async fn refresh_grant(
    ctx: &Ctx,
    client: &client::Client,
    auth: &ClientAuth,
    proof: &Proof,
    f: &HashMap<String, String>,
) -> OAuthResult<(Grant, String)> {
    let presented = f
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let old_hash = hash(presented);
    let h = old_hash.clone();
    let found = ctx
        .storage
        .read(move |conn| db::by_refresh(conn, &h))
        .await?;
    let now = crate::storage::unix_now();
    let mut grant = match found {
        None => return Err(OAuthError::invalid_grant("the refresh token is unknown")),
        Some(RefreshMatch::Replaced(g)) => {
            crate::pds::signed_in::revoke_app(ctx, None, &g.id).await?;
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the session is revoked",
            ));
        }
        Some(RefreshMatch::Current(g)) => g,
    };
    if grant.revoked_at.is_some() {
        return Err(OAuthError::invalid_grant("the session was revoked"));
    }
    if grant.refresh_expires_at <= now || grant.session_expires_at <= now {
        return Err(OAuthError::invalid_grant(
            "the session has expired; sign in again",
        ));
    }
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the refresh token belongs to another client",
        ));
    }
    if grant.dpop_jkt != proof.jkt {
        return Err(OAuthError::new(
            "invalid_dpop_proof",
            "the DPoP key is not the session's",
        ));
    }
    let was_confidential =
        grant.client_auth != serde_json::to_string(&ClientAuth::None).unwrap_or_default();
    if was_confidential != matches!(auth, ClientAuth::PrivateKeyJwt { .. }) {
        return Err(OAuthError::new(
            "invalid_client",
            "the client authenticated differently than when it signed in",
        ));
    }
    if let Some(asked) = f.get("scope").filter(|s| !s.is_empty()) {
        let have: Vec<&str> = grant.scope.split(' ').collect();
        if asked
            .split(' ')
            .any(|s| !s.is_empty() && !have.contains(&s))
        {
            return Err(OAuthError::new(
                "invalid_scope",
                "a refresh cannot widen the scope",
            ));
        }
    }
    let refresh_expires_at = if was_confidential {
        (now + CONFIDENTIAL_REFRESH_SECS).min(grant.session_expires_at)
    } else {
        grant.session_expires_at
    };
    let refresh = new_refresh_token();
    let (id, new_hash) = (grant.id.clone(), hash(&refresh));
    let rotated = ctx
        .storage
        .write(move |conn| {
            db::rotate_refresh(conn, &id, &old_hash, &new_hash, now, refresh_expires_at)
        })
        .await?;
    if !rotated {
        return Err(OAuthError::invalid_grant("the refresh token was just used"));
    }
    grant.used_at = now;
    grant.refresh_expires_at = refresh_expires_at;
    Ok((grant, refresh))
}

/// `POST /oauth/revoke` (RFC 7009): a refresh or access token; the whole grant ends.
/// Unknown tokens are not an error.
pub(crate) async fn revoke(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let f = form(&body);
    let Some(token) = f.get("token") else {
        return OAuthError::invalid_request("token is required").into_response();
    };
    let client_id = f.get("client_id");
    let h = hash(token);
    let grant = match ctx.storage.read(move |conn| db::by_refresh(conn, &h)).await {
        Ok(Some(RefreshMatch::Current(g) | RefreshMatch::Replaced(g))) => Some((g.id, g.client_id)),
        _ => ctx
            .oauth
            .verify_access(token)
            .ok()
            .map(|c| (c.jti, c.client_id)),
    };
    if let Some((id, owner)) = grant {
        if client_id.is_none_or(|c| *c == owner) {
            if let Err(e) = crate::pds::signed_in::revoke_app(&ctx, None, &id).await {
                return OAuthError::from(e).into_response();
            }
        }
    }
    let mut res = axum::Json(serde_json::json!({})).into_response();
    no_store(res.headers_mut());
    res
}
