//! Records: the writes (createRecord, putRecord, deleteRecord, applyWrites) and the
//! reads (getRecord, listRecords, describeRepo: in `read`).
//!
//! A write flows: lexicon check and blob checks here, then one writer job that reads
//! the repo head, applies the writes in the repo core, and saves the commit, the record
//! index and blob references — acknowledged once durable.

mod read;

pub use read::{
    describe_repo, get_record, list_records, since_rev, LocalRecord, LocalRecords, RecordPage,
    RecordView, RepoDescription,
};

use super::{signing_key, AppState};
use crate::auth::scopes::RepoAction;
use crate::auth::Session;
pub use crate::data::{blob_refs, BlobRef};
use crate::data::{ipld_from_json, Cid, Ipld};
use crate::error::{XrpcError, XrpcResult};
use crate::lexicon::Validation;
use crate::repo::writes::{apply_writes, CommitData, PreparedWrite, Write, WriteError};
use crate::storage::accounts::{self, Account, AccountStatus};
use crate::storage::{blobs, repos};
use crate::syntax::{Did, Nsid, RecordKey, Tid};
use serde_json::{json, Value};

/// One write as requested by a client, before checks.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub action: WriteAction,
    pub collection: String,
    pub rkey: Option<String>,
    pub record: Option<Value>,
    /// `Some(None)`: the record must not exist; `Some(Some(cid))`: it must be `cid`.
    pub swap_record: Option<Option<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteAction {
    Create,
    Update,
    Delete,
}

/// The largest record, in bytes of DAG-CBOR (`specs/data-model`: 1 MiB).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// The outcome of a batch: the commit (none when nothing changed) and each write's
/// result, in the order given.
pub struct WriteOutcome {
    pub commit: Option<CommitData>,
    pub results: Vec<WriteResult>,
}

/// What one write did.
#[derive(Debug, Clone)]
pub struct WriteResult {
    pub action: WriteAction,
    /// `at://<did>/<collection>/<rkey>`.
    pub uri: String,
    /// The record's CID (creates and updates).
    pub cid: Option<Cid>,
    /// Whether the record was checked against its lexicon (absent for deletes).
    pub validation: Option<Validation>,
}

/// A write that passed the checks that need no database.
struct CheckedWrite {
    write: PreparedWrite,
    validation: Option<Validation>,
    blobs: Vec<BlobRef>,
    /// The record's CID (creates and updates).
    cid: Option<Cid>,
}

/// Checks a record against its lexicon; `validate` is the client's flag.
fn validate_record(
    state: &AppState,
    collection: &Nsid,
    record: &Ipld,
    validate: Option<bool>,
) -> XrpcResult<Option<Validation>> {
    if validate == Some(false) {
        return Ok(None);
    }
    let result = state
        .lexicons
        .validate_record(collection, record)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid {collection} record: {e}")))?;
    if result == Validation::Unknown && validate == Some(true) {
        return Err(XrpcError::invalid_request(format!(
            "Lexicon not found: {collection} (pass validate=false to store it anyway)"
        )));
    }
    Ok(Some(result))
}

fn check_rkey(state: &AppState, collection: &Nsid, rkey: &RecordKey) -> XrpcResult<()> {
    match state.lexicons.record_key_type(collection.as_str()) {
        Some("tid") if Tid::new(rkey.as_str()).is_err() => Err(XrpcError::invalid_request(
            format!("{collection} records use TID record keys; {rkey:?} is not one"),
        )),
        Some(key) if key.starts_with("literal:") && &key["literal:".len()..] != rkey.as_str() => {
            Err(XrpcError::invalid_request(format!(
                "{collection} records have the record key {:?}",
                &key["literal:".len()..]
            )))
        }
        _ => Ok(()),
    }
}

/// A create's or update's record: given its `$type` if it has none, read as atproto
/// data, checked against its lexicon (and its record key when valid); with the blobs
/// it refers to.
fn check_record(
    state: &AppState,
    action: WriteAction,
    collection: Nsid,
    rkey: RecordKey,
    mut json: Value,
    validate: Option<bool>,
) -> XrpcResult<(Write, Option<Validation>, Vec<BlobRef>)> {
    if let Some(obj) = json.as_object_mut() {
        obj.entry("$type")
            .or_insert_with(|| json!(collection.as_str()));
    }
    let record = ipld_from_json(&json)
        .map_err(|e| XrpcError::invalid_request(format!("invalid record: {e}")))?;
    let validation = validate_record(state, &collection, &record, validate)?;
    if validation == Some(Validation::Valid) {
        check_rkey(state, &collection, &rkey)?;
    }
    let mut refs = Vec::new();
    blob_refs(&record, &mut refs);
    let write = if action == WriteAction::Create {
        Write::Create {
            collection,
            rkey,
            record,
        }
    } else {
        Write::Update {
            collection,
            rkey,
            record,
        }
    };
    Ok((write, validation, refs))
}

/// The record's CID (none for a delete); refuses a record over atproto's 1 MiB, which
/// relays would refuse in a commit.
fn record_cid(write: &Write) -> XrpcResult<Option<Cid>> {
    match write {
        Write::Create { record, .. } | Write::Update { record, .. } => {
            let bytes = crate::data::encode_cbor(record);
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(XrpcError::too_large(format!(
                    "the record is {} bytes of DAG-CBOR; a record is at most {MAX_RECORD_BYTES}",
                    bytes.len()
                )));
            }
            Ok(Some(crate::data::cid_for_cbor(&bytes)))
        }
        Write::Delete { .. } => Ok(None),
    }
}

/// Turns client writes into checked repo writes.
fn prepare(
    state: &AppState,
    requests: Vec<WriteRequest>,
    validate: Option<bool>,
) -> XrpcResult<Vec<CheckedWrite>> {
    let mut out = Vec::with_capacity(requests.len());
    let mut paths = std::collections::HashSet::new();
    for req in requests {
        let collection = Nsid::new(req.collection.as_str())
            .map_err(|e| XrpcError::invalid_request(e.to_string()))?;
        let rkey =
            match (&req.rkey, req.action) {
                (Some(r), _) => RecordKey::new(r.as_str())
                    .map_err(|e| XrpcError::invalid_request(e.to_string()))?,
                (None, WriteAction::Create) => RecordKey::new(state.tids.next_tid().into_string())
                    .expect("TIDs are record keys"),
                (None, _) => {
                    return Err(XrpcError::invalid_request(
                        "rkey is required for updates and deletes",
                    ))
                }
            };
        // One write per record in a batch: two would make one of them meaningless (and
        // "unchanged" is judged before the batch).
        if !paths.insert(format!("{collection}/{rkey}")) {
            return Err(XrpcError::invalid_request(format!(
                "{collection}/{rkey} is written twice in one batch: one write per record"
            )));
        }
        let swap_record = match req.swap_record {
            None => None,
            Some(None) => Some(None),
            Some(Some(c)) => {
                Some(Some(crate::data::parse_cid(&c).map_err(|e| {
                    XrpcError::invalid_request(format!("swapRecord: {e}"))
                })?))
            }
        };
        let (write, validation, blobs) = match req.action {
            WriteAction::Delete => (Write::Delete { collection, rkey }, None, Vec::new()),
            action => {
                let json = req
                    .record
                    .ok_or_else(|| XrpcError::invalid_request("record is required"))?;
                check_record(state, action, collection, rkey, json, validate)?
            }
        };
        let cid = record_cid(&write)?;
        out.push(CheckedWrite {
            write: PreparedWrite { write, swap_record },
            validation,
            blobs,
            cid,
        });
    }
    Ok(out)
}

/// Refuses writes to a deactivated or taken-down account.
fn check_writable(account: &Account) -> XrpcResult<()> {
    match account.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Deactivated => Err(XrpcError::named(
            "AccountDeactivated",
            "the account is deactivated; activate it first",
        )),
        AccountStatus::Takendown => Err(XrpcError::named(
            "AccountTakedown",
            "the account has been taken down",
        )),
    }
}

/// Applies a batch of writes to the session's repo as one commit.
pub async fn write(
    state: &AppState,
    session: &Session,
    repo: &str,
    requests: Vec<WriteRequest>,
    validate: Option<bool>,
    swap_commit: Option<String>,
) -> XrpcResult<WriteOutcome> {
    // Tell the writer a write is coming, so concurrent ones share a commit.
    let intent = state.storage.writer.intent();
    // Writers name their own repo, nearly always by DID: then the account is read inside
    // the writer job, on the writer's connection (no read transaction and no thread
    // hand-off of its own). A handle is resolved first.
    let did = if repo == session.did {
        session.did.clone()
    } else {
        let account = state.repo_account(repo).await?;
        if account.did != session.did {
            return Err(XrpcError::forbidden("you can only write to your own repo"));
        }
        account.did
    };
    if requests.is_empty() {
        return Err(XrpcError::invalid_request("no writes given"));
    }
    for r in &requests {
        let (action, word) = match r.action {
            WriteAction::Create => (RepoAction::Create, "create"),
            WriteAction::Update => (RepoAction::Update, "update"),
            WriteAction::Delete => (RepoAction::Delete, "delete"),
        };
        session.require(
            |p| p.allows_repo(&r.collection, action),
            || format!("repo:{}?action={word}", r.collection),
        )?;
    }
    if requests.len() > 200 {
        return Err(XrpcError::invalid_request(
            "too many writes: 200 at most per call",
        ));
    }
    let swap_commit = swap_commit
        .map(|c| {
            crate::data::parse_cid(&c)
                .map_err(|e| XrpcError::invalid_request(format!("swapCommit: {e}")))
        })
        .transpose()?;
    let single_delete = requests.len() == 1 && requests[0].action == WriteAction::Delete;
    let job = WriteJob {
        repo_did: Did::new(did.as_str())?,
        did,
        prepared: prepare(state, requests, validate)?,
        swap_commit,
        single_delete,
        // The rev must follow the repo's current rev, which only the job can see: a
        // fresh TID now, stepped past the head inside the job if the clock is behind.
        tid_now: state.tids.next_tid(),
    };
    let done = state
        .storage
        .writer
        .write_with_events(move |conn, outbox| commit_writes(conn, outbox, &job));
    drop(intent);
    done.await
}

/// A checked batch of writes, for the writer thread.
struct WriteJob {
    did: String,
    repo_did: Did,
    prepared: Vec<CheckedWrite>,
    swap_commit: Option<Cid>,
    /// deleteRecord of a record that is not there succeeds with no commit.
    single_delete: bool,
    tid_now: Tid,
}

impl WriteJob {
    /// The new commit's rev: now, or just past the head's if the clock is behind it.
    fn rev_after(&self, head: Option<&Tid>) -> Tid {
        match head {
            Some(h) if h >= &self.tid_now => Tid::from_parts(
                h.timestamp_micros() + 1,
                (self.tid_now.to_u64() & 0x3ff) as u16,
            ),
            _ => self.tid_now.clone(),
        }
    }

    fn result(&self, w: &CheckedWrite, cid: Option<Cid>) -> WriteResult {
        let write = &w.write.write;
        WriteResult {
            action: match write {
                Write::Create { .. } => WriteAction::Create,
                Write::Update { .. } => WriteAction::Update,
                Write::Delete { .. } => WriteAction::Delete,
            },
            uri: format!("at://{}/{}", self.did, write.path()),
            cid,
            validation: w.validation,
        }
    }
}

/// The writer job of [`write`]: on the writer's connection, inside the batch's
/// transaction: the account may write, the swap holds, the blobs are here; then one
/// signed commit for the writes that change something, its blocks, index and event.
fn commit_writes(
    conn: &rusqlite::Connection,
    outbox: &mut crate::storage::writer::Outbox,
    job: &WriteJob,
) -> XrpcResult<WriteOutcome> {
    let did = job.did.as_str();
    let account = accounts::by_did(conn, did)?
        .ok_or_else(|| XrpcError::named("RepoNotFound", format!("could not find repo {did}")))?;
    check_writable(&account)?;
    let key = signing_key(&account)?;
    let head = repos::head(conn, did)?;
    if let Some(expected) = job.swap_commit {
        if head.as_ref().map(|h| h.commit) != Some(expected) {
            return Err(XrpcError::named(
                "InvalidSwap",
                "the repo has moved on from swapCommit",
            ));
        }
    }
    check_blob_refs(conn, did, &job.prepared)?;
    let unchanged = unchanged_updates(conn, did, &job.prepared)?;
    let writes: Vec<PreparedWrite> = job
        .prepared
        .iter()
        .zip(&unchanged)
        .filter(|(_, same)| !**same)
        .map(|(w, _)| w.write.clone())
        .collect();
    if writes.is_empty() {
        let results = job.prepared.iter().map(|w| job.result(w, w.cid)).collect();
        return Ok(WriteOutcome {
            commit: None,
            results,
        });
    }
    let rev = job.rev_after(head.as_ref().map(|h| &h.rev));
    let blocks = repos::blocks(&outbox.log, conn, did);
    let commit = match apply_writes(&blocks, &job.repo_did, head.as_ref(), &writes, &key, rev) {
        Ok(c) => c,
        Err(WriteError::NotFound(_)) if job.single_delete => {
            return Ok(WriteOutcome {
                commit: None,
                results: Vec::new(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    repos::save_commit(conn, outbox, did, head.as_ref(), &commit)?;
    crate::storage::emit::commit(outbox, did, &commit);
    let mut ops = commit.ops.iter();
    let mut results = Vec::with_capacity(job.prepared.len());
    for (checked, same) in job.prepared.iter().zip(&unchanged) {
        let cid = if *same {
            checked.cid
        } else {
            let op = ops.next().expect("one op per changing write");
            let cids: Vec<Cid> = checked.blobs.iter().map(|b| b.cid).collect();
            blobs::set_record_blobs(conn, did, &op.path, &cids, commit.rev.as_str())?;
            op.cid
        };
        results.push(job.result(checked, cid));
    }
    Ok(WriteOutcome {
        commit: Some(commit),
        results,
    })
}

/// Every blob a record refers to must be uploaded, with the type and size it claims.
fn check_blob_refs(
    conn: &rusqlite::Connection,
    did: &str,
    prepared: &[CheckedWrite],
) -> XrpcResult<()> {
    for blob in prepared.iter().flat_map(|w| &w.blobs) {
        let cid = blob.cid;
        let (stored_mime, stored_size) = blobs::blob_meta(conn, did, &cid)?.ok_or_else(|| {
            XrpcError::invalid_request(format!("Could not find blob: {cid}; upload it first"))
        })?;
        if blob.mime_type.as_deref().is_some_and(|m| m != stored_mime)
            || blob.size.is_some_and(|s| s != stored_size as i128)
        {
            return Err(XrpcError::invalid_request(format!(
                "blob {cid} is {stored_mime}, {stored_size} bytes: the record says otherwise"
            )));
        }
    }
    Ok(())
}

/// Which writes are updates to exactly the record already stored: they change nothing,
/// so they make no commit and no event (as the reference PDS does), though the caller
/// still gets their result. (A batch writes each record once: see `prepare`.)
fn unchanged_updates(
    conn: &rusqlite::Connection,
    did: &str,
    prepared: &[CheckedWrite],
) -> XrpcResult<Vec<bool>> {
    let mut unchanged = Vec::with_capacity(prepared.len());
    for w in prepared {
        let same = match &w.write.write {
            Write::Update {
                collection, rkey, ..
            } => {
                w.cid.is_some()
                    && repos::record_cid(conn, did, collection.as_str(), rkey.as_str())? == w.cid
            }
            _ => false,
        };
        unchanged.push(same);
    }
    Ok(unchanged)
}

/// A commit's CID and rev (`com.atproto.repo.defs#commitMeta`), as write responses and
/// getLatestCommit carry it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitMeta {
    pub cid: String,
    pub rev: String,
}

pub fn commit_meta(commit: &CommitData) -> CommitMeta {
    CommitMeta {
        cid: commit.commit_cid.to_string(),
        rev: commit.rev.as_str().to_owned(),
    }
}
