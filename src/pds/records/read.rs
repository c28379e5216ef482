//! The repo's read side: getRecord, listRecords and describeRepo (taken-down and
//! deactivated repos are not served: `RepoTakendown`, `RepoDeactivated`).

use crate::data::{decode_cbor, ipld_to_json};
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::repos;
use crate::syntax::Nsid;
use serde_json::Value;

/// com.atproto.repo.getRecord
pub async fn get_record(
    state: &AppState,
    repo: &str,
    collection: &str,
    rkey: &str,
    cid: Option<&str>,
) -> XrpcResult<RecordView> {
    let account = state.active_repo(repo).await?;
    let log = &state.storage.log;
    let found = state.storage.look_up(|conn| {
        Ok::<_, XrpcError>(repos::get_record(
            log,
            conn,
            &account.did,
            collection,
            rkey,
        )?)
    })?;
    let not_found = || {
        XrpcError::named(
            "RecordNotFound",
            format!(
                "Could not locate record: at://{}/{collection}/{rkey}",
                account.did
            ),
        )
    };
    let (record_cid, bytes) = found.ok_or_else(not_found)?;
    if cid.is_some_and(|c| c != record_cid.to_string()) {
        return Err(not_found());
    }
    let value = decode_cbor(&bytes)
        .map_err(|e| XrpcError::internal(format!("stored record is unreadable: {e}")))?;
    Ok(RecordView {
        uri: format!("at://{}/{collection}/{rkey}", account.did),
        cid: record_cid.to_string(),
        value: ipld_to_json(&value),
    })
}

/// A record as getRecord and listRecords show it: its URI, CID and value as JSON.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordView {
    pub uri: String,
    pub cid: String,
    pub value: Value,
}

/// A page of listRecords.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordPage {
    pub records: Vec<RecordView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// What describeRepo answers.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoDescription {
    pub handle: String,
    pub did: String,
    pub did_doc: crate::identity::DidDocument,
    pub collections: Vec<String>,
    pub handle_is_correct: bool,
}

/// com.atproto.repo.listRecords
pub async fn list_records(
    state: &AppState,
    repo: &str,
    collection: &str,
    limit: usize,
    cursor: Option<String>,
    reverse: bool,
) -> XrpcResult<RecordPage> {
    let account = state.active_repo(repo).await?;
    Nsid::new(collection)?;
    let (did, c) = (account.did.clone(), collection.to_owned());
    let log = state.storage.log.clone();
    let rows = state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(repos::list_records(
                &log,
                conn,
                &did,
                &c,
                limit,
                cursor.as_deref(),
                reverse,
            )?)
        })
        .await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|(rkey, _, _)| rkey.clone()))
        .flatten();
    let records = rows
        .into_iter()
        .map(|(rkey, cid, bytes)| RecordView {
            uri: format!("at://{}/{collection}/{rkey}", account.did),
            cid: cid.to_string(),
            value: decode_cbor(&bytes)
                .map(|v| ipld_to_json(&v))
                .unwrap_or(Value::Null),
        })
        .collect();
    Ok(RecordPage {
        records,
        cursor: next,
    })
}

/// com.atproto.repo.describeRepo
pub async fn describe_repo(state: &AppState, repo: &str) -> XrpcResult<RepoDescription> {
    let account = state.active_repo(repo).await?;
    let collections = state
        .storage
        .look_up(|conn| Ok::<_, XrpcError>(repos::collections(conn, &account.did)?))?;
    let doc = crate::pds::sync::did_document(state, &account).await;
    let handle_is_correct = doc.handle().as_deref() == Some(account.handle.as_str());
    Ok(RepoDescription {
        handle: account.handle,
        did: account.did,
        did_doc: doc,
        collections,
        handle_is_correct,
    })
}

/// One of the account's own records, as read-after-write merges it into an AppView's
/// answer.
#[derive(Debug, Clone)]
pub struct LocalRecord {
    pub uri: String,
    pub cid: String,
    pub indexed_at: String,
    pub value: Value,
}

/// The account's records newer than the AppView has seen (at most ten, as the
/// reference reads): its profile if it changed, and its new posts, oldest first.
#[derive(Debug, Clone, Default)]
pub struct LocalRecords {
    pub count: usize,
    pub profile: Option<LocalRecord>,
    pub posts: Vec<LocalRecord>,
}

impl LocalRecords {
    /// Milliseconds since the oldest of them was written: how far the AppView lags.
    pub fn lag_ms(&self, now_ms: i64) -> Option<i64> {
        self.profile
            .iter()
            .chain(&self.posts)
            .filter_map(|r| crate::syntax::Datetime::new(&r.indexed_at).ok())
            .map(|d| d.to_utc().timestamp_millis())
            .min()
            .map(|oldest| (now_ms - oldest).max(0))
    }
}

/// The records `did` wrote after `rev` (see [`LocalRecords`]).
pub async fn since_rev(state: &AppState, did: &str, rev: &str) -> XrpcResult<LocalRecords> {
    let (d, r) = (did.to_owned(), rev.to_owned());
    let log = state.storage.log.clone();
    let rows = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(repos::records_since(&log, conn, &d, &r, 10)?))
        .await?;
    let mut local = LocalRecords {
        count: rows.len(),
        ..Default::default()
    };
    for (collection, rkey, cid, bytes, indexed_at) in rows {
        let is_profile = collection == "app.bsky.actor.profile" && rkey == "self";
        if !is_profile && collection != "app.bsky.feed.post" {
            continue;
        }
        let value = decode_cbor(&bytes)
            .map_err(|e| XrpcError::internal(format!("stored record is unreadable: {e}")))?;
        let record = LocalRecord {
            uri: format!("at://{did}/{collection}/{rkey}"),
            cid: cid.to_string(),
            indexed_at,
            value: ipld_to_json(&value),
        };
        if is_profile {
            local.profile = Some(record);
        } else {
            local.posts.push(record);
        }
    }
    Ok(local)
}
