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
use crate::pds::sessions::sign_service_token;
use crate::pds::AppState;
use crate::storage::unix_now;
use crate::syntax::Did;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;

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
pub(crate) fn should_proxy(nsid: &str, headers: &axum::http::HeaderMap) -> bool {
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

/// Methods whose body names the service they are for (`serviceDid`).
const PUSH_METHODS: &[&str] = &[
    "app.bsky.notification.registerPush",
    "app.bsky.notification.unregisterPush",
];

/// Where a push registration goes: to the AppView when its `serviceDid` is the
/// AppView's, else to that DID's `#bsky_notif` service (`None`: the usual target).
async fn push_target(state: &AppState, body: &[u8]) -> XrpcResult<Option<(String, String)>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Push {
        service_did: String,
    }
    let push: Push = serde_json::from_slice(body)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))?;
    if state.config.appview_did.as_deref() == Some(push.service_did.as_str()) {
        return Ok(None);
    }
    let did = Did::new(push.service_did.as_str())
        .map_err(|e| XrpcError::invalid_request(format!("serviceDid: {e}")))?;
    let doc = state.resolver.resolve_did(&did).await.map_err(|e| {
        XrpcError::invalid_request(format!("could not resolve the push service: {e}"))
    })?;
    let endpoint = doc
        .service_endpoint("#bsky_notif")
        .ok_or_else(|| XrpcError::invalid_request(format!("{did} has no #bsky_notif service")))?;
    Ok(Some((push.service_did, endpoint)))
}

/// The service token's `aud` and `lxm`: the service called and the method, except for
/// getFeed, whose token the AppView hands on to the feed generator: `aud` the
/// generator's DID (from its record, read through the AppView) and `lxm`
/// getFeedSkeleton, as the reference signs it. A generator that cannot be read keeps
/// the usual token (the AppView then answers for itself).
async fn token_audience(
    state: &AppState,
    nsid: &str,
    query: Option<&str>,
    service_did: &str,
    endpoint: &str,
) -> (String, String) {
    if nsid == "app.bsky.feed.getFeed" {
        let feed = crate::http::Params::parse(query)
            .get("feed")
            .map(str::to_owned);
        if let Some(generator) = feed_generator_did(state, endpoint, feed.as_deref()).await {
            return (generator, "app.bsky.feed.getFeedSkeleton".to_owned());
        }
    }
    (service_did.to_owned(), nsid.to_owned())
}

/// The DID of the feed generator a feed's record names (`app.bsky.feed.generator`'s
/// `did`), read with com.atproto.repo.getRecord from the AppView.
async fn feed_generator_did(
    state: &AppState,
    endpoint: &str,
    feed: Option<&str>,
) -> Option<String> {
    let uri = crate::syntax::AtUri::new(feed?).ok()?;
    let url = format!(
        "{endpoint}/xrpc/com.atproto.repo.getRecord?repo={}&collection={}&rkey={}",
        uri.authority,
        uri.collection?.as_str(),
        uri.rkey?.as_str()
    );
    let body = state
        .outbound
        .get_capped(&url, 64 * 1024, std::time::Duration::from_secs(5))
        .await
        .ok()?;
    let record: serde_json::Value = serde_json::from_slice(&body).ok()?;
    let did = record["value"]["did"].as_str()?;
    Did::new(did).ok().map(|d| d.to_string())
}

/// The caller of a proxied method: a session token, an OAuth token whose scope
/// covers this method on the service asked for (`rpc:<nsid>?aud=<did#service>`), or
/// nobody.
fn proxy_session(
    state: &AppState,
    nsid: &str,
    req: &Request<Body>,
) -> XrpcResult<Option<crate::auth::Session>> {
    let headers = req.headers();
    if crate::auth::credentials::dpop_token(headers).is_none() {
        crate::auth::credentials::refuse_bound_bearer(headers)?;
        return crate::auth::credentials::optional_access(&state.tokens, headers);
    }
    let r = super::call::Request {
        nsid,
        method: req.method().as_str(),
        path: req.uri().path(),
        headers,
        client_ip: "",
    };
    let session = super::call::oauth_session(state, &r)?;
    let aud = match headers.get("atproto-proxy").and_then(|v| v.to_str().ok()) {
        Some(p) => p.to_owned(),
        None => super::call::appview_service(state),
    };
    session.require(
        |p| p.allows_rpc(nsid, &aud),
        || format!("rpc:{nsid}?aud={aud}"),
    )?;
    Ok(Some(session))
}

/// Forwards the call and relays the answer.
pub(crate) async fn forward(
    state: &AppState,
    nsid: &str,
    mut req: Request<Body>,
) -> XrpcResult<Response> {
    if crate::auth::methods::is_protected(nsid) {
        return Err(XrpcError::named("InvalidToken", "Bad token method"));
    }
    let session = proxy_session(state, nsid, &req)?;
    let (mut service_did, mut endpoint) = target(state, req.headers()).await?;
    // Push registration names its own service (its DID in the body).
    let mut push_body = None;
    if PUSH_METHODS.contains(&nsid) && req.method() == axum::http::Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = super::handlers::read_limited(body, 64 * 1024).await?;
        if let Some((did, url)) = push_target(state, &bytes).await? {
            (service_did, endpoint) = (did, url);
        }
        push_body = Some(bytes);
        req = Request::from_parts(parts, Body::empty());
    }
    check_endpoint(state, &endpoint)?;
    let query = req.uri().query().map(str::to_owned);
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
        let (aud, lxm) =
            token_audience(state, nsid, req.uri().query(), &service_did, &endpoint).await;
        let token =
            sign_service_token(state, &session.did, &aud, Some(&lxm), unix_now() + 60).await?;
        out = out.bearer_auth(token);
    }
    if let Some(bytes) = push_body {
        out = out.body(bytes);
    } else if req.method() == axum::http::Method::POST {
        out = out.body(reqwest::Body::wrap_stream(capped(
            req.into_body(),
            MAX_PROXY_BODY,
        )));
    }
    let upstream = out
        .send()
        .await
        .map_err(|e| XrpcError::upstream(format!("{service_did} did not answer: {e}")))?;
    if let Some(session) = &session {
        if super::read_after_write::applies(nsid, upstream.headers()) {
            let (answer, mended) = super::read_after_write::respond(
                state,
                nsid,
                &session.did,
                query.as_deref(),
                upstream,
            )
            .await?;
            if let Some(mended) = mended {
                return Ok(mended);
            }
            return relayed(
                answer.status.as_u16(),
                &answer.headers,
                Body::from(answer.body),
            );
        }
    }
    let status = upstream.status().as_u16();
    let headers = upstream.headers().clone();
    relayed(status, &headers, Body::from_stream(upstream.bytes_stream()))
}

/// The service's answer passed on: its status, the headers worth keeping, its body.
fn relayed(status: u16, headers: &axum::http::HeaderMap, body: Body) -> XrpcResult<Response> {
    let mut res = Response::builder().status(status);
    for name in RESPONSE_HEADERS {
        if let Some(v) = headers.get(*name) {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(v.as_bytes()),
            ) {
                res = res.header(n, v);
            }
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        res = res.header(header::CONTENT_TYPE, "application/json");
    }
    res.body(body)
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
