//! com.atproto.repo.importRepo: bringing a repo exported elsewhere (account migration).
//!
//! The CAR is verified in full (every block hashed, the tree canonical, every record
//! valid atproto data), then the records are committed afresh under this server's
//! signature: the same records give the same MST root, so the data is unchanged while
//! the commit is one this server can vouch for. Blobs the records reference are listed
//! by listMissingBlobs until uploaded.

use super::records::blob_refs;
use super::{signing_key, AppState};
use crate::auth::Session;
use crate::data::decode_cbor;
use crate::error::{XrpcError, XrpcResult};
use crate::repo::car::read_car;
use crate::repo::verify::verify_repo;
use crate::repo::writes::{apply_writes, PreparedWrite, Write};
use crate::repo::BlockMap;
use crate::storage::{blobs, repos};
use crate::syntax::{Did, Nsid, RecordKey};

/// Imports the repo CAR in `car` (a file the request body was streamed into) into the
/// session's account. Parsing, verifying and re-committing run off the async runtime,
/// one import at a time: a CAR's blocks are held in memory while it is checked.
pub async fn import_repo(
    state: &AppState,
    session: &Session,
    car: std::fs::File,
) -> XrpcResult<()> {
    let account = state.repo_account(&session.did).await?;
    let _one_at_a_time = state
        .imports
        .acquire()
        .await
        .map_err(|_| XrpcError::internal("the server is shutting down"))?;
    let key = signing_key(&account)?;
    let rev = state.tids.next_tid();
    let did = account.did.clone();
    let (commit, refs, records) =
        tokio::task::spawn_blocking(move || recommit(car, &did, &key, rev))
            .await
            .map_err(|e| XrpcError::internal(e.to_string()))??;
    let job_did = account.did.clone();
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            let active = crate::storage::accounts::by_did(conn, &job_did)?
                .is_some_and(|a| a.status == crate::storage::accounts::AccountStatus::Active);
            let old = repos::head(conn, &job_did)?;
            let rev_ok = old.as_ref().is_none_or(|h| h.rev < commit.rev);
            if !rev_ok {
                return Err(XrpcError::invalid_request(
                    "the server clock is behind the repo's current revision; try again",
                ));
            }
            repos::delete_repo(conn, outbox, &job_did)?;
            repos::save_commit(conn, outbox, &job_did, None, &commit)?;
            for (path, cids) in &refs {
                blobs::set_record_blobs(conn, &job_did, path, cids, commit.rev.as_str())?;
            }
            // Relays learn of the new repo state: at once for an active account (a
            // repo replaced in place); for one still moving here (deactivated) at
            // activation, as the reference PDS, which emits nothing on import.
            if active {
                crate::storage::emit::sync_commit(outbox, &job_did, &commit);
            }
            Ok(())
        })
        .await?;
    tracing::info!(did = %account.did, records, "repo imported");
    Ok(())
}

/// Blob references of each imported record, by path.
type RecordBlobs = Vec<(String, Vec<crate::data::Cid>)>;

/// Reads and verifies the CAR, and commits its records afresh under `key` (blocking:
/// CPU-bound, and the whole repo in memory). Returns the commit, each record's blob
/// references, and the number of records.
fn recommit(
    car: std::fs::File,
    did: &str,
    key: &crate::crypto::Keypair,
    rev: crate::syntax::Tid,
) -> XrpcResult<(crate::repo::writes::CommitData, RecordBlobs, usize)> {
    let bad = |m: String| XrpcError::invalid_request(format!("importRepo: {m}"));
    let (roots, blocks) = read_car(std::io::BufReader::new(car)).map_err(|e| bad(e.to_string()))?;
    let [root] = roots[..] else {
        return Err(bad(format!(
            "a repo CAR has exactly one root, this one has {}",
            roots.len()
        )));
    };
    let summary = verify_repo(&blocks, root, None).map_err(|e| bad(e.to_string()))?;
    if summary.commit.did != did {
        return Err(bad(format!(
            "the CAR is the repo of {}, not of {did}",
            summary.commit.did
        )));
    }
    let mut writes = Vec::with_capacity(summary.records.len());
    let mut refs = Vec::with_capacity(summary.records.len());
    for (path, cid) in &summary.records {
        let bytes = blocks
            .get(cid)
            .ok_or_else(|| bad(format!("record {path} is missing")))?;
        let record = decode_cbor(bytes).map_err(|e| bad(format!("record {path}: {e}")))?;
        let (collection, rkey) = path
            .split_once('/')
            .expect("verified keys are collection/rkey");
        let collection = Nsid::new(collection).map_err(|e| bad(e.to_string()))?;
        let rkey = RecordKey::new(rkey).map_err(|e| bad(e.to_string()))?;
        let mut found = Vec::new();
        blob_refs(&record, &mut found);
        refs.push((
            path.clone(),
            found.into_iter().map(|b| b.cid).collect::<Vec<_>>(),
        ));
        writes.push(PreparedWrite {
            write: Write::Create {
                collection,
                rkey,
                record,
            },
            swap_record: None,
        });
    }
    drop(blocks);
    let did = Did::new(did)?;
    let commit = apply_writes(&BlockMap::new(), &did, None, &writes, key, rev)?;
    if commit.data != summary.commit.data {
        return Err(XrpcError::internal(
            "re-committing the imported records gave a different tree",
        ));
    }
    Ok((commit, refs, summary.records.len()))
}
