//! An account's life after creation: its status, deactivation and reactivation (with
//! the firehose `#account` events relays need), and deletion of everything it has here.

use super::codes::consume_token;
use crate::auth::password;
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::accounts::{self as db, AccountStatus};
use crate::storage::repos;
use crate::syntax::Datetime;
use serde_json::{json, Value};

/// com.atproto.server.checkAccountStatus
pub async fn check_account_status(state: &AppState, session: &Session) -> XrpcResult<Value> {
    let account = state.repo_account(&session.did).await?;
    let did = account.did.clone();
    let blocks = state.storage.log.block_count(&did);
    let (head, records, blobs) = state
        .storage
        .read(move |conn| {
            let head = repos::head(conn, &did)?;
            let records = repos::record_count(conn, &did)?;
            let blobs =
                crate::storage::blobs::list_blobs(conn, &did, None, usize::MAX >> 1, None)?.len();
            Ok::<_, XrpcError>((head, records, blobs))
        })
        .await?;
    let head = head.ok_or_else(|| XrpcError::internal("account has no repo"))?;
    Ok(json!({
        "activated": account.status == AccountStatus::Active,
        "validDid": true,
        "repoCommit": head.commit.to_string(),
        "repoRev": head.rev.as_str(),
        "repoBlocks": blocks,
        "indexedRecords": records,
        "privateStateValues": 0,
        "expectedBlobs": blobs,
        "importedBlobs": blobs,
    }))
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
    if !super::codes::token_matches(state, "delete_account", did, token).await? {
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
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            if let Some(token) = &token {
                consume_token(conn, "delete_account", &did, token)?;
            }
            repos::delete_repo(conn, outbox, &did)?;
            crate::storage::blobs::delete_all(conn, &did)?;
            db::delete_account(conn, &did)?;
            crate::storage::emit::account(outbox, &did, false, Some("deleted"));
            Ok::<_, XrpcError>(())
        })
        .await?;
    state.storage.blobs.remove_all(&blob_did)?;
    Ok(())
}
