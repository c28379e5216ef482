//! Sync reads (`com.atproto.sync.*`): repo exports, proofs, blocks, blobs and repo
//! listings, plus DID documents for our accounts.

use super::records::CommitMeta;
use super::AppState;
use crate::data::{parse_cid, Cid};
use crate::error::{XrpcError, XrpcResult};
use crate::identity::DidDocument;
use crate::repo::car::{write_car, CarWriter};
use crate::repo::Mst;
use crate::storage::accounts::{Account, AccountStatus};
use crate::storage::{blobs, repos};
use crate::syntax::Did;
use serde::Serialize;
use serde_json::json;

/// The account's DID document as the world sees it, or (if that cannot be fetched)
/// the one this server would publish. A did:web this box serves itself is always the
/// one it publishes: the box is that document's authority.
pub async fn did_document(state: &AppState, account: &Account) -> DidDocument {
    if let (Ok(did), false) = (
        Did::new(account.did.as_str()),
        hosts_did_web(&state.config, &account.did),
    ) {
        if let Ok(doc) = state.resolver.resolve_did(&did).await {
            return doc;
        }
    }
    let key = super::signing_key(account).map(|k| k.public_key());
    match key {
        Ok(key) => DidDocument::for_account(
            &account.did,
            &account.handle,
            &key,
            &state.config.public_url,
        ),
        Err(_) => DidDocument(json!({ "id": account.did })),
    }
}

/// Whether `did` is a `did:web` whose document this box serves: one on a host under our
/// handle domains (`did:web:alice.<hostname>`, made on the setup page).
pub fn hosts_did_web(config: &crate::config::Config, did: &str) -> bool {
    did.strip_prefix("did:web:")
        .is_some_and(|host| !host.contains(':') && config.is_local_handle(host))
}

/// A CAR on its way out: chunks as they are written, or the error that cut it short.
pub type CarStream = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>,
>;

/// How many chunks an export may write ahead of a slow reader.
const EXPORT_CHUNKS_AHEAD: usize = 4;
/// The size of each chunk sent.
const EXPORT_CHUNK: usize = 64 * 1024;

/// com.atproto.sync.getRepo: the repo as a CAR (all of it, or what changed after
/// `since`), streamed from the repo log as it is read: memory stays flat whatever the
/// repo's size (a few chunks ahead of the reader, and the block list), and at most
/// [`MAX_EXPORTS`](super::MAX_EXPORTS) exports run at once. Errors found before the
/// first byte (no such repo, a bad `since`) are answered as errors.
pub async fn get_repo(state: &AppState, did: &str, since: Option<String>) -> XrpcResult<CarStream> {
    let account = state.active_repo(did).await?;
    let since = since
        .map(|s| {
            crate::syntax::Tid::new(s.as_str())
                .map(|t| t.to_u64())
                .map_err(|e| XrpcError::invalid_request(format!("since: {e}")))
        })
        .transpose()?;
    let did = account.did.clone();
    let d = did.clone();
    let head = state
        .storage
        .read(move |conn| repos::head(conn, &d))
        .await?
        .ok_or_else(|| XrpcError::named("RepoNotFound", "repo has no commit"))?;
    let permit = state
        .exports
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| XrpcError::internal("the server is shutting down"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(EXPORT_CHUNKS_AHEAD);
    let storage = state.storage.clone();
    let log = storage.log.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let out = tx.clone();
        let exported = storage
            .read(move |conn| -> Result<(), crate::storage::StorageError> {
                let mut car = CarWriter::new(ChunkSender::new(out), &[head.commit])?;
                log.export_blocks(conn, &did, since, &head.commit, |cid, bytes| {
                    car.write_block(cid, bytes)
                        .map_err(crate::storage::StorageError::from)
                })?;
                car.finish()?;
                Ok(())
            })
            .await;
        if let Err(e) = exported {
            tracing::warn!("a repo export stopped: {e}");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async {
        rx.recv().await.map(|chunk| (chunk, rx))
    })))
}

/// Writes into fixed-size chunks sent down a channel (blocking: the export runs on a
/// blocking thread); a reader that went away stops the export.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn new(tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>) -> Self {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(EXPORT_CHUNK),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(EXPORT_CHUNK));
        self.tx
            .blocking_send(Ok(chunk.into()))
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// com.atproto.sync.getLatestCommit
pub async fn latest_commit(state: &AppState, did: &str) -> XrpcResult<CommitMeta> {
    let account = state.active_repo(did).await?;
    let head = state
        .storage
        .look_up(|conn| Ok::<_, XrpcError>(repos::head(conn, &account.did)?))?;
    let head = head.ok_or_else(|| XrpcError::named("RepoNotFound", "repo has no commit"))?;
    Ok(CommitMeta {
        cid: head.commit.to_string(),
        rev: head.rev.as_str().to_owned(),
    })
}

/// com.atproto.sync.getRecord: a CAR proving a record's presence (or absence): the
/// commit, the MST path and the record.
pub async fn record_proof(
    state: &AppState,
    did: &str,
    collection: &str,
    rkey: &str,
) -> XrpcResult<Vec<u8>> {
    let account = state.active_repo(did).await?;
    crate::syntax::Nsid::new(collection)?;
    crate::syntax::RecordKey::new(rkey)?;
    let (did, path) = (account.did.clone(), format!("{collection}/{rkey}"));
    let log = state.storage.log.clone();
    state
        .storage
        .read(move |conn| {
            let head = repos::head(conn, &did)?
                .ok_or_else(|| XrpcError::named("RepoNotFound", "repo has no commit"))?;
            let store = repos::blocks(&log, conn, &did);
            let mut mst = Mst::load(&store, head.data)?;
            let value = mst.get(&path)?;
            let mut blocks = mst.proof(&path)?;
            let mut extra: Vec<Cid> = vec![head.commit];
            extra.extend(value);
            blocks.extend(repos::get_blocks(&log, conn, &did, &extra)?);
            if value.is_none() {
                return Err(XrpcError::named(
                    "RecordNotFound",
                    format!("Could not locate record: at://{did}/{path}"),
                ));
            }
            Ok(write_car(&[head.commit], &blocks))
        })
        .await
}

/// com.atproto.sync.getBlocks
pub async fn get_blocks(state: &AppState, did: &str, cids: &[String]) -> XrpcResult<Vec<u8>> {
    let account = state.active_repo(did).await?;
    let cids: Vec<Cid> = cids
        .iter()
        .map(|c| parse_cid(c))
        .collect::<Result<_, _>>()
        .map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let did = account.did.clone();
    let log = state.storage.log.clone();
    state
        .storage
        .read(move |conn| {
            let blocks = repos::get_blocks(&log, conn, &did, &cids)?;
            if let Some(missing) = cids.iter().find(|c| !blocks.contains(c)) {
                return Err(XrpcError::named(
                    "BlockNotFound",
                    format!("Could not find block: {missing}"),
                ));
            }
            Ok(write_car(&[], &blocks))
        })
        .await
}

/// com.atproto.sync.listBlobs
pub async fn list_blobs(
    state: &AppState,
    did: &str,
    since: Option<String>,
    limit: usize,
    cursor: Option<String>,
) -> XrpcResult<BlobPage> {
    let account = state.active_repo(did).await?;
    let cursor = cursor
        .map(|c| parse_cid(&c).map(|c| c.to_bytes()))
        .transpose()
        .map_err(|e| XrpcError::invalid_request(format!("cursor: {e}")))?;
    let did = account.did.clone();
    let cids = state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(blobs::list_blobs(
                conn,
                &did,
                since.as_deref(),
                limit,
                cursor.as_deref(),
            )?)
        })
        .await?;
    let cursor = (cids.len() == limit)
        .then(|| cids.last().map(|c| c.to_string()))
        .flatten();
    Ok(BlobPage {
        cids: cids.iter().map(|c| c.to_string()).collect(),
        cursor,
    })
}

/// A page of listBlobs.
#[derive(Debug, Clone, Serialize)]
pub struct BlobPage {
    pub cids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A blob a record refers to that is not uploaded yet (listMissingBlobs).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MissingBlob {
    pub cid: String,
    pub record_uri: String,
}

/// A page of listMissingBlobs.
#[derive(Debug, Clone, Serialize)]
pub struct MissingBlobPage {
    pub blobs: Vec<MissingBlob>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// com.atproto.repo.listMissingBlobs
pub async fn missing_blobs(
    state: &AppState,
    did: &str,
    limit: usize,
    cursor: Option<String>,
) -> XrpcResult<MissingBlobPage> {
    let cursor = cursor
        .map(|c| parse_cid(&c).map(|c| c.to_bytes()))
        .transpose()
        .map_err(|e| XrpcError::invalid_request(format!("cursor: {e}")))?;
    let owner = did.to_owned();
    let rows = state
        .storage
        .read(move |conn| {
            Ok::<_, XrpcError>(blobs::missing_blobs(
                conn,
                &owner,
                limit,
                cursor.as_deref(),
            )?)
        })
        .await?;
    let cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(last, _)| last.to_string()))
        .flatten();
    let blobs = rows
        .iter()
        .map(|(cid, path)| MissingBlob {
            cid: cid.to_string(),
            record_uri: format!("at://{did}/{path}"),
        })
        .collect();
    Ok(MissingBlobPage { blobs, cursor })
}

/// A blob's bytes location and type, for com.atproto.sync.getBlob.
pub async fn blob(
    state: &AppState,
    did: &str,
    cid: &str,
) -> XrpcResult<(std::path::PathBuf, String, u64)> {
    let account = state.active_repo(did).await?;
    let cid = parse_cid(cid).map_err(|e| XrpcError::invalid_request(e.to_string()))?;
    let meta = state
        .storage
        .look_up(|conn| Ok::<_, XrpcError>(blobs::blob_meta(conn, &account.did, &cid)?))?;
    let (mime, size) = meta.ok_or_else(|| XrpcError::named("BlobNotFound", "Blob not found"))?;
    Ok((state.storage.blobs.path(&account.did, &cid), mime, size))
}

/// A repo's hosting status, as getRepoStatus and listRepos show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoStatus {
    pub did: String,
    /// The current commit (listRepos).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The current revision (absent for an inactive repo in getRepoStatus).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    pub active: bool,
    /// Why it is not active (`deactivated`, `takendown`); absent when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
}

impl RepoStatus {
    fn of(did: String, account: Option<&Account>) -> RepoStatus {
        // A repo with no account row is listed as active (as before: nothing says else).
        let status = account.map_or(AccountStatus::Active, |a| a.status);
        let active = status == AccountStatus::Active;
        RepoStatus {
            did,
            head: None,
            rev: None,
            active,
            status: (!active).then(|| status.as_str()),
        }
    }
}

/// com.atproto.sync.getRepoStatus
pub async fn repo_status(state: &AppState, did: &str) -> XrpcResult<RepoStatus> {
    let account = state.repo_account(did).await?;
    let head = state
        .storage
        .look_up(|conn| Ok::<_, XrpcError>(repos::head(conn, &account.did)?))?;
    let mut out = RepoStatus::of(account.did.clone(), Some(&account));
    if let (Some(head), AccountStatus::Active) = (head, account.status) {
        out.rev = Some(head.rev.as_str().to_owned());
    }
    Ok(out)
}

/// A page of com.atproto.sync.listRepos.
#[derive(Debug, Clone, Serialize)]
pub struct RepoPage {
    pub repos: Vec<RepoStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// com.atproto.sync.listRepos
pub async fn list_repos(
    state: &AppState,
    limit: usize,
    cursor: Option<String>,
) -> XrpcResult<RepoPage> {
    let rows = state
        .storage
        .read(move |conn| {
            let heads = repos::list_repos(conn, limit, cursor.as_deref())?;
            let mut out = Vec::with_capacity(heads.len());
            for (did, head) in heads {
                let account = crate::storage::accounts::by_did(conn, &did)?;
                out.push((did, head, account));
            }
            Ok::<_, XrpcError>(out)
        })
        .await?;
    let cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(did, _, _)| did.clone()))
        .flatten();
    let repos = rows
        .into_iter()
        .map(|(did, head, account)| RepoStatus {
            head: Some(head.commit.to_string()),
            rev: Some(head.rev.as_str().to_owned()),
            ..RepoStatus::of(did, account.as_ref())
        })
        .collect();
    Ok(RepoPage { repos, cursor })
}
