//! Identity operations on an account's did:plc: the signature flow the official tools
//! use (request a code, sign an operation, submit it — for migration and key changes),
//! and adding a user-held recovery key above the server's.

use super::accounts::{consume_token, request_token, Purpose};
use super::{signing_key, AppState};
use crate::auth::Session;
use crate::crypto::{KeyType, Keypair};
use crate::error::{XrpcError, XrpcResult};
use crate::identity::plc::{PlcOperation, PlcService};
use serde_json::Value;
use std::collections::BTreeMap;

const PURPOSE: Purpose = Purpose::PlcOperation;

fn upstream(e: impl std::fmt::Display) -> XrpcError {
    XrpcError::upstream(format!("PLC directory: {e}"))
}

/// com.atproto.identity.requestPlcOperationSignature: issues the code (emailed or
/// shown on the box) that signPlcOperation requires.
pub async fn request_signature(state: &AppState, session: &Session) -> XrpcResult<()> {
    request_token(state, &session.did, PURPOSE).await
}

/// The fields a signPlcOperation call may set.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationChanges {
    pub token: Option<String>,
    pub rotation_keys: Option<Vec<String>>,
    pub also_known_as: Option<Vec<String>>,
    pub verification_methods: Option<BTreeMap<String, String>>,
    pub services: Option<BTreeMap<String, PlcService>>,
}

async fn last_operation(state: &AppState, did: &str) -> XrpcResult<PlcOperation> {
    if !did.starts_with("did:plc:") {
        return Err(XrpcError::invalid_request(
            "this account's DID is not a did:plc",
        ));
    }
    let last = state.plc.last_operation(did).await.map_err(upstream)?;
    let ours = state.secrets.plc_rotation_key.public_key().to_did_key();
    if !last.rotation_keys.contains(&ours) {
        return Err(XrpcError::invalid_request("this server's rotation key is not among the DID's rotation keys: it cannot sign for it"));
    }
    Ok(last)
}

/// com.atproto.identity.signPlcOperation: the next operation, signed by this server.
pub async fn sign_operation(
    state: &AppState,
    session: &Session,
    changes: OperationChanges,
) -> XrpcResult<SignedOperation> {
    let token = changes.token.clone().ok_or_else(|| {
        XrpcError::invalid_request("a code from requestPlcOperationSignature is required")
    })?;
    let did = session.did.clone();
    state
        .storage
        .write(move |conn| consume_token(conn, PURPOSE, &did, &token))
        .await?;
    let last = last_operation(state, &session.did).await?;
    let prev = last.cid();
    let mut op = last;
    op.prev = Some(prev);
    if let Some(v) = changes.rotation_keys {
        op.rotation_keys = v;
    }
    if let Some(v) = changes.also_known_as {
        op.also_known_as = v;
    }
    if let Some(v) = changes.verification_methods {
        op.verification_methods = v;
    }
    if let Some(v) = changes.services {
        op.services = v;
    }
    Ok(SignedOperation {
        operation: op.sign(&state.secrets.plc_rotation_key),
    })
}

/// signPlcOperation's output: the operation, for the new PDS to submit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedOperation {
    pub operation: PlcOperation,
}

/// com.atproto.identity.submitPlcOperation: checks the operation keeps the account
/// working here (our endpoint, its signing key, our rotation key), submits it and
/// announces the change on the firehose.
pub async fn submit_operation(
    state: &AppState,
    session: &Session,
    operation: Value,
) -> XrpcResult<()> {
    let op: PlcOperation = serde_json::from_value(operation)
        .map_err(|e| XrpcError::invalid_request(format!("operation: {e}")))?;
    let account = state.repo_account(&session.did).await?;
    let key = signing_key(&account)?.public_key().to_did_key();
    if op.verification_methods.get("atproto") != Some(&key) {
        return Err(XrpcError::invalid_request(
            "the operation's atproto verification method must be this account's signing key",
        ));
    }
    let endpoint = op
        .services
        .get("atproto_pds")
        .map(|s| (s.kind.as_str(), s.endpoint.trim_end_matches('/')));
    if endpoint
        != Some((
            "AtprotoPersonalDataServer",
            state.config.public_url.as_str(),
        ))
    {
        return Err(XrpcError::invalid_request(format!(
            "the operation's atproto_pds service must be {}",
            state.config.public_url
        )));
    }
    if !op
        .rotation_keys
        .contains(&state.secrets.plc_rotation_key.public_key().to_did_key())
    {
        return Err(XrpcError::invalid_request(
            "the operation must keep this server's rotation key",
        ));
    }
    state
        .plc
        .submit(&account.did, &op)
        .await
        .map_err(upstream)?;
    announce_identity(state, &account.did, &account.handle).await
}

async fn announce_identity(state: &AppState, did: &str, handle: &str) -> XrpcResult<()> {
    state.resolver.forget(did);
    let (did, handle) = (did.to_owned(), handle.to_owned());
    state
        .storage
        .writer
        .write_with_events(move |_, outbox| {
            crate::storage::emit::identity(outbox, &did, Some(&handle));
            Ok::<_, XrpcError>(())
        })
        .await
}

/// Puts a user-held rotation key above the server's, so the owner can take the DID
/// elsewhere even without this box. Returns the new key (its private half exists only
/// in the returned value when atbox generated it).
pub async fn add_recovery_key(
    state: &AppState,
    did: &str,
    key: Option<String>,
) -> XrpcResult<(String, Option<Keypair>)> {
    let account = state.repo_account(did).await?;
    let (did_key, generated) = match key {
        Some(k) => {
            crate::crypto::parse_did_key(&k)
                .map_err(|e| XrpcError::invalid_request(e.to_string()))?;
            (k, None)
        }
        None => {
            let kp = Keypair::generate(KeyType::K256);
            (kp.public_key().to_did_key(), Some(kp))
        }
    };
    let last = last_operation(state, &account.did).await?;
    let prev = last.cid();
    let mut op = last;
    op.prev = Some(prev);
    op.rotation_keys.retain(|k| k != &did_key);
    op.rotation_keys.insert(0, did_key.clone());
    if op.rotation_keys.len() > 5 {
        return Err(XrpcError::invalid_request(
            "a DID has at most 5 rotation keys; remove one first",
        ));
    }
    let op = op.sign(&state.secrets.plc_rotation_key);
    state
        .plc
        .submit(&account.did, &op)
        .await
        .map_err(upstream)?;
    announce_identity(state, &account.did, &account.handle).await?;
    Ok((did_key, generated))
}
