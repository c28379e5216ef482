//! The owner's actions on the LAN setup page, behind the owner's login: invite codes
//! for family and friends, asking the relays to crawl now, the accounts the box
//! hosts, the one-time codes waiting for their people when there is no SMTP, and the
//! backups' recovery phrase (shown here once, until the owner says it is written down).
//!
//! The page logs in with the ordinary `com.atproto.server.createSession` (same origin)
//! and sends the access token; these routes accept only the box's owner — its first
//! account — with a full session (an app password is for apps, not for administering
//! the box), and only from the local network, like the rest of the page.

use crate::auth::tokens::Scope;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::Ctx;
use crate::storage::accounts;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Checks that the request carries the owner's full session (the LAN check is the
/// `/setup` routes' layer); returns the owner's DID.
pub(super) async fn owner(ctx: &Ctx, headers: &HeaderMap) -> Result<String, Response> {
    let session = crate::auth::credentials::access(&ctx.tokens, headers)
        .map_err(IntoResponse::into_response)?;
    if session.scope != Scope::Access {
        return Err(XrpcError::forbidden(
            "log in with the account's password, not an app password",
        )
        .into_response());
    }
    let first = ctx
        .storage
        .read(|conn| Ok::<_, XrpcError>(accounts::list(conn)?.into_iter().next()))
        .await
        .map_err(IntoResponse::into_response)?;
    match first {
        Some(a) if a.did == session.did => Ok(a.did),
        _ => Err(
            XrpcError::forbidden("only the box's owner (its first account) can do this")
                .into_response(),
        ),
    }
}

fn answer(result: XrpcResult<Value>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /setup/owner/invite`: a new single-use invite code.
pub(crate) async fn invite(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let did = match owner(&ctx, &headers).await {
        Ok(did) => did,
        Err(refused) => return refused,
    };
    let codes = crate::pds::accounts::create_invites(&ctx, 1, 1, &did).await;
    answer(codes.map(|c| json!({ "code": c.first() })))
}

/// `POST /setup/owner/crawl`: asks every configured relay to crawl this box now.
pub(crate) async fn crawl(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    let mut relays = Vec::new();
    for relay in &ctx.config.relays {
        let outcome = crate::sync::relays::request_crawl(&ctx, relay).await;
        relays.push(json!({ "relay": relay, "ok": outcome.is_ok(), "error": outcome.err() }));
    }
    Json(json!({ "relays": relays })).into_response()
}

/// `GET /setup/owner/accounts`: the accounts hosted here.
pub(crate) async fn list_accounts(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    let listed = ctx
        .storage
        .read(|conn| Ok::<_, XrpcError>(accounts::list(conn)?))
        .await;
    answer(listed.map(|list| {
        let rows: Vec<Value> = list
            .iter()
            .map(|a| json!({ "handle": a.handle, "did": a.did, "status": a.status.as_str() }))
            .collect();
        json!({ "accounts": rows })
    }))
}

/// `GET /setup/owner/codes`: one-time codes shown on the box (no SMTP), for the owner
/// to pass on: whose, what for, the code, and until when.
pub(crate) async fn codes(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    let rows: Vec<Value> = crate::pds::delivery::on_show(&ctx)
        .await
        .into_iter()
        .map(|c| json!({ "handle": c.handle, "did": c.did, "for": c.what, "code": c.code, "until": c.until }))
        .collect();
    Json(json!({ "codes": rows, "emailed": ctx.mailer.is_some() })).into_response()
}

/// `GET /setup/owner/backup-key`: the backups' recovery phrase, until the owner said
/// they wrote it down (then only `atbox backup key` on the box shows it).
pub(crate) async fn backup_key(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    let dir = &ctx.config.data_dir;
    if crate::backup::status::phrase_acknowledged(dir) {
        return XrpcError::forbidden(
            "the recovery phrase was shown once and written down; `atbox backup key` on the box shows it again",
        )
        .into_response();
    }
    match crate::backup::BackupKey::load_or_create(dir) {
        Ok(key) => Json(json!({ "words": key.phrase() })).into_response(),
        Err(e) => XrpcError::internal(format!("cannot read the backup key: {e}")).into_response(),
    }
}

/// `POST /setup/owner/backup-key`: the owner wrote the phrase down; the page stops
/// showing it.
pub(crate) async fn backup_key_written(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    match crate::backup::status::acknowledge_phrase(&ctx.config.data_dir) {
        Ok(()) => Json(json!({ "written": true })).into_response(),
        Err(e) => XrpcError::internal(format!("cannot save that: {e}")).into_response(),
    }
}
