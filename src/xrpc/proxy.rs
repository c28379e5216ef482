//! Proxying to AppViews and other services (`specs/xrpc#service-proxying`).
//!
//! `app.bsky.*`, `chat.bsky.*` and `com.atproto.moderation.createReport` (and any method
//! named with an `atproto-proxy: <did>#<service>` header) are forwarded to the service
//! the header names — its endpoint read from its DID document — or to the configured
//! default AppView. An authenticated caller's request carries a short-lived service-auth
//! JWT signed with the account's repo key (`iss` the account, `aud` the service DID,
//! `lxm` the method). Calls go through the outbound client (`identity::outbound`): only
//! public addresses, no redirects, unless `proxy_allow_private` is set — so neither a
//! crafted DID document nor a redirect can aim the box at the owner's LAN.

use crate::error::{XrpcError, XrpcResult};
use crate::pds::{signing_key, unix_now, AppState};
use crate::syntax::Did;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;
use serde_json::json;

/// Largest request body forwarded (streamed, never buffered).
const MAX_PROXY_BODY: usize = 10 * 1024 * 1024;
/// Methods of proxied namespaces that the PDS answers itself.
const SERVED_LOCALLY: &[&str] = &[
    "app.bsky.actor.getPreferences",
    "app.bsky.actor.putPreferences",
];
/// Request headers passed on (and every `x-atproto-*` one).
const REQUEST_HEADERS: &[&str] = &[
    "accept-language",
    "atproto-accept-labelers",
    "content-type",
    "if-none-match",
    // Deprecated, still sent by the app (feed topics).
    "x-bsky-topics",
];
const RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "content-language",
    "atproto-content-labelers",
    "atproto-repo-rev",
    "etag",
    "cache-control",
    "retry-after",
];

/// Whether a call goes to another service rather than being answered here.
pub fn should_proxy(nsid: &str, headers: &axum::http::HeaderMap) -> bool {
    if SERVED_LOCALLY.contains(&nsid) {
        return false;
    }
    nsid.starts_with("app.bsky.")
        || nsid.starts_with("chat.bsky.")
        || nsid == "com.atproto.moderation.createReport"
        || (headers.contains_key("atproto-proxy") && !nsid.starts_with("com.atproto."))
}

/// Where to send a call: the service's DID and its endpoint URL.
async fn target(state: &AppState, headers: &axum::http::HeaderMap) -> XrpcResult<(String, String)> {
    if let Some(value) = headers.get("atproto-proxy") {
        let value = value
            .to_str()
            .map_err(|_| XrpcError::invalid_request("atproto-proxy is not text"))?;
        let (did, fragment) = value.split_once('#').ok_or_else(|| {
            XrpcError::invalid_request("atproto-proxy must be <did>#<service id>")
        })?;
        let parsed =
            Did::new(did).map_err(|e| XrpcError::invalid_request(format!("atproto-proxy: {e}")))?;
        let doc = state.resolver.resolve_did(&parsed).await.map_err(|e| {
            XrpcError::invalid_request(format!("could not resolve the proxy target: {e}"))
        })?;
        let endpoint = doc
            .service_endpoint(&format!("#{fragment}"))
            .ok_or_else(|| {
                XrpcError::invalid_request(format!("{did} has no service #{fragment}"))
            })?;
        return Ok((did.to_owned(), endpoint));
    }
    match (&state.config.appview_did, &state.config.appview_url) {
        (Some(did), Some(url)) => Ok((did.clone(), url.trim_end_matches('/').to_owned())),
        _ => Err(XrpcError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            "no AppView is configured: set appview_url and appview_did (ATBOX_APPVIEW_URL, ATBOX_APPVIEW_DID)",
        )),
    }
}

/// Refuses endpoints that are not https (unless the owner allows private ones for
/// development) or that name a non-public address; names are checked as the outbound
/// client resolves them, so the address connected to is the one checked.
fn check_endpoint(state: &AppState, endpoint: &str) -> XrpcResult<()> {
    let url = state
        .outbound
        .check_url(endpoint)
        .map_err(|e| XrpcError::upstream(format!("service endpoint: {e}")))?;
    if url.scheme() != "https" && !state.config.proxy_allow_private {
        return Err(XrpcError::upstream("service endpoints must use https"));
    }
    Ok(())
}

/// Forwards the call and relays the answer.
pub async fn forward(state: &AppState, nsid: &str, req: Request<Body>) -> XrpcResult<Response> {
    if crate::auth::methods::is_protected(nsid) {
        return Err(XrpcError::named("InvalidToken", "Bad token method"));
    }
    let session = crate::auth::credentials::optional_access(&state.tokens, req.headers())?;
    let (service_did, endpoint) = target(state, req.headers()).await?;
    check_endpoint(state, &endpoint)?;
    let mut url = format!("{endpoint}/xrpc/{nsid}");
    if let Some(q) = req.uri().query() {
        url.push('?');
        url.push_str(q);
    }
    let mut out = state.outbound.client().request(req.method().clone(), &url);
    for (name, value) in req.headers() {
        if REQUEST_HEADERS.contains(&name.as_str()) || name.as_str().starts_with("x-atproto-") {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    if let Some(session) = &session {
        if !crate::auth::methods::scope_may_reach(session.scope, nsid) {
            return Err(XrpcError::named(
                "InvalidToken",
                "Bad token method: this needs the account password or a privileged app password",
            ));
        }
        let account = state.repo_account(&session.did).await?;
        let key = signing_key(&account)?;
        let now = unix_now();
        let claims = json!({
            "iss": account.did,
            "aud": service_did,
            "lxm": nsid,
            "iat": now,
            "exp": now + 60,
            "jti": format!("{:032x}", rand::random::<u128>()),
        });
        out = out.bearer_auth(crate::auth::service_jwt::sign(&key, &claims));
    }
    if req.method() == axum::http::Method::POST {
        out = out.body(reqwest::Body::wrap_stream(capped(
            req.into_body(),
            MAX_PROXY_BODY,
        )));
    }
    let upstream = out
        .send()
        .await
        .map_err(|e| XrpcError::upstream(format!("{service_did} did not answer: {e}")))?;
    let mut res = Response::builder().status(upstream.status().as_u16());
    for name in RESPONSE_HEADERS {
        if let Some(v) = upstream.headers().get(*name) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                res = res.header(n, v);
            }
        }
    }
    if !upstream.headers().contains_key(header::CONTENT_TYPE) {
        res = res.header(header::CONTENT_TYPE, "application/json");
    }
    res.body(Body::from_stream(upstream.bytes_stream()))
        .map_err(|e| XrpcError::internal(e.to_string()))
}

/// A request body streamed on as it arrives (never held whole), cut off with an error
/// past `limit` bytes.
fn capped(
    body: Body,
    limit: usize,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use futures_util::StreamExt;
    let mut seen = 0usize;
    body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > limit {
            return Err(std::io::Error::other(format!(
                "request body is larger than {limit} bytes"
            )));
        }
        Ok(chunk)
    })
}
