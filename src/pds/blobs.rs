//! Blobs: uploads, and the clean-up of blobs no record came to reference.

use super::AppState;
use crate::auth::Session;
use crate::data::Cid;
use crate::error::{XrpcError, XrpcResult};
use crate::storage::blobs::{self as db, StoredBlob, UploadError};
use crate::storage::unix_now;
use std::time::Duration;

/// Unreferenced blobs are kept this long (a client uploads, then writes the record).
pub const UNREFERENCED_GRACE_SECS: i64 = 60 * 60;

/// com.atproto.repo.uploadBlob: streams the body to disk (durably), then records it.
pub async fn upload<S, E>(
    state: &AppState,
    session: &Session,
    body: S,
    content_type: Option<&str>,
) -> XrpcResult<UploadedBlob>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mime = content_type.unwrap_or("application/octet-stream");
    session.require(|p| p.allows_blob(mime), || format!("blob:{mime}"))?;
    let account = state.repo_account(&session.did).await?;
    let limit = state.config.blob_upload_limit;
    let blob: StoredBlob = state
        .storage
        .blobs
        .store(&account.did, body, limit, content_type)
        .await
        .map_err(|e| match e {
            UploadError::TooLarge(n) => XrpcError::too_large(format!(
                "blob is larger than this server's limit of {n} bytes"
            )),
            UploadError::Body(m) => {
                XrpcError::invalid_request(format!("could not read the upload: {m}"))
            }
            UploadError::Storage(s) => s.into(),
        })?;
    let (did, stored) = (account.did.clone(), blob.clone());
    state
        .storage
        .write(move |conn| Ok::<_, XrpcError>(db::insert_blob(conn, &did, &stored, unix_now())?))
        .await?;
    Ok(UploadedBlob {
        blob: BlobView {
            kind: "blob",
            link: Link {
                cid: blob.cid.to_string(),
            },
            mime_type: blob.mime_type,
            size: blob.size,
        },
    })
}

/// uploadBlob's output: the blob reference a record then carries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UploadedBlob {
    pub blob: BlobView,
}

/// A blob reference as the data model writes it in JSON.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobView {
    #[serde(rename = "$type")]
    pub kind: &'static str,
    #[serde(rename = "ref")]
    pub link: Link,
    pub mime_type: String,
    pub size: u64,
}

/// A CID link in JSON (`{"$link": ...}`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Link {
    #[serde(rename = "$link")]
    pub cid: String,
}

/// Removes blobs that no record references and that were uploaded before `cutoff`
/// (unix seconds). Returns how many were removed.
pub async fn collect_garbage(state: &AppState, cutoff: i64) -> XrpcResult<usize> {
    let removed: Vec<(String, Cid)> = state
        .storage
        .write(move |conn| {
            // Chosen and forgotten in one transaction, so a record committing at the same
            // time either sees the blob (and keeps it) or finds it gone and says so.
            let expired = db::expired_unreferenced(conn, cutoff)?;
            for (did, cid) in &expired {
                db::delete_blob(conn, did, cid)?;
            }
            Ok::<_, XrpcError>(expired)
        })
        .await?;
    for (did, cid) in &removed {
        state.storage.blobs.remove(did, cid)?;
    }
    Ok(removed.len())
}

/// Runs [`collect_garbage`] every ten minutes, for as long as the server runs, and
/// forgets expired sessions, OAuth grants and one-time codes.
pub async fn garbage_collector(state: super::Ctx) {
    loop {
        tokio::time::sleep(Duration::from_secs(600)).await;
        let now = unix_now();
        let expired = state
            .storage
            .write(move |conn| {
                let codes_before = now - crate::pds::accounts::TOKEN_TTL_SECS;
                // OAuth grants are kept an access token's lifetime past their end
                // (a restart must still know a revoked app's last token is dead).
                let grants_before = now - crate::auth::oauth::ACCESS_TTL_SECS;
                crate::storage::oauth::delete_expired(conn, grants_before)?;
                Ok::<_, XrpcError>(crate::storage::accounts::delete_expired_tokens(
                    conn,
                    now,
                    codes_before,
                )?)
            })
            .await;
        if let Err(e) = expired {
            tracing::warn!("forgetting expired tokens failed: {e}");
        }
        match collect_garbage(&state, unix_now() - UNREFERENCED_GRACE_SECS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("removed {n} unreferenced blobs"),
            Err(e) => tracing::warn!("blob clean-up failed: {e}"),
        }
    }
}
