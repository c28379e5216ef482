//! The HTTP face of the PDS: XRPC dispatch (`/xrpc/<nsid>`) and the well-known
//! identity endpoints. [`methods`] declares every served method with who may call it;
//! [`call`] runs those checks; handlers are thin: they read parameters and bodies, call
//! `crate::pds`, and shape the response. [`proxy`] forwards what other services answer;
//! `read_after_write` mends a lagging AppView's answers with the account's new records.

pub(crate) mod call;
mod handlers;
pub(crate) mod methods;
pub(crate) mod proxy;
mod read_after_write;

use crate::error::{XrpcError, XrpcResult};
use crate::pds::Ctx;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use call::{Call, Input};
use methods::Kind;
use std::net::SocketAddr;

/// Largest JSON body a procedure accepts (records are at most 1 MiB of CBOR).
pub(crate) const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// The XRPC API and the well-known identity documents: what any client, relay or
/// AppView calls, from any origin (the server adds CORS, the firehose and the box's own
/// pages around these).
pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/xrpc/{nsid}", any(xrpc))
        .route("/xrpc/_health", get(health))
        .route("/.well-known/atproto-did", get(well_known_did))
        .route("/.well-known/did.json", get(well_known_did_json))
}

async fn health() -> Response {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// `/.well-known/atproto-did` on a handle's host: the DID of the account with that handle.
async fn well_known_did(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let host = crate::http::request_host(&headers);
    match ctx.find_account(&host).await {
        Ok(Some(account)) => ([(header::CONTENT_TYPE, "text/plain")], account.did).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no account here has this handle").into_response(),
        Err(e) => e.into_response(),
    }
}

/// `/.well-known/did.json`: on the host of a did:web account we serve, that account's
/// document; otherwise the server's own `did:web` document.
async fn well_known_did_json(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let did = format!("did:web:{}", crate::http::request_host(&headers));
    if crate::pds::sync::hosts_did_web(&ctx.config, &did) {
        return match ctx.find_account(&did).await {
            Ok(Some(account)) => {
                axum::Json(crate::pds::sync::did_document(&ctx, &account).await.0).into_response()
            }
            Ok(None) => (StatusCode::NOT_FOUND, "no account here has this DID").into_response(),
            Err(e) => e.into_response(),
        };
    }
    axum::Json(serde_json::json!({
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": ctx.config.service_did(),
        "service": [{
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": ctx.config.public_url,
        }]
    }))
    .into_response()
}

/// Dispatches `/xrpc/<nsid>` by HTTP method and NSID.
async fn xrpc(State(ctx): State<Ctx>, Path(nsid): Path<String>, req: Request<Body>) -> Response {
    dispatch(ctx, &nsid, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The verb checked against the lexicon; proxied methods forwarded; served ones looked
/// up in the method table, their declared auth and account-state checks run, then
/// their body read (only for callers that passed) and their handler called.
async fn dispatch(ctx: Ctx, nsid: &str, req: Request<Body>) -> XrpcResult<Response> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let client_ip = crate::http::client_ip(peer, req.headers(), &ctx.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    ctx.check_limit(&ctx.limits.global, &client_ip)?;
    match *req.method() {
        Method::GET | Method::HEAD => check_kind(&ctx, nsid, "query")?,
        Method::POST => check_kind(&ctx, nsid, "procedure")?,
        _ => {
            return Err(XrpcError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "InvalidRequest",
                "XRPC uses GET for queries and POST for procedures",
            ))
        }
    }
    if proxy::should_proxy(nsid, req.headers()) {
        return proxy::forward(&ctx, nsid, req).await;
    }
    // A method atbox does not serve goes to the default AppView, as the reference's
    // catch-all does (new app.bsky/chat methods work the day the AppView has them).
    let Some(method) = methods::find(nsid) else {
        if ctx.config.appview_url.is_some() {
            return proxy::forward(&ctx, nsid, req).await;
        }
        return Err(XrpcError::not_implemented(nsid));
    };
    if let Some(limit) = method.limit {
        ctx.check_limit(ctx.limits.for_method(limit), &client_ip)?;
    }
    let request = call::Request {
        nsid,
        method: req.method().as_str(),
        path: req.uri().path(),
        headers: req.headers(),
        client_ip: &client_ip,
    };
    let caller = call::verify(&ctx, method.auth, method.oauth, &request).await?;
    call::check_status(&ctx, method.status, &caller).await?;
    // Apps keep their DPoP nonce fresh from any answer (RFC 9449 §8.2).
    let nonce = matches!(&caller, call::Caller::User(s) if s.oauth.is_some())
        .then(|| ctx.oauth.dpop.nonce(crate::storage::unix_now()));
    let (parts, body) = req.into_parts();
    let input = match method.kind {
        Kind::Query => Input::None,
        Kind::Procedure => Input::Json(handlers::read_limited(body, MAX_JSON_BODY).await?),
        Kind::Stream => Input::Stream(body),
    };
    let call = Call {
        ctx,
        caller,
        params: crate::http::Params::parse(parts.uri.query()),
        headers: parts.headers,
        input,
        client_ip,
    };
    let mut res = (method.handler)(call).await?;
    if let Some(v) = nonce.and_then(|n| axum::http::HeaderValue::from_str(&n).ok()) {
        res.headers_mut().insert("dpop-nonce", v);
    }
    Ok(res)
}

/// Refuses a method called with the wrong HTTP verb; unknown NSIDs pass (the handler
/// tables answer MethodNotImplemented).
fn check_kind(ctx: &Ctx, nsid: &str, wanted: &str) -> XrpcResult<()> {
    match ctx.lexicons.main_type(nsid) {
        Some(kind) if kind != wanted && (kind == "query" || kind == "procedure") => {
            Err(XrpcError::invalid_request(format!(
                "{nsid} is a {kind}: use {}",
                if kind == "query" { "GET" } else { "POST" }
            )))
        }
        _ => Ok(()),
    }
}
