//! An account's life after creation: its status, deactivation and reactivation (with
//! the firehose `#account` events relays need), and deletion of everything it has here.

use super::codes::{consume_token, Purpose};
use crate::auth::password;
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::accounts::{self as db, AccountStatus};
use crate::storage::repos;
use crate::syntax::Datetime;

/// What com.atproto.server.checkAccountStatus answers: where a move here stands.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatusView {
    pub activated: bool,
    /// The DID document names this PDS and the account's signing key here.
    pub valid_did: bool,
    pub repo_commit: String,
    pub repo_rev: String,
    pub repo_blocks: u64,
    pub indexed_records: u64,
    pub private_state_values: u64,
    /// Distinct blobs the records refer to, and blobs uploaded (the reference's counts).
    pub expected_blobs: u64,
    pub imported_blobs: u64,
}

/// com.atproto.server.checkAccountStatus: what is really here, as migration tools
/// watch it (the reference's counts: blobs the records refer to against blobs stored;
/// whether the DID document points here with this account's key).
pub async fn check_account_status(
    state: &AppState,
    session: &Session,
) -> XrpcResult<AccountStatusView> {
    let account = state.repo_account(&session.did).await?;
    let did = account.did.clone();
    let blocks = state.storage.log.block_count(&did);
    let (head, records, expected, imported) = state
        .storage
        .read(move |conn| {
            let head = repos::head(conn, &did)?;
            let records = repos::record_count(conn, &did)?;
            let expected = crate::storage::blobs::referenced_blob_count(conn, &did)?;
            let imported = crate::storage::blobs::blob_count(conn, &did)?;
            Ok::<_, XrpcError>((head, records, expected, imported))
        })
        .await?;
    let head = head.ok_or_else(|| XrpcError::internal("account has no repo"))?;
    Ok(AccountStatusView {
        activated: account.status == AccountStatus::Active,
        valid_did: did_points_here(state, &account).await,
        repo_commit: head.commit.to_string(),
        repo_rev: head.rev.as_str().to_owned(),
        repo_blocks: blocks as u64,
        indexed_records: records,
        private_state_values: 0,
        expected_blobs: expected,
        imported_blobs: imported,
    })
}

/// Whether the account's DID document (as the world resolves it) names this PDS and
/// the signing key this account has here.
async fn did_points_here(state: &AppState, account: &crate::storage::accounts::Account) -> bool {
    // A did:web this box serves is its own document: it points here by construction.
    if crate::pds::sync::hosts_did_web(&state.config, &account.did) {
        return true;
    }
    let Ok(did) = crate::syntax::Did::new(account.did.as_str()) else {
        return false;
    };
    let Ok(doc) = state.resolver.resolve_did(&did).await else {
        return false;
    };
    let key_here = crate::pds::signing_key(account).map(|k| k.public_key());
    doc.pds_endpoint().as_deref() == Some(state.config.public_url.as_str())
        && matches!((doc.signing_key(), key_here), (Some(theirs), Ok(ours)) if theirs == ours)
}

/// com.atproto.server.activateAccount / deactivateAccount
pub async fn set_active(state: &AppState, session: &Session, active: bool) -> XrpcResult<()> {
    let did = session.did.clone();
    let status = if active {
        AccountStatus::Active
    } else {
        AccountStatus::Deactivated
    };
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            let account = db::by_did(conn, &did)?
                .ok_or_else(|| XrpcError::invalid_request("account not found"))?;
            if account.status == AccountStatus::Takendown {
                return Err(XrpcError::named(
                    "AccountTakedown",
                    "account has been taken down",
                ));
            }
            db::set_status(conn, &did, status, Datetime::now().as_str())?;
            let shown = (status != AccountStatus::Active).then(|| status.as_str());
            crate::storage::emit::account(outbox, &did, status == AccountStatus::Active, shown);
            if status == AccountStatus::Active {
                // Back online: tell consumers who it is and where its repo stands.
                crate::storage::emit::identity(outbox, &did, Some(&account.handle));
                if let Some(head) = repos::head(conn, &did)? {
                    let block = repos::get_blocks(&outbox.log, conn, &did, &[head.commit])?;
                    let commit_block = block.get(&head.commit).unwrap_or_default();
                    crate::storage::emit::sync(
                        outbox,
                        &did,
                        head.commit,
                        commit_block,
                        head.rev.as_str(),
                    );
                }
            }
            Ok(())
        })
        .await
}

/// com.atproto.server.deleteAccount: needs the password and the one-time code.
pub async fn delete_account(
    state: &AppState,
    did: &str,
    pass: &str,
    token: &str,
) -> XrpcResult<()> {
    let account = state.repo_account(did).await?;
    // The emailed code first, so the password cannot be guessed here without it
    // (security review H6); the writer job spends it.
    if !super::codes::token_matches(state, Purpose::DeleteAccount, did, token).await? {
        return Err(XrpcError::named("InvalidToken", "Token is invalid"));
    }
    let (stored, p) = (account.password_hash.clone(), pass.to_owned());
    let ok = tokio::task::spawn_blocking(move || password::verify(&p, &stored))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    if !ok {
        return Err(XrpcError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "AuthenticationRequired",
            "Invalid did or password",
        ));
    }
    remove_account(state, did, Some(token.to_owned())).await
}

/// Deletes an account and everything it has here: repo, blobs, sessions, its past
/// firehose events (they carry its records), announcing `#account` deleted. With a
/// `token`, the owner's one-time code must match (deleteAccount); the admin passes none.
pub async fn remove_account(state: &AppState, did: &str, token: Option<String>) -> XrpcResult<()> {
    let did = did.to_owned();
    let blob_did = did.clone();
    let ended = state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            if let Some(token) = &token {
                consume_token(conn, Purpose::DeleteAccount, &did, token)?;
            }
            let ended = crate::storage::oauth::revoke_all(conn, &did, crate::storage::unix_now())?;
            repos::delete_repo(conn, outbox, &did)?;
            crate::storage::blobs::delete_all(conn, &did)?;
            db::delete_account(conn, &did)?;
            crate::storage::emit::account(outbox, &did, false, Some("deleted"));
            Ok::<_, XrpcError>(ended)
        })
        .await?;
    crate::pds::signed_in::forget_grants(state, ended);
    state.storage.blobs.remove_all(&blob_did)?;
    Ok(())
}
