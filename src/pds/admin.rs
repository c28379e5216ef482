//! `com.atproto.admin.*`: what the box's owner (HTTP basic auth with `admin_password`)
//! can do to accounts — look them up, reset passwords and emails, change handles, take
//! a repo down or restore it, delete it — and to invite codes.

use super::accounts::{self, remove_account};
use super::AppState;
use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::storage::accounts::{self as db, Account, AccountStatus};
use crate::syntax::Datetime;
use serde_json::Value;

/// An account as the admin sees it (`com.atproto.admin.defs#accountView`).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub did: String,
    pub handle: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub indexed_at: String,
    pub invites_disabled: bool,
}

fn account_view(a: &Account) -> AccountInfo {
    AccountInfo {
        did: a.did.clone(),
        handle: a.handle.clone(),
        email: a.email.clone(),
        indexed_at: a.created_at.clone(),
        invites_disabled: false,
    }
}

async fn account(state: &AppState, did: &str) -> XrpcResult<Account> {
    state
        .find_account(did)
        .await?
        .ok_or_else(|| XrpcError::named("AccountNotFound", format!("no account {did} here")))
}

/// com.atproto.admin.getAccountInfo / getAccountInfos
pub async fn account_infos(state: &AppState, dids: &[String]) -> XrpcResult<Vec<AccountInfo>> {
    let mut out = Vec::with_capacity(dids.len());
    for did in dids {
        if let Some(a) = state.find_account(did).await? {
            out.push(account_view(&a));
        }
    }
    Ok(out)
}

pub async fn account_info(state: &AppState, did: &str) -> XrpcResult<AccountInfo> {
    Ok(account_view(&account(state, did).await?))
}

/// com.atproto.admin.updateAccountPassword (ends the account's sessions).
pub async fn update_password(state: &AppState, did: &str, password: &str) -> XrpcResult<()> {
    account(state, did).await?;
    if password.is_empty() || password.len() > 256 {
        return Err(XrpcError::named(
            "InvalidPassword",
            "the password must be 1 to 256 bytes",
        ));
    }
    accounts::set_password(state, did, password).await
}

/// com.atproto.admin.updateAccountEmail
pub async fn update_email(state: &AppState, account_id: &str, email: &str) -> XrpcResult<()> {
    let a = account(state, account_id).await?;
    let email = email.trim().to_ascii_lowercase();
    if !email.contains('@') {
        return Err(XrpcError::invalid_request("that is not an email address"));
    }
    let did = a.did.clone();
    state
        .storage
        .write(move |conn| {
            if db::by_email(conn, &email)?.is_some_and(|o| o.did != did) {
                return Err(XrpcError::invalid_request(
                    "that email address is used by another account",
                ));
            }
            db::set_email(conn, &did, Some(&email))?;
            Ok(())
        })
        .await
}

/// com.atproto.admin.updateAccountHandle: as updateHandle, on the owner's behalf.
pub async fn update_handle(state: &AppState, did: &str, handle: &str) -> XrpcResult<()> {
    let a = account(state, did).await?;
    accounts::update_handle(state, &Session::new(a.did, Scope::Access), handle).await
}

/// com.atproto.admin.deleteAccount
pub async fn delete_account(state: &AppState, did: &str) -> XrpcResult<()> {
    account(state, did).await?;
    remove_account(state, did, None).await
}

/// A repo as the subject of a moderation status (`com.atproto.admin.defs#repoRef`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RepoRef {
    #[serde(rename = "$type")]
    pub kind: &'static str,
    pub did: String,
}

fn repo_ref(did: &str) -> RepoRef {
    RepoRef {
        kind: "com.atproto.admin.defs#repoRef",
        did: did.to_owned(),
    }
}

/// Whether a status is applied (`com.atproto.admin.defs#statusAttr`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusAttr {
    pub applied: bool,
}

/// getSubjectStatus' output for a repo.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubjectStatus {
    pub subject: RepoRef,
    pub takedown: StatusAttr,
    pub deactivated: StatusAttr,
}

/// updateSubjectStatus' output: the subject and the takedown as given.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubjectUpdate {
    pub subject: RepoRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub takedown: Option<Value>,
}

/// com.atproto.admin.getSubjectStatus for an account (repo).
pub async fn subject_status(state: &AppState, did: &str) -> XrpcResult<SubjectStatus> {
    let a = account(state, did).await?;
    Ok(SubjectStatus {
        subject: repo_ref(&a.did),
        takedown: StatusAttr {
            applied: a.status == AccountStatus::Takendown,
        },
        deactivated: StatusAttr {
            applied: a.status == AccountStatus::Deactivated,
        },
    })
}

/// com.atproto.admin.updateSubjectStatus for an account: take its repo down (it stops
/// being served, logins are refused) or restore it; announced as `#account`.
pub async fn update_subject_status(
    state: &AppState,
    subject: &Value,
    takedown: Option<&Value>,
) -> XrpcResult<SubjectUpdate> {
    let did = subject
        .get("did")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            XrpcError::invalid_request(
                "only repo subjects ({\"did\": ...}) are supported on this server",
            )
        })?
        .to_owned();
    let a = account(state, &did).await?;
    if let Some(takedown) = takedown {
        let applied = takedown
            .get("applied")
            .and_then(Value::as_bool)
            .ok_or_else(|| XrpcError::invalid_request("takedown.applied must be a boolean"))?;
        let status = if applied {
            AccountStatus::Takendown
        } else {
            AccountStatus::Active
        };
        let did2 = a.did.clone();
        let ended = state
            .storage
            .writer
            .write_with_events(move |conn, outbox| {
                db::set_status(conn, &did2, status, Datetime::now().as_str())?;
                let mut ended = Vec::new();
                if applied {
                    db::delete_refresh_tokens(conn, &did2)?;
                    ended =
                        crate::storage::oauth::revoke_all(conn, &did2, crate::storage::unix_now())?;
                }
                let shown = applied.then_some("takendown");
                crate::storage::emit::account(outbox, &did2, !applied, shown);
                Ok::<_, XrpcError>(ended)
            })
            .await?;
        crate::pds::signed_in::forget_grants(state, ended);
    }
    Ok(SubjectUpdate {
        subject: repo_ref(&a.did),
        takedown: takedown.cloned(),
    })
}

/// com.atproto.admin.getInviteCodes
pub async fn invite_codes(state: &AppState) -> XrpcResult<accounts::InviteCodes> {
    let codes = state
        .storage
        .read(|conn| Ok::<_, XrpcError>(db::all_invites(conn)?))
        .await?;
    Ok(accounts::InviteCodes {
        codes: codes.iter().map(accounts::invite_view).collect(),
    })
}

/// com.atproto.admin.disableInviteCodes
pub async fn disable_invite_codes(
    state: &AppState,
    codes: Vec<String>,
    accounts: Vec<String>,
) -> XrpcResult<()> {
    state
        .storage
        .write(move |conn| {
            db::disable_invites(conn, &codes, &accounts)?;
            Ok::<_, XrpcError>(())
        })
        .await
}
