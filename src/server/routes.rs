//! All of atbox's HTTP routes in one place: the XRPC API and the firehose (any origin
//! may call them), and the box's own pages (same-origin only; the setup page LAN-only).
//! The plain and the HTTPS listeners serve this same router (`crate::tls`).

use crate::pds::Ctx;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;

/// All of atbox's HTTP routes.
pub fn router(ctx: Ctx) -> Router {
    // What web clients (bsky.app in a browser) call from other origins: XRPC and the
    // well-known identity documents.
    let public = Router::new()
        .route(
            "/xrpc/com.atproto.sync.subscribeRepos",
            get(crate::sync::firehose::subscribe_repos),
        )
        .merge(crate::xrpc::routes())
        .merge(crate::oauth::api_routes())
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
        .route("/setup/owner/codes", get(crate::setup::owner_codes))
        .route(
            "/setup/owner/backup-key",
            get(crate::setup::owner_backup_key).post(crate::setup::owner_backup_key_written),
        )
        .route(
            "/setup/owner/services",
            get(crate::setup::owner_services).post(crate::setup::owner_choose_services),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            crate::setup::require_lan,
        ));
    let local = Router::new()
        .route("/_atbox/status", get(live_status))
        .route("/", get(crate::setup::front_page))
        .merge(crate::oauth::page_routes())
        .merge(setup);
    public
        .merge(local)
        .fallback(|| async { crate::error::XrpcError::not_found("no such page") })
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

/// The running server's counters, for `atbox status` on the same machine only.
async fn live_status(State(ctx): State<Ctx>, req: Request<Body>) -> Response {
    let local = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(a)| a.ip().is_loopback());
    if !local {
        return crate::error::XrpcError::forbidden("only available on the box itself")
            .into_response();
    }
    let stats = &ctx.storage.writer.stats;
    use std::sync::atomic::Ordering::Relaxed;
    axum::Json(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "startedAt": ctx.started_at,
        "writeBytes": crate::device::sysinfo::write_bytes().saturating_sub(ctx.write_bytes_at_start),
        "writes": stats.jobs.load(Relaxed),
        "commits": stats.commits.load(Relaxed),
        "checkpoints": stats.checkpoints.load(Relaxed),
        "fsyncs": stats.fsyncs(),
        "mdnsName": ctx.snapshots.borrow().mdns_name.clone(),
    }))
    .into_response()
}
