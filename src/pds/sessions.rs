//! Sessions: logging in (with the account password or an app password), refreshing,
//! logging out, app passwords, and service-auth tokens for other services.

use super::{signing_key, AppState};
use crate::auth::password;
use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::identity::DidDocument;
use crate::storage::accounts::{self as db, Account, AccountStatus, AppPassword};
use crate::storage::unix_now;
use crate::syntax::Datetime;
use serde::Serialize;
use serde_json::json;

/// A new access/refresh token pair for `did`, with the refresh token recorded.
pub async fn issue(
    state: &AppState,
    did: &str,
    scope: Scope,
    app_password: Option<String>,
) -> XrpcResult<(String, String)> {
    let access = state.tokens.access_token(did, scope);
    let (refresh, jti, exp) = state.tokens.refresh_token(did);
    let did = did.to_owned();
    state
        .storage
        .write(move |conn| {
            db::insert_refresh_token(conn, &jti, &did, app_password.as_deref(), exp)?;
            Ok::<_, XrpcError>(())
        })
        .await?;
    Ok((access, refresh))
}

/// The fields of createSession/getSession/refreshSession that describe the account,
/// with its DID document as the reference gives it (clients take the PDS endpoint from
/// it). atbox has no email two-factor sign-in, so `emailAuthFactor` is always false.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub did: String,
    pub handle: String,
    pub did_doc: DidDocument,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub email_confirmed: bool,
    pub email_auth_factor: bool,
    pub active: bool,
    /// Why the account is not active (`deactivated`, `takendown`); absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

/// A new session: the account and its tokens (createSession, refreshSession).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSession {
    #[serde(flatten)]
    pub account: AccountView,
    pub access_jwt: String,
    pub refresh_jwt: String,
}

pub async fn account_view(state: &AppState, account: &Account) -> AccountView {
    let active = account.status == AccountStatus::Active;
    AccountView {
        did: account.did.clone(),
        handle: account.handle.clone(),
        did_doc: super::sync::did_document(state, account).await,
        email: account.email.clone(),
        email_confirmed: account.email_confirmed,
        email_auth_factor: false,
        active,
        status: (!active).then(|| account.status.as_str()),
    }
}

/// com.atproto.server.createSession
pub async fn create_session(
    state: &AppState,
    client_ip: &str,
    identifier: &str,
    pass: &str,
) -> XrpcResult<NewSession> {
    let (account, scope, app_password) = authenticate(state, client_ip, identifier, pass).await?;
    let (access, refresh) = issue(state, &account.did, scope, app_password).await?;
    Ok(session_response(state, &account, access, refresh).await)
}

/// Checks a handle (or email, or DID) and password, under the login rate limits that
/// createSession and the OAuth sign-in page share: the account, what the password is
/// (the account's own, or which app password), or `AuthenticationRequired`.
pub async fn authenticate(
    state: &AppState,
    client_ip: &str,
    identifier: &str,
    pass: &str,
) -> XrpcResult<(Account, Scope, Option<String>)> {
    // A handle is at most 253 bytes, an email 254: anything longer is no account's.
    if identifier.len() > 256 {
        return Err(XrpcError::invalid_request("identifier is too long"));
    }
    let identifier = identifier.trim().to_ascii_lowercase();
    // Per identifier *and* address, as the reference: a stranger's wrong guesses use up
    // their own budget, never the owner's (security review M5).
    let key = format!("{identifier}-{client_ip}");
    state.limits.login_short.check(&key)?;
    state.limits.login_day.check(&key)?;
    let denied = || {
        XrpcError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "Invalid identifier or password",
        )
    };
    let Some(account) = state.find_account(&identifier).await? else {
        // Spend the same time as a real check, so timing does not reveal accounts (off
        // the async threads, like every hash).
        let pass = pass.to_owned();
        let _ = tokio::task::spawn_blocking(move || {
            password::verify(&pass, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$0000000000000000000000000000000000000000000")
        })
        .await;
        return Err(denied());
    };
    let (scope, app_password) = match check_password(state, &account, pass.to_owned()).await? {
        Some(found) => found,
        None => return Err(denied()),
    };
    if account.status == AccountStatus::Takendown {
        return Err(XrpcError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    Ok((account, scope, app_password))
}

/// The account view with a new session's tokens.
async fn session_response(
    state: &AppState,
    account: &Account,
    access_jwt: String,
    refresh_jwt: String,
) -> NewSession {
    NewSession {
        account: account_view(state, account).await,
        access_jwt,
        refresh_jwt,
    }
}

/// Which credential a password is: the account's own (full access) or an app password.
async fn check_password(
    state: &AppState,
    account: &Account,
    pass: String,
) -> XrpcResult<Option<(Scope, Option<String>)>> {
    let main_hash = account.password_hash.clone();
    let did = account.did.clone();
    let app_passwords: Vec<AppPassword> = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::app_passwords(conn, &did)?))
        .await?;
    // Hashing is deliberately slow: keep it off the async threads.
    tokio::task::spawn_blocking(move || {
        if password::verify(&pass, &main_hash) {
            return Some((Scope::Access, None));
        }
        app_passwords
            .into_iter()
            .find(|p| password::verify(&pass, &p.password_hash))
            .map(|p| {
                let scope = if p.privileged {
                    Scope::AppPassPrivileged
                } else {
                    Scope::AppPass
                };
                (scope, Some(p.name))
            })
    })
    .await
    .map_err(|e| XrpcError::internal(e.to_string()))
}

/// com.atproto.server.getSession
pub async fn get_session(state: &AppState, session: &Session) -> XrpcResult<AccountView> {
    let account = state.repo_account(&session.did).await?;
    let mut view = account_view(state, &account).await;
    // An OAuth app sees the address only with account:email (or transition:email).
    let email = crate::auth::scopes::AccountAttr::Email;
    if session
        .oauth
        .as_ref()
        .is_some_and(|p| !p.allows_account(email, false))
    {
        view.email = None;
    }
    Ok(view)
}

/// com.atproto.server.refreshSession: the old refresh token is revoked as it is used.
pub async fn refresh_session(state: &AppState, did: &str, jti: &str) -> XrpcResult<NewSession> {
    let (jti_owned, did_owned) = (jti.to_owned(), did.to_owned());
    let app_password: Option<Option<String>> = state
        .storage
        .write(move |conn| {
            let app_password = db::refresh_token(conn, &jti_owned, &did_owned)?;
            if app_password.is_some() {
                db::take_refresh_token(conn, &jti_owned)?;
            }
            Ok::<_, XrpcError>(app_password)
        })
        .await?;
    let Some(app_password) = app_password else {
        return Err(XrpcError::named("ExpiredToken", "Token has been revoked"));
    };
    let account = state.repo_account(did).await?;
    if account.status == AccountStatus::Takendown {
        return Err(XrpcError::named(
            "AccountTakedown",
            "Account has been taken down",
        ));
    }
    let scope = match &app_password {
        None => Scope::Access,
        Some(name) => {
            let (did, name) = (did.to_owned(), name.clone());
            let privileged = state
                .storage
                .read(move |conn| {
                    Ok::<_, XrpcError>(
                        db::app_passwords(conn, &did)?
                            .into_iter()
                            .any(|p| p.name == name && p.privileged),
                    )
                })
                .await?;
            if privileged {
                Scope::AppPassPrivileged
            } else {
                Scope::AppPass
            }
        }
    };
    let (access, refresh) = issue(state, did, scope, app_password).await?;
    Ok(session_response(state, &account, access, refresh).await)
}

/// com.atproto.server.deleteSession: revokes the refresh token.
pub async fn delete_session(state: &AppState, jti: &str) -> XrpcResult<()> {
    let jti = jti.to_owned();
    state
        .storage
        .write(move |conn| Ok::<_, XrpcError>(db::take_refresh_token(conn, &jti).map(|_| ())?))
        .await
}

/// A fresh app password: four groups of four lowercase letters and digits.
fn generate_app_password() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..4)
        .map(|_| {
            (0..4)
                .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// com.atproto.server.createAppPassword
pub async fn create_app_password(
    state: &AppState,
    session: &Session,
    name: &str,
    privileged: bool,
) -> XrpcResult<NewAppPassword> {
    let name = name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(XrpcError::invalid_request(
            "an app password needs a name of 1 to 100 characters",
        ));
    }
    let secret = generate_app_password();
    let hash = {
        let s = secret.clone();
        tokio::task::spawn_blocking(move || password::hash(&s))
            .await
            .map_err(|e| XrpcError::internal(e.to_string()))?
    };
    let created_at = Datetime::now().to_string();
    let entry = AppPassword {
        name: name.clone(),
        password_hash: hash,
        privileged,
        created_at: created_at.clone(),
    };
    let did = session.did.clone();
    state
        .storage
        .write(move |conn| {
            if db::app_passwords(conn, &did)?
                .iter()
                .any(|p| p.name == entry.name)
            {
                return Err(XrpcError::named(
                    "DuplicateName",
                    format!("an app password named {:?} already exists", entry.name),
                ));
            }
            db::insert_app_password(conn, &did, &entry)?;
            Ok(())
        })
        .await?;
    Ok(NewAppPassword {
        name,
        password: secret,
        created_at,
        privileged,
    })
}

/// A new app password: the only time its secret is shown (createAppPassword).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAppPassword {
    pub name: String,
    pub password: String,
    pub created_at: String,
    pub privileged: bool,
}

/// An app password as listed (no secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPasswordView {
    pub name: String,
    pub created_at: String,
    pub privileged: bool,
}

/// listAppPasswords' output.
#[derive(Debug, Clone, Serialize)]
pub struct AppPasswords {
    pub passwords: Vec<AppPasswordView>,
}

/// com.atproto.server.listAppPasswords
pub async fn list_app_passwords(state: &AppState, session: &Session) -> XrpcResult<AppPasswords> {
    let did = session.did.clone();
    let list = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::app_passwords(conn, &did)?))
        .await?;
    let passwords = list
        .into_iter()
        .map(|p| AppPasswordView {
            name: p.name,
            created_at: p.created_at,
            privileged: p.privileged,
        })
        .collect();
    Ok(AppPasswords { passwords })
}

/// com.atproto.server.revokeAppPassword (also revokes its sessions' refresh tokens).
pub async fn revoke_app_password(
    state: &AppState,
    session: &Session,
    name: &str,
) -> XrpcResult<()> {
    let (did, name) = (session.did.clone(), name.to_owned());
    state
        .storage
        .write(move |conn| {
            Ok::<_, XrpcError>(db::delete_app_password(conn, &did, &name).map(|_| ())?)
        })
        .await
}

/// com.atproto.server.getServiceAuth: a short-lived JWT, signed with the account's
/// repo key, that another service (`aud`) accepts as proof the account asked for `lxm`.
pub async fn get_service_auth(
    state: &AppState,
    session: &Session,
    aud: &str,
    exp: Option<i64>,
    lxm: Option<&str>,
) -> XrpcResult<ServiceToken> {
    crate::syntax::Did::new(aud.split('#').next().unwrap_or(aud))
        .map_err(|_| XrpcError::invalid_request("aud must be a DID"))?;
    // An OAuth app may only ask for tokens its rpc: permissions (or transition
    // scopes) cover, and must name the method.
    if session.oauth.is_some() && lxm.is_none() {
        return Err(XrpcError::invalid_request(
            "apps signed in with OAuth must name the method (lxm)",
        ));
    }
    if let Some(lxm) = lxm {
        session.require(
            |p| p.allows_rpc(lxm, aud),
            || format!("rpc:{lxm}?aud={aud}"),
        )?;
        crate::syntax::Nsid::new(lxm)
            .map_err(|_| XrpcError::invalid_request("lxm must be an NSID"))?;
        if !crate::auth::methods::scope_may_reach(session.scope, lxm) {
            return Err(XrpcError::named(
                "InvalidToken",
                format!("insufficient access to request a service auth token for the following method: {lxm}"),
            ));
        }
        if crate::auth::methods::is_protected(lxm) {
            return Err(XrpcError::invalid_request(format!(
                "cannot request a service auth token for the following protected method: {lxm}"
            )));
        }
    }
    let now = unix_now();
    let exp = exp.unwrap_or(now + 60);
    if exp <= now {
        return Err(XrpcError::named(
            "BadExpiration",
            "expiration is in the past",
        ));
    }
    if exp - now > 60 * 60 {
        return Err(XrpcError::named(
            "BadExpiration",
            "expiration may be at most one hour away",
        ));
    }
    if lxm.is_none() && exp - now > 60 {
        return Err(XrpcError::named(
            "BadExpiration",
            "a token without lxm may live at most 60 seconds",
        ));
    }
    Ok(ServiceToken {
        token: sign_service_token(state, &session.did, aud, lxm, exp).await?,
    })
}

/// A service-auth token signed with `did`'s repo key: `iss` the account, `aud`, `lxm`
/// (when given), a fresh `jti`, good until `exp` (unix seconds). The one way atbox
/// signs them: getServiceAuth, proxied calls and read-after-write's own AppView calls.
pub async fn sign_service_token(
    state: &AppState,
    did: &str,
    aud: &str,
    lxm: Option<&str>,
    exp: i64,
) -> XrpcResult<String> {
    let account = state.repo_account(did).await?;
    let key = signing_key(&account)?;
    let mut claims = json!({ "iat": unix_now(), "iss": account.did, "aud": aud, "exp": exp, "jti": format!("{:032x}", rand::random::<u128>()) });
    if let Some(lxm) = lxm {
        claims["lxm"] = json!(lxm);
    }
    Ok(crate::auth::service_jwt::sign(&key, &claims))
}

/// getServiceAuth's output.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceToken {
    pub token: String,
}
