//! The HTTP face of the PDS: XRPC routing (`/xrpc/<nsid>`), well-known endpoints and the
//! front page. Handlers are thin: they read parameters and bodies, check auth, call
//! `crate::pds`, and shape the response.

pub mod auth;
pub mod error;
mod handlers;
mod params;
pub mod proxy;

pub use params::Params;

use crate::pds::Ctx;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use error::{XrpcError, XrpcResult};
use std::net::SocketAddr;

/// Largest JSON body a procedure accepts (records are at most 1 MiB of CBOR).
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// All of atbox's HTTP routes.
pub fn router(ctx: Ctx) -> Router {
    // What web clients (bsky.app in a browser) call from other origins: XRPC and the
    // well-known identity documents.
    let public = Router::new()
        .route(
            "/xrpc/com.atproto.sync.subscribeRepos",
            get(crate::sync::firehose::subscribe_repos),
        )
        .route("/xrpc/{nsid}", any(xrpc))
        .route("/xrpc/_health", get(health))
        .route("/.well-known/atproto-did", get(well_known_did))
        .route("/.well-known/did.json", get(well_known_did_json))
        .layer(cors());
    // The box's own pages: same-origin only (no CORS), so no other site's page can
    // drive them from a visitor's browser.
    let setup = Router::new()
        .route("/setup/status", get(crate::setup::status))
        .route("/setup/doctor", get(crate::setup::doctor))
        .route("/setup/claim", axum::routing::post(crate::setup::claim))
        .route(
            "/setup/owner/invite",
            axum::routing::post(crate::setup::owner_invite),
        )
        .route(
            "/setup/owner/crawl",
            axum::routing::post(crate::setup::owner_crawl),
        )
        .route("/setup/owner/accounts", get(crate::setup::owner_accounts))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            crate::setup::require_lan,
        ));
    let local = Router::new()
        .route("/_atbox/status", get(live_status))
        .route("/", get(crate::setup::front_page))
        .merge(setup);
    public
        .merge(local)
        .fallback(|| async { XrpcError::not_found("no such page") })
        .with_state(ctx)
}

/// Any origin may call the API, as with the reference PDS: sessions are bearer tokens,
/// never cookies, so a permissive policy grants a foreign page nothing it lacks.
/// Requested headers are mirrored because a `*` would not cover `Authorization`.
fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowHeaders, Any, CorsLayer};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD, Method::POST])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(Any)
        .max_age(std::time::Duration::from_secs(24 * 3600))
}

async fn health() -> Response {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// The running server's counters, for `atbox status` on the same machine only.
async fn live_status(State(ctx): State<Ctx>, req: Request<Body>) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().is_loopback());
    if !local {
        return XrpcError::forbidden("only available on the box itself").into_response();
    }
    let stats = &ctx.storage.writer.stats;
    use std::sync::atomic::Ordering::Relaxed;
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "startedAt": ctx.started_at,
        "writeBytes": crate::bench::write_bytes().saturating_sub(ctx.write_bytes_at_start),
        "writes": stats.jobs.load(Relaxed),
        "commits": stats.commits.load(Relaxed),
        "checkpoints": stats.checkpoints.load(Relaxed),
        "fsyncs": stats.fsyncs(),
        "mdnsName": ctx.snapshots.borrow().mdns_name.clone(),
    }))
    .into_response()
}

/// `/.well-known/atproto-did` on a handle's host: the DID of the account with that handle.
async fn well_known_did(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let host = request_host(&headers);
    match ctx.find_account(&host).await {
        Ok(Some(account)) => ([(header::CONTENT_TYPE, "text/plain")], account.did).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no account here has this handle").into_response(),
        Err(e) => e.into_response(),
    }
}

/// `/.well-known/did.json`: on the host of a did:web account we serve, that account's
/// document; otherwise the server's own `did:web` document.
async fn well_known_did_json(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    let did = format!("did:web:{}", request_host(&headers));
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

/// The host a request was sent to (its `Host` header), lowercase, without a port (but
/// a bracketed IPv6 literal keeps its colons).
pub fn request_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    host.to_ascii_lowercase()
}

/// The client's address: the peer's, unless the peer is a trusted reverse proxy, in
/// which case the last `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer),
    )
}

/// Dispatches `/xrpc/<nsid>` by HTTP method and NSID.
async fn xrpc(State(ctx): State<Ctx>, Path(nsid): Path<String>, req: Request<Body>) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let client_ip = client_ip(peer, req.headers(), &ctx.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let result = match *req.method() {
        Method::GET | Method::HEAD => check_kind(&ctx, &nsid, "query"),
        Method::POST => check_kind(&ctx, &nsid, "procedure"),
        _ => Err(XrpcError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "InvalidRequest",
            "XRPC uses GET for queries and POST for procedures",
        )),
    };
    if let Err(e) = result {
        return e.into_response();
    }
    if proxy::should_proxy(&nsid, req.headers()) {
        return proxy::forward(&ctx, &nsid, req)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let outcome: XrpcResult<Response> = if req.method() == Method::POST {
        handlers::procedure(&ctx, &nsid, &client_ip, req).await
    } else {
        handlers::query(&ctx, &nsid, req).await
    };
    outcome.unwrap_or_else(IntoResponse::into_response)
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

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy = "10.0.0.1:5000".parse().ok();
        let trusted = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        // From a trusted proxy: the last hop that is not one of ours.
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        // From anyone else, the header is ignored (it is trivially forged).
        let stranger = "198.51.100.7:4000".parse().ok();
        assert_eq!(
            client_ip(stranger, &headers, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        // No proxies configured: never believed.
        assert_eq!(
            client_ip(proxy, &headers, &[]),
            Some("10.0.0.1".parse().unwrap())
        );
        // A trusted proxy without the header is the client.
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &trusted),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
