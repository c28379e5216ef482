//! One-time codes and what they unlock: password resets, email confirmation and
//! change, account deletion, PLC operations. Where the reference PDS emails a code,
//! atbox emails it when SMTP is configured and otherwise shows it on the box
//! (`pds::delivery`); `atbox account tokens` lists every pending one.

use super::check_email;
use crate::auth::password;
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::accounts::{self as db};
use crate::storage::unix_now;

/// How long a one-time code (password reset, account deletion, PLC signature) lives.
pub const TOKEN_TTL_SECS: i64 = 15 * 60;

/// What a one-time code is for; its name is the storage key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    ResetPassword,
    ConfirmEmail,
    UpdateEmail,
    DeleteAccount,
    PlcOperation,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ResetPassword => "reset_password",
            Purpose::ConfirmEmail => "confirm_email",
            Purpose::UpdateEmail => "update_email",
            Purpose::DeleteAccount => "delete_account",
            Purpose::PlcOperation => "plc_operation",
        }
    }

    /// The email's subject (the reference PDS's wording).
    pub fn subject(self) -> &'static str {
        match self {
            Purpose::ResetPassword => "Password Reset Requested",
            Purpose::ConfirmEmail => "Email Confirmation",
            Purpose::UpdateEmail => "Email Update Requested",
            Purpose::DeleteAccount => "Account Deletion Requested",
            Purpose::PlcOperation => "PLC Update Operation Requested",
        }
    }

    /// One sentence for the email: what somebody asked for.
    pub fn asked(self) -> &'static str {
        match self {
            Purpose::ResetPassword => "Somebody asked to reset your account's password.",
            Purpose::ConfirmEmail => "Please confirm this email address for your account.",
            Purpose::UpdateEmail => "Somebody asked to change your account's email address.",
            Purpose::DeleteAccount => "Somebody asked to delete your account.",
            Purpose::PlcOperation => {
                "Somebody asked to change your identity (a PLC operation), e.g. to move your account."
            }
        }
    }

    /// A word or two for the screen and the LAN page.
    pub fn short(self) -> &'static str {
        match self {
            Purpose::ResetPassword => "password reset",
            Purpose::ConfirmEmail => "confirm email",
            Purpose::UpdateEmail => "email change",
            Purpose::DeleteAccount => "delete account",
            Purpose::PlcOperation => "identity change",
        }
    }
}

/// A six-character one-time code, easy to read off a screen or a terminal.
fn one_time_code() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let part = |n: usize| {
        (0..n)
            .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
            .collect::<String>()
    };
    format!("{}-{}", part(5), part(5))
}

/// Issues a one-time code for `purpose` and sends it on its way (`pds::delivery`).
pub async fn request_token(state: &AppState, did: &str, purpose: Purpose) -> XrpcResult<()> {
    let account = state.repo_account(did).await?;
    let (did, code) = (did.to_owned(), one_time_code());
    let stored = code.clone();
    state
        .storage
        .write(move |conn| {
            Ok::<_, XrpcError>(db::put_token(
                conn,
                purpose.as_str(),
                &did,
                &stored,
                unix_now(),
            )?)
        })
        .await?;
    let how = crate::pds::delivery::deliver(state, &account, purpose, &code).await;
    tracing::info!(did = %account.did, purpose = purpose.as_str(), ?how, "one-time code issued");
    Ok(())
}

/// Checks and consumes a one-time code inside a write job.
pub fn consume_token(
    conn: &rusqlite::Connection,
    purpose: Purpose,
    did: &str,
    token: &str,
) -> XrpcResult<()> {
    match db::get_token(conn, purpose.as_str(), did)? {
        Some((expected, at)) if expected == token.trim().to_ascii_uppercase() => {
            db::delete_token(conn, purpose.as_str(), did)?;
            if unix_now() - at > TOKEN_TTL_SECS {
                return Err(XrpcError::named(
                    "ExpiredToken",
                    "the code has expired; request a new one",
                ));
            }
            Ok(())
        }
        _ => Err(XrpcError::named("InvalidToken", "the code is not valid")),
    }
}

/// Whether `token` is `did`'s current code for `purpose`, read without spending it:
/// methods that also take a password check the code first, so that nobody can test
/// passwords (and make the box hash them) without the code from the owner's email.
pub async fn token_matches(
    state: &AppState,
    purpose: Purpose,
    did: &str,
    token: &str,
) -> XrpcResult<bool> {
    let (purpose, did, token) = (
        purpose.as_str(),
        did.to_owned(),
        token.trim().to_ascii_uppercase(),
    );
    state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(
                db::get_token(conn, purpose, &did)?.is_some_and(|(expected, _)| expected == token),
            )
        })
        .await
}

/// com.atproto.server.requestPasswordReset (by email).
pub async fn request_password_reset(state: &AppState, email: &str) -> XrpcResult<()> {
    // Say nothing about whether the address has an account.
    if let Some(account) = state.find_account(&check_email(email)?).await? {
        request_token(state, &account.did, Purpose::ResetPassword).await?;
    }
    Ok(())
}

/// com.atproto.server.resetPassword
pub async fn reset_password(state: &AppState, token: &str, new_password: &str) -> XrpcResult<()> {
    if new_password.is_empty() || new_password.len() > 256 {
        return Err(XrpcError::named(
            "InvalidPassword",
            "the password must be 1 to 256 bytes",
        ));
    }
    let token = token.trim().to_ascii_uppercase();
    // The code first: a wrong one costs no password hash (security review M4).
    let t = token.clone();
    let known = state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(
                db::token_owner(conn, Purpose::ResetPassword.as_str(), &t)?.is_some(),
            )
        })
        .await?;
    if !known {
        return Err(XrpcError::named("InvalidToken", "the code is not valid"));
    }
    let pass = new_password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    state
        .storage
        .write(move |conn| {
            let (did, _) = db::token_owner(conn, Purpose::ResetPassword.as_str(), &token)?
                .ok_or_else(|| XrpcError::named("InvalidToken", "the code is not valid"))?;
            consume_token(conn, Purpose::ResetPassword, &did, &token)?;
            db::set_password(conn, &did, &hash)?;
            db::delete_refresh_tokens(conn, &did)?;
            Ok::<_, XrpcError>(crate::storage::oauth::revoke_all(conn, &did, unix_now())?)
        })
        .await
        .map(|grants| crate::pds::signed_in::forget_grants(state, grants))
}

/// Sets a new password directly (the admin CLI's reset-password).
pub async fn set_password(state: &AppState, did: &str, new_password: &str) -> XrpcResult<()> {
    let pass = new_password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    let did = did.to_owned();
    state
        .storage
        .write(move |conn| {
            db::set_password(conn, &did, &hash)?;
            db::delete_refresh_tokens(conn, &did)?;
            Ok::<_, XrpcError>(crate::storage::oauth::revoke_all(conn, &did, unix_now())?)
        })
        .await
        .map(|grants| crate::pds::signed_in::forget_grants(state, grants))
}

/// com.atproto.server.requestEmailConfirmation: a code for confirmEmail.
pub async fn request_email_confirmation(state: &AppState, session: &Session) -> XrpcResult<()> {
    let account = state.repo_account(&session.did).await?;
    if account.email.is_none() {
        return Err(XrpcError::invalid_request(
            "the account has no email address",
        ));
    }
    request_token(state, &account.did, Purpose::ConfirmEmail).await
}

/// com.atproto.server.confirmEmail
pub async fn confirm_email(
    state: &AppState,
    session: &Session,
    email: &str,
    token: &str,
) -> XrpcResult<()> {
    let (did, email, token) = (
        session.did.clone(),
        email.trim().to_ascii_lowercase(),
        token.to_owned(),
    );
    state
        .storage
        .write(move |conn| {
            let account = db::by_did(conn, &did)?
                .ok_or_else(|| XrpcError::named("AccountNotFound", "account not found"))?;
            if account.email.as_deref() != Some(email.as_str()) {
                return Err(XrpcError::named(
                    "InvalidEmail",
                    "that is not the account's email address",
                ));
            }
            consume_token(conn, Purpose::ConfirmEmail, &did, &token)?;
            db::set_email_confirmed(conn, &did)?;
            Ok(())
        })
        .await
}

/// com.atproto.server.requestEmailUpdate: a confirmed address needs a code to change.
pub async fn request_email_update(state: &AppState, session: &Session) -> XrpcResult<EmailUpdate> {
    let account = state.repo_account(&session.did).await?;
    if account.email_confirmed {
        request_token(state, &account.did, Purpose::UpdateEmail).await?;
    }
    Ok(EmailUpdate {
        token_required: account.email_confirmed,
    })
}

/// requestEmailUpdate's output: whether updateEmail will need the emailed code.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmailUpdate {
    pub token_required: bool,
}

/// com.atproto.server.updateEmail
pub async fn update_email(
    state: &AppState,
    session: &Session,
    email: &str,
    token: Option<&str>,
) -> XrpcResult<()> {
    let email = check_email(email)?;
    let (did, token) = (session.did.clone(), token.map(str::to_owned));
    state
        .storage
        .write(move |conn| {
            let account = db::by_did(conn, &did)?
                .ok_or_else(|| XrpcError::named("AccountNotFound", "account not found"))?;
            if account.email_confirmed {
                let token = token.ok_or_else(|| {
                    XrpcError::named(
                        "TokenRequired",
                        "a code from requestEmailUpdate is required",
                    )
                })?;
                consume_token(conn, Purpose::UpdateEmail, &did, &token)?;
            }
            if db::by_email(conn, &email)?.is_some_and(|a| a.did != did) {
                return Err(XrpcError::invalid_request(
                    "that email address is used by another account",
                ));
            }
            db::set_email(conn, &did, Some(&email))?;
            Ok(())
        })
        .await
}
