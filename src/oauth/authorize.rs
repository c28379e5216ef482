//! From an app's pushed request to the code it gets back: PAR (the app sends every
//! parameter to `/oauth/par` with a DPoP proof and gets a `request_uri`), then the
//! browser opens `/oauth/authorize?client_id=…&request_uri=…`, where the person signs in
//! (or picks an account this browser remembers) and allows or denies the app. The
//! answer goes back to the app's redirect URI with `code`, `state` and `iss` (or
//! `error`), in the query or the fragment as the app asked.

use super::client::{self, Client};
use super::pages::{self, esc, Device, Page};
use super::{check_dpop, form, issuer, no_store, OAuthError, OAuthResult};
use crate::auth::oauth::{AuthRequest, REQUEST_TTL_SECS};
use crate::pds::Ctx;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// `POST /oauth/par`.
pub(crate) async fn par(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    match push(&ctx, &headers, &body).await {
        Ok(res) => res,
        Err(e) => e.into_response(),
    }
}

async fn push(ctx: &Ctx, headers: &HeaderMap, body: &[u8]) -> OAuthResult<Response> {
    let proof = check_dpop(ctx, headers, "/oauth/par")?;
    let f = form(body);
    if f.contains_key("request") {
        return Err(OAuthError::new(
            "request_not_supported",
            "send the parameters themselves, not a request object",
        ));
    }
    let client_id = f
        .get("client_id")
        .ok_or_else(|| OAuthError::invalid_request("client_id is required"))?;
    let client = client::resolve(ctx, client_id).await?;
    let client_auth = client::authenticate(ctx, &client, &f)?;
    if f.get("response_type").map(String::as_str) != Some("code") {
        return Err(OAuthError::new(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    let challenge = f
        .get("code_challenge")
        .ok_or_else(|| OAuthError::invalid_request("code_challenge is required (PKCE)"))?;
    if f.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    if !(43..=128).contains(&challenge.len())
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(OAuthError::invalid_request(
            "code_challenge is not a S256 challenge",
        ));
    }
    let redirect_uri = client.redirect_uri(f.get("redirect_uri").map(String::as_str))?;
    let asked = f.get("scope").map(String::as_str).unwrap_or(&client.scope);
    super::permission_sets::fetch_included(ctx, asked).await;
    let scope = check_scope(ctx, &client, f.get("scope").map(String::as_str))?;
    let response_mode = match f.get("response_mode").map(String::as_str) {
        None | Some("query") => "query",
        Some("fragment") => "fragment",
        Some(other) => {
            return Err(OAuthError::invalid_request(format!(
                "response_mode {other} is not supported"
            )))
        }
    };
    let prompt = f.get("prompt").cloned();
    if let Some(p) = &prompt {
        if !matches!(p.as_str(), "none" | "login" | "consent" | "select_account") {
            return Err(OAuthError::invalid_request(format!(
                "prompt {p} is not supported"
            )));
        }
    }
    let state = f.get("state").cloned();
    let login_hint = f.get("login_hint").cloned();
    if state.as_ref().is_some_and(|s| s.len() > 2048)
        || login_hint.as_ref().is_some_and(|h| h.len() > 256)
    {
        return Err(OAuthError::invalid_request(
            "state or login_hint is too long",
        ));
    }
    let now = crate::storage::unix_now();
    let request = AuthRequest {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        client_auth,
        redirect_uri,
        scope,
        state,
        code_challenge: challenge.clone(),
        login_hint,
        response_mode: response_mode.to_owned(),
        dpop_jkt: proof.jkt,
        expires_at: now + REQUEST_TTL_SECS,
        did: None,
        prompt,
    };
    let id = ctx.oauth.push_request(request, now).ok_or_else(|| {
        OAuthError::new("temporarily_unavailable", "too many sign-ins in progress")
    })?;
    let body = serde_json::json!({
        "request_uri": format!("{REQUEST_URI_PREFIX}{id}"),
        "expires_in": REQUEST_TTL_SECS,
    });
    let mut res = (StatusCode::CREATED, axum::Json(body)).into_response();
    no_store(res.headers_mut());
    if let Ok(n) = HeaderValue::from_str(&ctx.oauth.dpop.nonce(now)) {
        res.headers_mut().insert("dpop-nonce", n);
    }
    Ok(res)
}

/// The requested scope (default: the client's), which must be well formed and within
/// what the client's metadata declares.
fn check_scope(ctx: &Ctx, client: &Client, asked: Option<&str>) -> OAuthResult<String> {
    let asked = asked
        .filter(|s| !s.trim().is_empty())
        .unwrap_or(&client.scope);
    let declared: Vec<&str> = client.scope.split(' ').collect();
    if let Some(extra) = asked
        .split(' ')
        .find(|s| !s.is_empty() && !declared.contains(s))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("scope {extra} is not in the client's metadata"),
        ));
    }
    let perms = ctx
        .scope_permissions(asked)
        .map_err(|e| OAuthError::new("invalid_scope", e))?;
    Ok(perms.scope.clone())
}

/// Where the answer goes: the redirect URI with the parameters in its query or
/// fragment, `iss` always (RFC 9207).
fn redirect_to(ctx: &Ctx, req: &AuthRequest, params: &[(&str, &str)]) -> Response {
    let mut pairs = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        pairs.append_pair(k, v);
    }
    if let Some(s) = &req.state {
        pairs.append_pair("state", s);
    }
    pairs.append_pair("iss", issuer(ctx));
    let encoded = pairs.finish();
    let target = if req.response_mode == "fragment" {
        format!("{}#{encoded}", req.redirect_uri)
    } else if req.redirect_uri.contains('?') {
        format!("{}&{encoded}", req.redirect_uri)
    } else {
        format!("{}?{encoded}", req.redirect_uri)
    };
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn request_id(uri: Option<&String>) -> Option<&str> {
    uri?.strip_prefix(REQUEST_URI_PREFIX)
}

/// `GET /oauth/authorize?client_id=…&request_uri=…`: the sign-in page.
pub(crate) async fn page(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = crate::storage::unix_now();
    let Some(id) = request_id(q.get("request_uri")) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link is not complete (apps must push their request first).",
        );
    };
    let Some(req) = ctx.oauth.request(id, now) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link has expired or was already used.",
        );
    };
    if q.get("client_id") != Some(&req.client_id) {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in link belongs to another app.",
        );
    }
    if req.prompt.as_deref() == Some("none") {
        ctx.oauth.take_request(id, now);
        return redirect_to(
            &ctx,
            &req,
            &[
                ("error", "login_required"),
                ("error_description", "the person must sign in"),
            ],
        );
    }
    sign_in_page(&ctx, &headers, id, &req, None, StatusCode::OK).await
}

async fn sign_in_page(
    ctx: &Ctx,
    headers: &HeaderMap,
    id: &str,
    req: &AuthRequest,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (csrf, csrf_cookie) = pages::csrf(ctx, headers);
    let device = Device::read(ctx, headers);
    let mut remembered = String::new();
    if req.prompt.as_deref() != Some("login") {
        for (did, _) in &device.accounts {
            if let Ok(Some(account)) = ctx.find_account(did).await {
                remembered.push_str(&format!(
                    "<form method=\"post\" action=\"/oauth/authorize/sign-in\">\
                     <input type=\"hidden\" name=\"request_uri\" value=\"{REQUEST_URI_PREFIX}{id}\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"account\" value=\"{did}\">\
                     <button class=\"secondary\" type=\"submit\">Continue as @{handle}</button></form>",
                    did = esc(did),
                    handle = esc(&account.handle)
                ));
            }
        }
        if !remembered.is_empty() {
            remembered =
                format!("<div class=\"card\"><p>Signed in on this device:</p>{remembered}</div>");
        }
    }
    let error = error
        .map(|e| format!("<p class=\"error\" id=\"error\">{}</p>", esc(e)))
        .unwrap_or_default();
    let hint = req.login_hint.as_deref().unwrap_or("");
    let body = format!(
        "<h1>Sign in to {app}</h1>\
         <p class=\"note\"><small class=\"domain\">{domain}</small> wants to use your account on {host}.</p>\
         {remembered}\
         <div class=\"card\">{error}\
         <form method=\"post\" action=\"/oauth/authorize/sign-in\" id=\"sign-in\">\
         <input type=\"hidden\" name=\"request_uri\" value=\"{REQUEST_URI_PREFIX}{id}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"identifier\">Handle or email</label>\
         <input type=\"text\" id=\"identifier\" name=\"identifier\" value=\"{hint}\" autocomplete=\"username\" autocapitalize=\"none\" required>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <label><input type=\"checkbox\" name=\"remember\" value=\"1\" checked> Remember me on this device</label>\
         <button type=\"submit\" id=\"sign-in-button\">Sign in</button></form></div>\
         <p class=\"note\">Use your account password, not an app password. Nothing is shared until you allow it on the next page.</p>",
        app = esc(&req.client_name),
        domain = esc(&pages::client_domain(&req.client_id)),
        host = esc(&ctx.config.hostname),
        hint = esc(hint),
    );
    let mut page = Page::new("Sign in", body).status(status);
    if let Some(c) = csrf_cookie {
        page = page.cookie(c);
    }
    page.into_response()
}

/// `POST /oauth/authorize/sign-in`: password (or a remembered account), then consent.
pub(crate) async fn sign_in(State(ctx): State<Ctx>, req: axum::extract::Request) -> Response {
    let pages::Submitted {
        peer,
        headers,
        fields: f,
    } = match pages::read_form(req).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let now = crate::storage::unix_now();
    let Some(id) = request_id(f.get("request_uri")).map(str::to_owned) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in form is not complete.",
        );
    };
    let Some(req) = ctx.oauth.request(&id, now) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired. Go back to the app and start again.",
        );
    };
    if !pages::check_csrf(&headers, &f) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This form was not sent from this page (cookies blocked?).",
        );
    }
    let mut device = Device::read(&ctx, &headers);
    let did = if let Some(did) = f.get("account") {
        if !device.has(did) || req.prompt.as_deref() == Some("login") {
            return sign_in_page(
                &ctx,
                &headers,
                &id,
                &req,
                Some("Sign in with your password."),
                StatusCode::UNAUTHORIZED,
            )
            .await;
        }
        did.clone()
    } else {
        let ip = pages::client_ip(&ctx, peer, &headers);
        let identifier = f.get("identifier").map(String::as_str).unwrap_or("");
        let password = f.get("password").map(String::as_str).unwrap_or("");
        match pages::password_sign_in(&ctx, &ip, identifier, password).await {
            Ok(did) => did,
            Err((status, msg)) => {
                return sign_in_page(&ctx, &headers, &id, &req, Some(&msg), status).await;
            }
        }
    };
    let account = match ctx.find_account(&did).await {
        Ok(Some(a)) => a,
        _ => {
            return pages::error_page(
                StatusCode::BAD_REQUEST,
                "That account is not on this box any more.",
            )
        }
    };
    if account.status == crate::storage::accounts::AccountStatus::Takendown {
        return pages::error_page(StatusCode::FORBIDDEN, "This account has been taken down.");
    }
    ctx.oauth.update_request(&id, |r| r.did = Some(did.clone()));
    let device_cookie = (f.contains_key("remember") || f.contains_key("account")).then(|| {
        device.remember(&did, now);
        device.cookie(&ctx, &headers)
    });
    consent_page(&ctx, &headers, &id, &req, &account.handle, device_cookie)
}

fn consent_page(
    ctx: &Ctx,
    headers: &HeaderMap,
    id: &str,
    req: &AuthRequest,
    handle: &str,
    device_cookie: Option<String>,
) -> Response {
    let (csrf, csrf_cookie) = pages::csrf(ctx, headers);
    let perms = match ctx.scope_permissions(&req.scope) {
        Ok(p) => p,
        Err(e) => return pages::error_page(StatusCode::BAD_REQUEST, &e),
    };
    let items: String = perms
        .describe()
        .iter()
        .map(|d| format!("<li>{}</li>", esc(d)))
        .collect();
    let form = |decision: &str, label: &str, class: &str| {
        format!(
            "<form method=\"post\" action=\"/oauth/authorize/consent\">\
             <input type=\"hidden\" name=\"request_uri\" value=\"{REQUEST_URI_PREFIX}{id}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"decision\" value=\"{decision}\">\
             <button type=\"submit\" class=\"{class}\" id=\"{decision}\">{label}</button></form>"
        )
    };
    let body = format!(
        "<h1>Allow {app}?</h1>\
         <div class=\"card\"><p><strong>{app}</strong> <small class=\"domain\">({domain})</small> \
         wants to use your account <strong>@{handle}</strong>. It will be able to:</p>\
         <ul class=\"perms\">{items}</ul></div>\
         <div class=\"row\">{deny}{allow}</div>\
         <p class=\"note\">You can revoke this app at any time on your account page ({issuer}/account).</p>",
        app = esc(&req.client_name),
        domain = esc(&pages::client_domain(&req.client_id)),
        handle = esc(handle),
        deny = form("deny", "Deny", "secondary"),
        allow = form("allow", "Allow", ""),
        issuer = esc(issuer(ctx)),
    );
    let mut page = Page::new("Allow this app?", body);
    page.form_action = form_action_source(&req.redirect_uri);
    for c in [csrf_cookie, device_cookie].into_iter().flatten() {
        page = page.cookie(c);
    }
    page.into_response()
}

/// The CSP source that lets the consent form's answer redirect to the app.
fn form_action_source(redirect_uri: &str) -> Option<String> {
    let u = url::Url::parse(redirect_uri).ok()?;
    match u.scheme() {
        "http" | "https" => Some(u.origin().ascii_serialization()),
        scheme => Some(format!("{scheme}:")),
    }
}

/// `POST /oauth/authorize/consent`: allow (a code for the app) or deny.
pub(crate) async fn consent(State(ctx): State<Ctx>, headers: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let now = crate::storage::unix_now();
    let Some(id) = request_id(f.get("request_uri")) else {
        return pages::error_page(StatusCode::BAD_REQUEST, "This form is not complete.");
    };
    if !pages::check_csrf(&headers, &f) {
        return pages::error_page(
            StatusCode::FORBIDDEN,
            "This form was not sent from this page (cookies blocked?).",
        );
    }
    let Some(req) = ctx.oauth.take_request(id, now) else {
        return pages::error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in has expired. Go back to the app and start again.",
        );
    };
    let Some(did) = req.did.clone() else {
        return pages::error_page(StatusCode::BAD_REQUEST, "Sign in first.");
    };
    if f.get("decision").map(String::as_str) != Some("allow") {
        return redirect_to(
            &ctx,
            &req,
            &[
                ("error", "access_denied"),
                ("error_description", "the person denied the request"),
            ],
        );
    }
    let code = ctx.oauth.issue_code(req.clone(), &did, now);
    redirect_to(&ctx, &req, &[("code", &code)])
}
