//! Invite codes: checking and spending one at account creation, making them (the
//! owner, or an account's own), listing an account's.

use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::accounts::{self as db};
use crate::syntax::Datetime;

pub(super) async fn check_invite(state: &AppState, code: &str) -> XrpcResult<()> {
    let code = code.to_owned();
    state
        .storage
        .read(move |conn| {
            let ok = db::invite(conn, &code)?
                .is_some_and(|c| !c.disabled && (c.uses.len() as i64) < c.available);
            if ok {
                Ok(())
            } else {
                Err(XrpcError::named(
                    "InvalidInviteCode",
                    "invite code not found, disabled or used up",
                ))
            }
        })
        .await
}

pub(super) fn use_invite_code(
    conn: &rusqlite::Connection,
    code: &str,
    did: &str,
) -> XrpcResult<()> {
    let invite =
        db::invite(conn, code)?.filter(|c| !c.disabled && (c.uses.len() as i64) < c.available);
    if invite.is_none() {
        return Err(XrpcError::named(
            "InvalidInviteCode",
            "invite code not found, disabled or used up",
        ));
    }
    db::use_invite(conn, code, did, Datetime::now().as_str())?;
    Ok(())
}

fn new_invite_code(hostname: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let part = |n: usize| {
        (0..n)
            .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
            .collect::<String>()
    };
    format!("{}-{}-{}", hostname.replace('.', "-"), part(5), part(5))
}

/// Creates `count` invite codes of `uses` each, for an account (or the admin).
pub async fn create_invites(
    state: &AppState,
    count: usize,
    uses: i64,
    for_account: &str,
) -> XrpcResult<Vec<String>> {
    if !(1..=1000).contains(&count) || uses < 1 {
        return Err(XrpcError::invalid_request(
            "codeCount must be 1 to 1000 and useCount at least 1",
        ));
    }
    let codes: Vec<String> = (0..count)
        .map(|_| new_invite_code(&state.config.hostname))
        .collect();
    let (out, for_account) = (codes.clone(), for_account.to_owned());
    state
        .storage
        .write(move |conn| {
            let now = Datetime::now().to_string();
            for code in &codes {
                db::insert_invite(conn, code, uses, &for_account, "admin", &now)?;
            }
            Ok::<_, XrpcError>(())
        })
        .await?;
    Ok(out)
}

/// An invite code as `com.atproto.server.defs#inviteCode`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteCodeView {
    pub code: String,
    /// Uses left.
    pub available: i64,
    pub disabled: bool,
    pub for_account: String,
    pub created_by: String,
    pub created_at: String,
    pub uses: Vec<InviteUse>,
}

/// One use of an invite code.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteUse {
    pub used_by: String,
    pub used_at: String,
}

/// A list of invite codes (getAccountInviteCodes, admin getInviteCodes).
#[derive(Debug, Clone, serde::Serialize)]
pub struct InviteCodes {
    pub codes: Vec<InviteCodeView>,
}

pub fn invite_view(c: &db::InviteCode) -> InviteCodeView {
    InviteCodeView {
        code: c.code.clone(),
        available: c.available - c.uses.len() as i64,
        disabled: c.disabled,
        for_account: c.for_account.clone(),
        created_by: c.created_by.clone(),
        created_at: c.created_at.clone(),
        uses: c
            .uses
            .iter()
            .map(|(by, at)| InviteUse {
                used_by: by.clone(),
                used_at: at.clone(),
            })
            .collect(),
    }
}

/// com.atproto.server.getAccountInviteCodes
pub async fn account_invites(state: &AppState, session: &Session) -> XrpcResult<InviteCodes> {
    let did = session.did.clone();
    let codes = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::invites_for(conn, &did)?))
        .await?;
    Ok(InviteCodes {
        codes: codes.iter().map(invite_view).collect(),
    })
}
