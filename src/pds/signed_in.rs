//! What is signed in to an account, and ending it: login sessions (createSession's
//! refresh tokens, with the account password or an app password) and OAuth apps
//! (grants). The account page lists both; `/oauth/revoke`, a new password, a takedown
//! and account deletion end them. Ending an OAuth grant also stops its access tokens at
//! once (the in-memory revocation list); a login session's access token runs out by
//! itself within its two hours, as with the reference PDS.

use super::AppState;
use crate::error::{XrpcError, XrpcResult};
use crate::storage::accounts::{self as db, LoginSession};
use crate::storage::oauth::{self as grants, Grant};
use crate::storage::unix_now;

/// Everything signed in to one account.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// OAuth apps, newest first.
    pub apps: Vec<Grant>,
    /// Password logins, the longest-lived first.
    pub sessions: Vec<LoginSession>,
}

/// The apps and login sessions of `did`.
pub async fn signed_in(state: &AppState, did: &str) -> XrpcResult<SignedIn> {
    let did = did.to_owned();
    let now = unix_now();
    state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(SignedIn {
                apps: grants::live_for(conn, &did, now)?,
                sessions: db::refresh_tokens(conn, &did, now)?,
            })
        })
        .await
}

/// Signs one login session of `did` out (its refresh token stops working). Whether it
/// was still signed in.
pub async fn end_session(state: &AppState, did: &str, id: &str) -> XrpcResult<bool> {
    let (did, id) = (did.to_owned(), id.to_owned());
    state
        .storage
        .write(move |conn| {
            if db::refresh_token(conn, &id, &did)?.is_none() {
                return Ok::<_, XrpcError>(false);
            }
            Ok(db::take_refresh_token(conn, &id)?)
        })
        .await
}

/// Revokes one OAuth grant: its row, and at once its access tokens. With `did`, only
/// if the grant is that account's (the account page); whether it was revoked.
pub async fn revoke_app(state: &AppState, did: Option<&str>, id: &str) -> XrpcResult<bool> {
    let now = unix_now();
    let (did, owned) = (did.map(str::to_owned), id.to_owned());
    let revoked = state
        .storage
        .write(move |conn| {
            let owner = grants::by_id(conn, &owned)?.map(|g| g.did);
            if owner.is_none() || did.is_some_and(|d| Some(d) != owner) {
                return Ok::<_, XrpcError>(false);
            }
            Ok(grants::revoke(conn, &owned, now)?)
        })
        .await?;
    if revoked {
        state.oauth.revoke(id, now);
    }
    Ok(revoked)
}

/// Stops the access tokens of grants just revoked in storage (by a new password, a
/// takedown, or the account's deletion).
pub fn forget_grants(state: &AppState, ids: Vec<String>) {
    let now = unix_now();
    for id in ids {
        state.oauth.revoke(&id, now);
    }
}
