//! One XRPC call as a handler sees it, after the method table's declared checks: who
//! the caller is ([`Caller`], already verified against the method's [`Auth`] and
//! [`StatusCheck`]), the query parameters and the request body.
//!
//! The checks run here, in one place, before any handler: credentials first (a stranger
//! never gets a body read), then the account's status where the method declares it,
//! as the reference PDS does (`AccountTakedown` / `AccountDeactivated`, 401).

use crate::auth::scopes::AccountAttr;
use crate::auth::tokens::{Claims, Scope};
use crate::auth::Session;
use crate::auth::{credentials, service_jwt};
use crate::error::{XrpcError, XrpcResult};
use crate::http::Params;
use crate::pds::Ctx;
use crate::storage::accounts::AccountStatus;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// What the caller of a method must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Nothing; credentials, if any, are not read.
    None,
    /// Anyone; a presented session or admin password is verified (and a bad one
    /// refused), so that owners and the admin may see what strangers may not.
    Optional,
    /// A session: the account password or any app password.
    Standard,
    /// A session, or a service-auth token for this very method signed with the
    /// account's current key (the video service uploading a processed video with the
    /// token the app got from getServiceAuth).
    StandardOrService,
    /// The account password only (account settings, app passwords, migration out).
    Full,
    /// A refresh token (refreshSession, deleteSession).
    Refresh,
    /// The admin's HTTP basic auth.
    Admin,
    /// Optional service auth that the method itself verifies against the DID it is
    /// for (createAccount with an existing DID); the bearer token is handed over as is.
    ServiceOptional,
}

/// Which account states may call, checked after the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatusCheck {
    /// Any state (the reference's default: a deactivated account may still log in,
    /// read its settings and migrate).
    Any,
    /// Taken-down accounts are refused (`AccountTakedown`).
    Takedown,
    /// Refused inside the writer job, in the transaction of the write itself (a read
    /// here would race a takedown): record writes, which refuse taken-down and
    /// deactivated repos.
    InWriter,
}

/// What an OAuth token's scope must grant for a method (the other credentials are
/// judged by [`Auth`] alone). Declared per method in the method table; the default
/// follows [`Auth`]: what an app password may call needs `transition:generic`, what
/// only the account password may call is never open to OAuth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuthNeed {
    /// `transition:generic` (an app password's rights).
    Generic,
    /// Any OAuth token of the account.
    Any,
    /// Checked by the operation itself, with what the request names (the records
    /// written, the blob's type, the service asked for).
    Operation,
    /// An `rpc:` permission for this method on the AppView (the preferences the PDS
    /// keeps for it, as the reference does).
    AppView,
    /// `account:<attr>`; `true`: `?action=manage`.
    Account(AccountAttr, bool),
    /// `identity:handle` or `identity:*`.
    Identity(&'static str),
    /// Not with OAuth at all (app passwords, account deletion, invites).
    Never,
}

impl OAuthNeed {
    /// The default for a method declared with `auth`.
    pub(crate) const fn default_for(auth: Auth) -> OAuthNeed {
        match auth {
            Auth::Full => OAuthNeed::Never,
            _ => OAuthNeed::Generic,
        }
    }
}

/// Who is calling, as verified.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Anonymous,
    User(Session),
    Refresh(Claims),
    Admin,
}

/// The request's body, as the method's kind reads it.
pub(crate) enum Input {
    /// Queries have none.
    None,
    /// A procedure's JSON body, read and size-limited before the handler.
    Json(Vec<u8>),
    /// A streamed body (blobs, repo imports), read by the handler.
    Stream(Body),
}

/// One verified call.
pub(crate) struct Call {
    pub ctx: Ctx,
    pub caller: Caller,
    pub params: Params,
    pub headers: HeaderMap,
    pub input: Input,
    /// The client's address (behind trusted proxies, the first untrusted hop).
    pub client_ip: String,
}

impl Call {
    /// The caller's session (methods declared with a session requirement have one).
    pub(crate) fn session(&self) -> XrpcResult<&Session> {
        match &self.caller {
            Caller::User(s) => Ok(s),
            _ => Err(XrpcError::auth_required("Authentication Required")),
        }
    }

    /// The verified refresh token's claims (methods declared [`Auth::Refresh`]).
    pub(crate) fn refresh_claims(&self) -> XrpcResult<&Claims> {
        match &self.caller {
            Caller::Refresh(c) => Ok(c),
            _ => Err(XrpcError::auth_required("a refresh token is needed")),
        }
    }

    /// The bearer token as sent (for [`Auth::ServiceOptional`]).
    pub(crate) fn bearer(&self) -> Option<&str> {
        credentials::bearer(&self.headers)
    }

    /// The JSON body parsed into `T`.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> XrpcResult<T> {
        let bytes = match &self.input {
            Input::Json(b) if !b.is_empty() => b,
            _ => return Err(XrpcError::invalid_request("Request body is required")),
        };
        serde_json::from_slice(bytes)
            .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))
    }

    /// The JSON body as an object (for inputs where null and absent differ).
    pub(crate) fn object(&self) -> XrpcResult<Map<String, Value>> {
        match self.json::<Value>()? {
            Value::Object(map) => Ok(map),
            _ => Err(XrpcError::invalid_request(
                "Request body must be a JSON object",
            )),
        }
    }

    /// The streamed body (methods whose kind is a streamed procedure).
    pub(crate) fn take_stream(&mut self) -> XrpcResult<Body> {
        match std::mem::replace(&mut self.input, Input::None) {
            Input::Stream(body) => Ok(body),
            _ => Err(XrpcError::internal("this method has no streamed body")),
        }
    }
}

/// The request a credential is checked against.
pub(crate) struct Request<'a> {
    pub nsid: &'a str,
    /// The HTTP method and path (what a DPoP proof names).
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub client_ip: &'a str,
}

/// Verifies the credentials `auth` asks for; for OAuth tokens, that their scope
/// grants `need`.
pub(crate) async fn verify(
    ctx: &Ctx,
    auth: Auth,
    need: OAuthNeed,
    r: &Request<'_>,
) -> XrpcResult<Caller> {
    let (nsid, headers, client_ip) = (r.nsid, r.headers, r.client_ip);
    if credentials::dpop_token(headers).is_some() {
        if matches!(auth, Auth::None | Auth::ServiceOptional) {
            return Ok(Caller::Anonymous);
        }
        if matches!(auth, Auth::Refresh | Auth::Admin) {
            return Err(XrpcError::named(
                "InvalidToken",
                "an OAuth token cannot be used here",
            ));
        }
        let session = oauth_session(ctx, r)?;
        check_need(ctx, &session, need, nsid)?;
        return Ok(Caller::User(session));
    }
    credentials::refuse_bound_bearer(headers)?;
    if auth == Auth::StandardOrService {
        if let Some(token) = credentials::bearer(headers) {
            if let Some(issuer) = service_jwt::service_issuer(token) {
                return service_caller(ctx, nsid, token, &issuer).await;
            }
        }
    }
    let user = |s: Session| Ok(Caller::User(s));
    match auth {
        Auth::None | Auth::ServiceOptional => Ok(Caller::Anonymous),
        Auth::Optional => {
            if is_basic(headers) {
                return admin(ctx, headers, client_ip);
            }
            Ok(credentials::optional_access(&ctx.tokens, headers)?
                .map_or(Caller::Anonymous, Caller::User))
        }
        Auth::Standard | Auth::StandardOrService => {
            user(credentials::access(&ctx.tokens, headers)?)
        }
        Auth::Full => {
            let s = credentials::access(&ctx.tokens, headers)?;
            s.require_full()?;
            user(s)
        }
        Auth::Refresh => Ok(Caller::Refresh(credentials::refresh(&ctx.tokens, headers)?)),
        Auth::Admin => admin(ctx, headers, client_ip),
    }
}

/// An OAuth access token with its DPoP proof: signature, expiry and revocation; the
/// proof for this very request, made with the key the token is bound to. Failures
/// answer 401 with `WWW-Authenticate: DPoP` (and a fresh nonce), as RFC 9449 asks, so
/// clients retry with the nonce or refresh the token.
pub(crate) fn oauth_session(ctx: &crate::pds::AppState, r: &Request<'_>) -> XrpcResult<Session> {
    use crate::auth::dpop::{DpopError, Target};
    use crate::auth::oauth::AccessError;
    let now = crate::storage::unix_now();
    let nonce = ctx.oauth.dpop.nonce(now);
    let refuse = |error: &str, why: &str| {
        XrpcError::new(StatusCode::UNAUTHORIZED, error, why).with_headers(vec![
            (
                "www-authenticate",
                format!("DPoP algs=\"ES256\", error=\"{error}\", error_description=\"{why}\""),
            ),
            ("dpop-nonce", nonce.clone()),
        ])
    };
    let token = credentials::dpop_token(r.headers).unwrap_or_default();
    let claims = ctx.oauth.verify_access(token).map_err(|e| match e {
        AccessError::Expired => refuse("invalid_token", "the access token has expired"),
        AccessError::Revoked => refuse("invalid_token", "the access token was revoked"),
        AccessError::Invalid => refuse("invalid_token", "the access token is not valid here"),
    })?;
    let proof = credentials::dpop_proof(r.headers)
        .ok_or_else(|| refuse("invalid_dpop_proof", "one DPoP proof is required"))?;
    let urls = crate::oauth::request_urls(ctx, r.headers, r.path);
    let target = Target {
        method: r.method,
        urls: &urls,
        access_token: Some(token),
    };
    let proof = ctx
        .oauth
        .dpop
        .check(proof, &target, now)
        .map_err(|e| match e {
            DpopError::UseNonce => refuse(
                "use_dpop_nonce",
                "use the DPoP nonce in the DPoP-Nonce header",
            ),
            DpopError::Invalid(why) => refuse("invalid_dpop_proof", &why),
        })?;
    if proof.jkt != claims.cnf.jkt {
        return Err(refuse(
            "invalid_dpop_proof",
            "the DPoP key is not the one the token is bound to",
        ));
    }
    let permissions = ctx
        .scope_permissions(&claims.scope)
        .map_err(|_| refuse("invalid_token", "the token's scope is no longer understood"))?;
    let scope = if permissions.chat {
        Scope::AppPassPrivileged
    } else {
        Scope::AppPass
    };
    Ok(Session {
        did: claims.sub,
        scope,
        oauth: Some(permissions),
    })
}

/// The default AppView as a service reference (`did…#bsky_appview`), what `rpc:`
/// permissions name it by.
pub(crate) fn appview_service(ctx: &crate::pds::AppState) -> String {
    format!(
        "{}#bsky_appview",
        ctx.config.appview_did.as_deref().unwrap_or_default()
    )
}

/// Refuses an OAuth session whose scope does not grant what the method needs.
fn check_need(ctx: &Ctx, session: &Session, need: OAuthNeed, nsid: &str) -> XrpcResult<()> {
    match need {
        OAuthNeed::Any | OAuthNeed::Operation => Ok(()),
        OAuthNeed::Generic => session.require(|p| p.generic, || "transition:generic".into()),
        OAuthNeed::AppView => {
            let aud = appview_service(ctx);
            session.require(
                |p| p.allows_rpc(nsid, &aud),
                || format!("rpc:{nsid}?aud={aud}"),
            )
        }
        OAuthNeed::Account(attr, manage) => session.require(
            |p| p.allows_account(attr, manage),
            || {
                let name = format!("{attr:?}").to_lowercase();
                format!(
                    "account:{name}{}",
                    if manage { "?action=manage" } else { "" }
                )
            },
        ),
        OAuthNeed::Identity(attr) => {
            session.require(|p| p.allows_identity(attr), || format!("identity:{attr}"))
        }
        OAuthNeed::Never => Err(XrpcError::new(
            StatusCode::FORBIDDEN,
            "InvalidToken",
            "apps signed in with OAuth cannot do this; use the account password",
        )),
    }
}

/// A service-auth token for `nsid`, as the reference checks it: signed with the
/// current signing key of `issuer` (an account here), `aud` this server, `lxm` the
/// method, not expired, at most an hour long, used once. The caller then acts as that
/// account for this one call, with no more rights than an app password.
async fn service_caller(ctx: &Ctx, nsid: &str, token: &str, issuer: &str) -> XrpcResult<Caller> {
    let refused =
        |why: String| XrpcError::auth_required(format!("service-auth token refused: {why}"));
    let account = ctx
        .find_account(issuer)
        .await?
        .filter(|a| a.did == issuer)
        .ok_or_else(|| refused(format!("{issuer} has no account here")))?;
    let key = crate::pds::signing_key(&account)?.public_key();
    let now = crate::storage::unix_now();
    let claims = service_jwt::verify(token, &key, &ctx.config.service_did(), nsid, now)
        .and_then(|claims| ctx.service_jtis.first_use(&claims, now).map(|()| claims))
        .map_err(refused)?;
    Ok(Caller::User(Session::new(
        claims.iss.split('#').next().unwrap_or(issuer).to_owned(),
        Scope::AppPass,
    )))
}

/// The admin's basic auth, rate-limited per address, with a budget of wrong passwords
/// shared by everyone: once it is spent, every admin call waits (security review M4).
fn admin(ctx: &Ctx, headers: &HeaderMap, client_ip: &str) -> XrpcResult<Caller> {
    ctx.check_limit(&ctx.limits.admin, client_ip)?;
    ctx.limits.admin_failures.check_open()?;
    let password = ctx.config.admin_password.as_deref();
    credentials::admin(password, headers).inspect_err(|_| {
        if password.is_some() {
            ctx.limits.admin_failures.failed();
        }
    })?;
    Ok(Caller::Admin)
}

fn is_basic(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
}

/// Refuses a caller whose account state the method does not allow.
pub(crate) async fn check_status(ctx: &Ctx, check: StatusCheck, caller: &Caller) -> XrpcResult<()> {
    let Caller::User(session) = caller else {
        return Ok(());
    };
    if check != StatusCheck::Takedown {
        return Ok(());
    }
    let account = ctx.find_account(&session.did).await?.ok_or_else(|| {
        XrpcError::new(
            StatusCode::FORBIDDEN,
            "AccountNotFound",
            "Account not found",
        )
    })?;
    if account.status == AccountStatus::Takendown {
        return Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    Ok(())
}
