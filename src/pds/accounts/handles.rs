//! Handles and DIDs: resolving them (local accounts first, then DNS and HTTPS),
//! changing an account's handle, and the DID credentials a migrating account needs.

use super::{check_email, check_new_handle};
use crate::auth::Session;
use crate::error::{XrpcError, XrpcResult};
use crate::identity::DidDocument;
use crate::pds::{signing_key, AppState};
use crate::storage::accounts::{self as db};
use crate::syntax::{Did, Handle};

/// com.atproto.identity.getRecommendedDidCredentials
pub async fn recommended_credentials(
    state: &AppState,
    session: &Session,
) -> XrpcResult<RecommendedCredentials> {
    let account = state.repo_account(&session.did).await?;
    let key = signing_key(&account)?;
    let service = crate::identity::plc::PlcService {
        kind: "AtprotoPersonalDataServer".into(),
        endpoint: state.config.public_url.clone(),
    };
    Ok(RecommendedCredentials {
        rotation_keys: vec![state.secrets.plc_rotation_key.public_key().to_did_key()],
        also_known_as: vec![format!("at://{}", account.handle)],
        verification_methods: [("atproto".to_owned(), key.public_key().to_did_key())].into(),
        services: [("atproto_pds".to_owned(), service)].into(),
    })
}

/// getRecommendedDidCredentials' output: what the DID document should say for the
/// account to live here.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecommendedCredentials {
    pub rotation_keys: Vec<String>,
    pub also_known_as: Vec<String>,
    pub verification_methods: std::collections::BTreeMap<String, String>,
    pub services: std::collections::BTreeMap<String, crate::identity::plc::PlcService>,
}

/// com.atproto.identity.resolveHandle: local accounts first, then DNS and HTTPS.
pub async fn resolve_handle(state: &AppState, handle: &str) -> XrpcResult<ResolvedHandle> {
    let parsed = Handle::new(handle.trim())?;
    if let Some(account) = state.find_account(parsed.normalized().as_str()).await? {
        return Ok(ResolvedHandle { did: account.did });
    }
    match state.resolver.resolve_handle(&parsed).await {
        Some(did) => Ok(ResolvedHandle {
            did: did.to_string(),
        }),
        None => Err(XrpcError::named(
            "HandleNotFound",
            format!("unable to resolve handle {handle}"),
        )),
    }
}

/// com.atproto.identity.updateHandle: a handle under our domains, or any domain whose
/// DNS or well-known file points at the account's DID. The PLC document follows.
pub async fn update_handle(state: &AppState, session: &Session, handle: &str) -> XrpcResult<()> {
    let account = state.repo_account(&session.did).await?;
    let handle = handle.trim().to_ascii_lowercase();
    let handle = if state.config.is_local_handle(&handle) {
        check_new_handle(state, &handle, Some(&account.did)).await?
    } else {
        let parsed = Handle::new(handle.as_str())
            .map_err(|e| XrpcError::named("InvalidHandle", e.to_string()))?;
        if state
            .find_account(&handle)
            .await?
            .is_some_and(|a| a.did != account.did)
        {
            return Err(XrpcError::named(
                "HandleNotAvailable",
                format!("handle {handle} is already taken"),
            ));
        }
        match state.resolver.resolve_handle(&parsed).await {
            Some(did) if did.as_str() == account.did => handle,
            _ => {
                return Err(XrpcError::invalid_request(format!(
                    "external handle did not resolve to {}: add a DNS TXT record _atproto.{handle} with \"did={}\"",
                    account.did, account.did
                )))
            }
        }
    };
    if Did::new(account.did.as_str())?.method() == "plc" {
        let last = state
            .plc
            .last_operation(&account.did)
            .await
            .map_err(|e| XrpcError::upstream(e.to_string()))?;
        let mut op = last.clone();
        op.also_known_as = vec![format!("at://{handle}")];
        op.prev = Some(last.cid());
        let op = op.sign(&state.secrets.plc_rotation_key);
        state
            .plc
            .submit(&account.did, &op)
            .await
            .map_err(|e| XrpcError::upstream(e.to_string()))?;
        state.resolver.forget(&account.did);
    }
    let did = account.did.clone();
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            if db::by_handle(conn, &handle)?.is_some_and(|a| a.did != did) {
                return Err(XrpcError::named(
                    "HandleNotAvailable",
                    format!("handle {handle} is already taken"),
                ));
            }
            db::set_handle(conn, &did, &handle)?;
            crate::storage::emit::identity(outbox, &did, Some(&handle));
            Ok(())
        })
        .await
}

/// resolveHandle's output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResolvedHandle {
    pub did: String,
}

/// resolveDid's output.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedDid {
    pub did_doc: DidDocument,
}

/// resolveIdentity's and refreshIdentity's output.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    pub did: String,
    /// The handle, if it resolves back to the DID; else `handle.invalid`.
    pub handle: String,
    pub did_doc: DidDocument,
}

/// com.atproto.identity.resolveDid
pub async fn resolve_did(state: &AppState, did: &str) -> XrpcResult<ResolvedDid> {
    let parsed = Did::new(did)?;
    let doc = match state.find_account(did).await? {
        Some(account) => crate::pds::sync::did_document(state, &account).await,
        None => state
            .resolver
            .resolve_did(&parsed)
            .await
            .map_err(|e| XrpcError::named("DidNotFound", e.to_string()))?,
    };
    Ok(ResolvedDid { did_doc: doc })
}

/// com.atproto.identity.resolveIdentity (and refreshIdentity with `fresh`): the DID, its
/// document, and the handle if it resolves back to the DID (else `handle.invalid`).
pub async fn resolve_identity(
    state: &AppState,
    identifier: &str,
    fresh: bool,
) -> XrpcResult<IdentityView> {
    let id = crate::syntax::AtIdentifier::new(identifier.trim())?;
    let did = match &id {
        crate::syntax::AtIdentifier::Did(d) => d.clone(),
        crate::syntax::AtIdentifier::Handle(_) => {
            Did::new(resolve_handle(state, id.as_str()).await?.did)?
        }
    };
    if fresh {
        state.resolver.forget(did.as_str());
    }
    let local = state.find_account(did.as_str()).await?;
    let doc = match &local {
        Some(account) => crate::pds::sync::did_document(state, account).await,
        None => state
            .resolver
            .resolve_did(&did)
            .await
            .map_err(|e| XrpcError::named("DidNotFound", e.to_string()))?,
    };
    let claimed = doc.handle();
    let verified = match (&claimed, &local) {
        (Some(h), Some(a)) if h == &a.handle => Some(h.clone()),
        (Some(h), None) => match Handle::new(h.as_str()) {
            Ok(parsed) => state
                .resolver
                .resolve_handle(&parsed)
                .await
                .filter(|d| d == &did)
                .map(|_| h.clone()),
            Err(_) => None,
        },
        _ => None,
    };
    Ok(IdentityView {
        did: did.to_string(),
        handle: verified.unwrap_or_else(|| "handle.invalid".into()),
        did_doc: doc,
    })
}

/// com.atproto.temp.checkHandleAvailability: whether a handle could be created here,
/// and if not, a few that could (from the name asked for, and the email's local part).
/// A handle outside this server's domains is unavailable; the suggestions then use the
/// first of them.
pub async fn check_handle_availability(
    state: &AppState,
    handle: &str,
    email: Option<&str>,
) -> XrpcResult<HandleAvailability> {
    let asked = Handle::new(handle.trim())?.normalized().as_str().to_owned();
    let email = email
        .map(|e| check_email(e).map_err(|e| XrpcError::named("InvalidEmail", e.message)))
        .transpose()?;
    if check_new_handle(state, &asked, None).await.is_ok() {
        return Ok(HandleAvailability {
            handle: asked,
            result: Availability::Available {},
        });
    }
    let domain = state
        .config
        .handle_domains
        .iter()
        .find(|d| asked.ends_with(d.as_str()))
        .or(state.config.handle_domains.first())
        .cloned()
        .unwrap_or_default();
    // A name for each source: the handle's first label, the email's local part, both
    // cut to the characters and length a name on this server may have.
    let name_of = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .map(|c| c.to_ascii_lowercase())
            .take(14)
            .collect::<String>()
            .trim_matches('-')
            .to_owned()
    };
    let from_handle = name_of(asked.split('.').next().unwrap_or_default());
    let from_email = email
        .as_deref()
        .and_then(|e| e.split('@').next())
        .map(name_of);
    let mut candidates: Vec<(String, &'static str)> = Vec::new();
    if let Some(name) = &from_email {
        candidates.push((format!("{name}{domain}"), "email"));
    }
    for _ in 0..4 {
        let n: u16 = rand::random::<u16>() % 1000;
        candidates.push((format!("{from_handle}{n}{domain}"), "random_digits"));
    }
    let mut suggestions: Vec<Suggestion> = Vec::new();
    for (candidate, method) in candidates {
        if suggestions.len() == 3 {
            break;
        }
        let fresh = !suggestions.iter().any(|s| s.handle == candidate);
        if fresh && check_new_handle(state, &candidate, None).await.is_ok() {
            suggestions.push(Suggestion {
                handle: candidate,
                method,
            });
        }
    }
    Ok(HandleAvailability {
        handle: asked,
        result: Availability::Unavailable { suggestions },
    })
}

/// checkHandleAvailability's output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HandleAvailability {
    pub handle: String,
    pub result: Availability,
}

/// Whether the handle is free, and if not, some that are.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "$type")]
pub enum Availability {
    #[serde(rename = "com.atproto.temp.checkHandleAvailability#resultAvailable")]
    Available {},
    #[serde(rename = "com.atproto.temp.checkHandleAvailability#resultUnavailable")]
    Unavailable { suggestions: Vec<Suggestion> },
}

/// A handle that could be created instead, and how it was made (`email`,
/// `random_digits`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Suggestion {
    pub handle: String,
    pub method: &'static str,
}
