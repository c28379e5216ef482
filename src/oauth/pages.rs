//! The HTML of the sign-in, consent and account pages, and what every such page needs:
//! escaping, a strict CSP (no script at all, styles by nonce, `frame-ancestors 'none'`),
//! the CSRF token (a random value in a cookie and in each form, compared on POST), and
//! the device cookie that remembers which accounts signed in on this browser (a signed,
//! HttpOnly, SameSite=Lax cookie: nothing stored on the box).

use crate::pds::Ctx;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub(crate) const CSRF_COOKIE: &str = "atbox-csrf";
pub(crate) const DEVICE_COOKIE: &str = "atbox-device";
/// A remembered sign-in lets the person pick the account without the password for a week.
pub(crate) const REMEMBER_SECS: i64 = 7 * 24 * 60 * 60;

const STYLE: &str = "
body{font:16px/1.45 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1d21}
main{max-width:26rem;margin:0 auto;padding:1.5rem 1rem}
h1{font-size:1.35rem;margin:.2rem 0 1rem}
.card{background:#fff;border-radius:12px;padding:1.1rem;box-shadow:0 1px 3px #0002;margin-bottom:1rem}
label{display:block;font-weight:600;margin:.7rem 0 .25rem}
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;padding:.7rem;font-size:1rem;border:1px solid #bbb;border-radius:8px}
button{font-size:1rem;padding:.75rem 1rem;border-radius:8px;border:0;background:#0a66e4;color:#fff;width:100%;margin-top:.9rem}
button.secondary{background:#e4e6eb;color:#1b1d21}
button.danger{background:#c62828}
.row{display:flex;gap:.6rem}.row form{flex:1}
.error{background:#fdecea;color:#8a1c1c;padding:.7rem;border-radius:8px}
.done{background:#e7f5ea;color:#1d5e2b;padding:.7rem;border-radius:8px}
h2{font-size:1.1rem;margin:0 0 .5rem}
ul.list{padding:0;list-style:none;margin:0}ul.list li{border-top:1px solid #eee;padding:.6rem 0}
code{font:1.05rem ui-monospace,monospace;word-break:break-all}
.note{color:#555;font-size:.9rem}
ul.perms li{margin:.35rem 0}
small.domain{color:#555}
table{width:100%;border-collapse:collapse}td{padding:.35rem 0;vertical-align:top}
";

/// Escapes text for HTML (element content and quoted attributes).
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page: `body` inside the common frame, with the CSP. `form_action` adds where a
/// form's answer may redirect (the consent page's redirect to the app).
pub(crate) struct Page {
    pub status: StatusCode,
    pub title: String,
    pub body: String,
    pub form_action: Option<String>,
    pub cookies: Vec<String>,
}

impl Page {
    pub fn new(title: &str, body: String) -> Page {
        Page {
            status: StatusCode::OK,
            title: title.to_owned(),
            body,
            form_action: None,
            cookies: Vec::new(),
        }
    }

    pub fn status(mut self, status: StatusCode) -> Page {
        self.status = status;
        self
    }

    pub fn cookie(mut self, cookie: String) -> Page {
        self.cookies.push(cookie);
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let nonce = crate::auth::oauth::random_hex(16);
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <title>{title}</title><style nonce=\"{nonce}\">{STYLE}</style></head>\
             <body><main>{body}</main></body></html>",
            title = esc(&self.title),
            body = self.body,
        );
        let form_action = match &self.form_action {
            Some(extra) => format!("'self' {extra}"),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; style-src 'nonce-{nonce}'; img-src 'self' data:; \
             form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        );
        let mut res = (self.status, axum::response::Html(html)).into_response();
        let h = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for c in self.cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        res
    }
}

/// An error page for what cannot go back to the app (an unknown or expired request).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    Page::new(
        "Cannot sign in",
        format!(
            "<h1>Cannot sign in</h1><div class=\"card\"><p class=\"error\">{}</p>\
             <p class=\"note\">Go back to the app and start signing in again.</p></div>",
            esc(message)
        ),
    )
    .status(status)
    .into_response()
}

/// A cookie's value from the request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached us over HTTPS (the public name; cookies are `Secure`
/// there; on the LAN name over plain HTTP they cannot be).
fn is_https(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let host = crate::http::request_host(headers);
    let issuer = super::issuer(ctx);
    issuer.starts_with("https://")
        && url::Url::parse(issuer).is_ok_and(|u| u.host_str() == Some(host.as_str()))
}

/// A `Set-Cookie` value with the attributes every cookie here has.
pub(crate) fn set_cookie(
    ctx: &Ctx,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: i64,
) -> String {
    let secure = if is_https(ctx, headers) {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// The CSRF token of this browser (the cookie's, or a new one with its `Set-Cookie`).
pub(crate) fn csrf(ctx: &Ctx, headers: &HeaderMap) -> (String, Option<String>) {
    match cookie(headers, CSRF_COOKIE)
        .filter(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Some(v) => (v.to_owned(), None),
        None => {
            let v = crate::auth::oauth::random_hex(16);
            let c = set_cookie(ctx, headers, CSRF_COOKIE, &v, 24 * 3600);
            (v, Some(c))
        }
    }
}

/// Checks a form's CSRF token against the cookie, and that the browser says the form
/// came from this site.
pub(crate) fn check_csrf(
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> bool {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site");
    let Some(cookie) = cookie(headers, CSRF_COOKIE) else {
        return false;
    };
    !cross_site
        && form
            .get("csrf")
            .is_some_and(|f| !f.is_empty() && f == cookie)
}

/// The accounts remembered on this browser: (DID, when they signed in).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Device {
    pub accounts: Vec<(String, i64)>,
    exp: i64,
    aud: String,
}

const DEVICE_AUD: &str = "atbox-device";

impl Device {
    pub fn read(ctx: &Ctx, headers: &HeaderMap) -> Device {
        let Some(value) = cookie(headers, DEVICE_COOKIE) else {
            return Device::default();
        };
        let mut v = Validation::new(Algorithm::HS256);
        v.set_audience(&[DEVICE_AUD]);
        v.set_required_spec_claims(&["exp", "aud"]);
        let now = crate::storage::unix_now();
        decode::<Device>(
            value,
            &DecodingKey::from_secret(&ctx.secrets.jwt_secret),
            &v,
        )
        .map(|d| d.claims)
        .map(|mut d| {
            d.accounts.retain(|(_, at)| now - at < REMEMBER_SECS);
            d
        })
        .unwrap_or_default()
    }

    /// Whether `did` signed in on this browser within the week.
    pub fn has(&self, did: &str) -> bool {
        self.accounts.iter().any(|(d, _)| d == did)
    }

    pub fn remember(&mut self, did: &str, now: i64) {
        self.accounts.retain(|(d, _)| d != did);
        self.accounts.insert(0, (did.to_owned(), now));
        self.accounts.truncate(8);
    }

    /// The `Set-Cookie` that stores this device state.
    pub fn cookie(&mut self, ctx: &Ctx, headers: &HeaderMap) -> String {
        let now = crate::storage::unix_now();
        self.exp = now + REMEMBER_SECS;
        self.aud = DEVICE_AUD.to_owned();
        let value = encode(
            &Header::new(Algorithm::HS256),
            self,
            &EncodingKey::from_secret(&ctx.secrets.jwt_secret),
        )
        .expect("HS256 signing cannot fail");
        set_cookie(ctx, headers, DEVICE_COOKIE, &value, REMEMBER_SECS)
    }
}

/// The client's address (behind trusted proxies, the first untrusted hop), for rate
/// limits.
pub(crate) fn client_ip(
    ctx: &Ctx,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
) -> String {
    crate::http::client_ip(peer, headers, &ctx.config.trusted_proxies)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// A form posted to one of the pages: who sent it, its headers, its fields.
pub(crate) struct Submitted {
    pub peer: Option<std::net::SocketAddr>,
    pub headers: HeaderMap,
    pub fields: std::collections::HashMap<String, String>,
}

/// Reads a posted form (64 KiB at most; larger gets the error page).
pub(crate) async fn read_form(req: axum::extract::Request) -> Result<Submitted, Response> {
    use axum::extract::ConnectInfo;
    let peer = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let headers = req.headers().clone();
    let Ok(body) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return Err(error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "This form is too large.",
        ));
    };
    Ok(Submitted {
        peer,
        headers,
        fields: super::form(&body),
    })
}

/// The password sign-in of the OAuth and account pages (account password only, under
/// createSession's rate limits): the account's DID, or the status and words to show.
pub(crate) async fn password_sign_in(
    ctx: &Ctx,
    ip: &str,
    identifier: &str,
    password: &str,
) -> Result<String, (StatusCode, String)> {
    use crate::auth::tokens::Scope;
    match crate::pds::sessions::authenticate(ctx, ip, identifier, password).await {
        Ok((account, Scope::Access, _)) => Ok(account.did),
        Ok(_) => Err((
            StatusCode::UNAUTHORIZED,
            "That is an app password. Sign in here with your account password.".to_owned(),
        )),
        Err(e) => Err((e.status, sign_in_words(&e))),
    }
}

/// What a person is told when a password sign-in fails.
pub(crate) fn sign_in_words(e: &crate::error::XrpcError) -> String {
    if e.status == StatusCode::TOO_MANY_REQUESTS {
        "Too many tries. Wait a few minutes and try again.".to_owned()
    } else if e.error == "AuthenticationRequired" {
        "Wrong handle or password.".to_owned()
    } else {
        e.message.clone()
    }
}

/// The domain of an app's client_id, as the pages show it.
pub(crate) fn client_domain(client_id: &str) -> String {
    url::Url::parse(client_id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}
