//! Accounts: creating them (with a did:plc registered at the PLC directory, or an
//! existing did:web) and describing the server; the rest of an account's life is in the
//! submodules, re-exported here so callers name one place (`pds::accounts`).

mod codes;
mod handles;
mod invites;
mod preferences;
mod status;

pub use codes::{
    confirm_email, consume_token, request_email_confirmation, request_email_update,
    request_password_reset, request_token, reset_password, set_password, token_matches,
    update_email, Purpose, TOKEN_TTL_SECS,
};
pub use handles::{
    check_handle_availability, recommended_credentials, resolve_did, resolve_handle,
    resolve_identity, update_handle,
};
pub use invites::{account_invites, create_invites, invite_view, InviteCodeView, InviteCodes};
pub use preferences::{preferences, put_preferences};
pub use status::{check_account_status, delete_account, remove_account, set_active};

use invites::{check_invite, use_invite_code};

use super::sessions::issue;
use super::{signing_key, AppState};
use crate::auth::password;
use crate::auth::tokens::Scope;
use crate::config::Config;
use crate::crypto::{KeyType, Keypair};
use crate::error::{XrpcError, XrpcResult};
use crate::identity::plc::PlcOperation;
use crate::identity::DidDocument;
use crate::repo::writes::apply_writes;
use crate::storage::accounts::{self as db, Account, AccountStatus};
use crate::storage::repos;
use crate::syntax::{Datetime, Did, Handle};
use serde::Serialize;

/// com.atproto.server.describeServer
pub fn describe_server(state: &AppState) -> DescribeServer {
    DescribeServer {
        did: state.config.service_did(),
        available_user_domains: state.config.handle_domains.clone(),
        invite_code_required: state.config.invite_required,
        phone_verification_required: false,
        links: Links {},
    }
}

/// What com.atproto.server.describeServer answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeServer {
    pub did: String,
    pub available_user_domains: Vec<String>,
    pub invite_code_required: bool,
    pub phone_verification_required: bool,
    pub links: Links,
}

/// The server's policy links (none: a home box has no terms of service page).
#[derive(Debug, Clone, Serialize)]
pub struct Links {}

/// The input of createAccount.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    pub handle: String,
    pub email: Option<String>,
    pub password: Option<String>,
    pub did: Option<String>,
    pub invite_code: Option<String>,
    pub recovery_key: Option<String>,
    /// Created by the box's owner (the CLI, first boot, the LAN setup page): no invite
    /// needed. Never read from a request body.
    #[serde(skip)]
    pub by_owner: bool,
    /// The password, already hashed: a claim saved across a restart (`setup::claim`)
    /// keeps no plain password on disk. Never read from a request body.
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Make the DID `did:web:<handle>`, served by this box itself (the handle's host
    /// answers `/.well-known/did.json`), instead of registering a did:plc. Chosen by the
    /// owner on the setup page; never read from a request body.
    #[serde(skip)]
    pub did_web_here: bool,
}

/// The new account's password as given.
enum Password {
    Plain(String),
    Hashed(String),
}

/// Checks a handle asked for on this server: syntax, one of our domains, a sensible
/// first label, not taken. Returns it normalised (lowercase).
pub async fn check_new_handle(
    state: &AppState,
    handle: &str,
    own_did: Option<&str>,
) -> XrpcResult<String> {
    let handle = handle_fits(&state.config, handle)?;
    if let Some(existing) = state.find_account(&handle).await? {
        if Some(existing.did.as_str()) != own_did {
            return Err(XrpcError::named(
                "HandleNotAvailable",
                format!("handle {handle} is already taken"),
            ));
        }
    }
    Ok(handle)
}

/// The checks of a new handle that need only the configuration: syntax, one of its
/// domains, a sensible first label. Returns it normalised (lowercase).
pub fn handle_fits(config: &Config, handle: &str) -> XrpcResult<String> {
    let handle = handle.trim().to_ascii_lowercase();
    let invalid = |m: &str| XrpcError::named("InvalidHandle", m.to_owned());
    Handle::new(handle.as_str()).map_err(|e| invalid(&e.to_string()))?;
    if crate::syntax::DISALLOWED_HANDLE_TLDS
        .iter()
        .any(|t| handle.ends_with(t))
    {
        return Err(invalid("this top-level domain cannot be used for handles"));
    }
    if config.is_local_handle(&handle) {
        let domain = config
            .handle_domains
            .iter()
            .find(|d| handle.ends_with(d.as_str()))
            .expect("local handle");
        let front = &handle[..handle.len() - domain.len()];
        if front.contains('.') {
            return Err(invalid(
                "a handle on this server has a single name before the domain",
            ));
        }
        if front.len() < 3 || front.len() > 18 {
            return Err(invalid(
                "the name before the domain must be 3 to 18 characters",
            ));
        }
    } else {
        return Err(XrpcError::named(
            "UnsupportedDomain",
            format!(
                "handles on this server end in one of: {}",
                config.handle_domains.join(", ")
            ),
        ));
    }
    Ok(handle)
}

/// A new password: present, and at most 256 bytes.
pub fn check_password(password: Option<String>) -> XrpcResult<String> {
    let pass = password
        .filter(|p| !p.is_empty())
        .ok_or_else(|| XrpcError::named("InvalidPassword", "a password is required"))?;
    if pass.len() > 256 {
        return Err(XrpcError::named(
            "InvalidPassword",
            "the password is too long (256 bytes at most)",
        ));
    }
    Ok(pass)
}

pub fn check_email(email: &str) -> XrpcResult<String> {
    let email = email.trim().to_ascii_lowercase();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if !ok {
        return Err(XrpcError::invalid_request("that is not an email address"));
    }
    Ok(email)
}

/// What com.atproto.server.createAccount answers: the new account and a session.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccount {
    pub did: String,
    pub handle: String,
    pub access_jwt: String,
    pub refresh_jwt: String,
    pub did_doc: DidDocument,
}

/// com.atproto.server.createAccount
/// `service_auth` is the bearer token of the request: for an existing DID (an account
/// moving here) it must be a service-auth JWT signed with the DID's current key.
pub async fn create_account(
    state: &AppState,
    input: NewAccount,
    service_auth: Option<&str>,
) -> XrpcResult<CreatedAccount> {
    let handle = check_new_handle(state, &input.handle, input.did.as_deref()).await?;
    let email = check_new_email(state, &input).await?;
    let pass = match input.password_hash.clone() {
        Some(hash) => Password::Hashed(hash),
        None => Password::Plain(check_password(input.password.clone())?),
    };
    let invite = input
        .invite_code
        .clone()
        .filter(|_| state.config.invite_required && !input.by_owner);
    if state.config.invite_required && !input.by_owner && invite.is_none() {
        return Err(XrpcError::named(
            "InvalidInviteCode",
            "an invite code is required",
        ));
    }
    // One sign-up at a time from the invite check to the stored account, so that a
    // single-use code admits one account and no other registers a DID first.
    let _signup = state.signups.lock().await;
    if let Some(code) = &invite {
        check_invite(state, code).await?;
    }
    let signing = Keypair::generate(KeyType::K256);
    let (did, migrating) = match input.did.as_deref() {
        None if input.did_web_here => (format!("did:web:{handle}"), false),
        None => (
            register_plc(state, &signing, &handle, input.recovery_key.as_deref()).await?,
            false,
        ),
        Some(did) => check_existing_did(state, did, service_auth).await?,
    };
    if let Some(existing) = state.find_account(&did).await? {
        return welcome_back(state, existing, handle, email, pass).await;
    }
    let account = Account {
        did,
        handle,
        email,
        password_hash: hash_password(pass).await?,
        signing_key: signing.private_bytes().to_vec(),
        created_at: Datetime::now().to_string(),
        // An account moving here stays deactivated until its identity points here
        // and the owner activates it (the migration flow of the official tools).
        status: if migrating {
            AccountStatus::Deactivated
        } else {
            AccountStatus::Active
        },
        email_confirmed: false,
    };
    store_new_account(state, account.clone(), signing.clone(), invite).await?;
    drop(_signup);
    tracing::info!(did = %account.did, handle = %account.handle, "account created");
    new_account_session(state, &account, &signing).await
}

/// The email a new account gives: required, well-formed, and not another account's.
async fn check_new_email(state: &AppState, input: &NewAccount) -> XrpcResult<Option<String>> {
    let Some(e) = &input.email else {
        return Err(XrpcError::invalid_request("an email address is required"));
    };
    let e = check_email(e)?;
    if state
        .find_account(&e)
        .await?
        .is_some_and(|a| Some(a.did.as_str()) != input.did.as_deref())
    {
        return Err(XrpcError::invalid_request(format!(
            "email {e} is already used by an account"
        )));
    }
    Ok(Some(e))
}

async fn hash_password(pass: Password) -> XrpcResult<String> {
    match pass {
        Password::Hashed(hash) => Ok(hash),
        Password::Plain(pass) => tokio::task::spawn_blocking(move || password::hash(&pass))
            .await
            .map_err(|e| XrpcError::internal(e.to_string())),
    }
}

/// The writer job of a new account: the handle and DID still free, the invite spent,
/// the account, its empty repo's first signed commit, and its events — one transaction.
async fn store_new_account(
    state: &AppState,
    stored: Account,
    signing: Keypair,
    invite: Option<String>,
) -> XrpcResult<()> {
    let rev = state.tids.next_tid();
    let did_parsed = Did::new(stored.did.as_str())?;
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            if db::by_handle(conn, &stored.handle)?.is_some() {
                return Err(XrpcError::named(
                    "HandleNotAvailable",
                    format!("handle {} is already taken", stored.handle),
                ));
            }
            if db::by_did(conn, &stored.did)?.is_some() {
                return Err(XrpcError::invalid_request(format!(
                    "an account for {} already exists here",
                    stored.did
                )));
            }
            if let Some(code) = &invite {
                use_invite_code(conn, code, &stored.did)?;
            }
            db::insert_account(conn, &stored)?;
            let blocks = repos::blocks(&outbox.log, conn, &stored.did);
            let commit = apply_writes(&blocks, &did_parsed, None, &[], &signing, rev)?;
            repos::save_commit(conn, outbox, &stored.did, None, &commit)?;
            // An account moving here says nothing on the firehose until it is activated
            // (then: #account, #identity, #sync), as the reference PDS: its repo and
            // identity still live at the old PDS, whose events relays follow.
            if stored.status == AccountStatus::Active {
                crate::storage::emit::identity(outbox, &stored.did, Some(&stored.handle));
                crate::storage::emit::account(outbox, &stored.did, true, None);
                crate::storage::emit::commit(outbox, &stored.did, &commit);
                crate::storage::emit::sync_commit(outbox, &stored.did, &commit);
            }
            Ok(())
        })
        .await
}

/// The new account's first session, with the DID document it will have.
async fn new_account_session(
    state: &AppState,
    account: &Account,
    signing: &Keypair,
) -> XrpcResult<CreatedAccount> {
    let (access_jwt, refresh_jwt) = issue(state, &account.did, Scope::Access, None).await?;
    let did_doc = DidDocument::for_account(
        &account.did,
        &account.handle,
        &signing.public_key(),
        &state.config.public_url,
    );
    Ok(CreatedAccount {
        did: account.did.clone(),
        handle: account.handle.clone(),
        access_jwt,
        refresh_jwt,
        did_doc,
    })
}

/// An account that moved away (and is deactivated here) coming back. Only its owner
/// may: the password given must be the one it has here (a service-auth token alone is
/// not enough — an app password could mint one). It keeps its signing key, password and
/// invites; the handle and email are the new ones, and importRepo replaces its repo.
async fn welcome_back(
    state: &AppState,
    existing: Account,
    handle: String,
    email: Option<String>,
    pass: Password,
) -> XrpcResult<CreatedAccount> {
    let already = || {
        XrpcError::invalid_request(format!(
            "an account for {} already exists here; to move it back, sign up with the \
             password it has on this server",
            existing.did
        ))
    };
    let Password::Plain(pass) = pass else {
        return Err(already());
    };
    let hash = existing.password_hash.clone();
    let matches = tokio::task::spawn_blocking(move || password::verify(&pass, &hash))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    if existing.status != AccountStatus::Deactivated || !matches {
        return Err(already());
    }
    let (did, h, e) = (existing.did.clone(), handle.clone(), email.clone());
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            db::set_handle(conn, &did, &h)?;
            db::set_email(conn, &did, e.as_deref())?;
            db::delete_refresh_tokens(conn, &did)?;
            crate::storage::emit::identity(outbox, &did, Some(&h));
            Ok::<_, XrpcError>(())
        })
        .await?;
    tracing::info!(did = %existing.did, %handle, "account moved back here");
    let account = Account {
        handle,
        email,
        ..existing
    };
    new_account_session(state, &account, &signing_key(&account)?).await
}

/// Registers a new did:plc pointing at this server; returns the DID.
async fn register_plc(
    state: &AppState,
    signing: &Keypair,
    handle: &str,
    recovery_key: Option<&str>,
) -> XrpcResult<String> {
    let mut rotation_keys = Vec::new();
    if let Some(key) = recovery_key {
        crate::crypto::parse_did_key(key)
            .map_err(|e| XrpcError::invalid_request(format!("recoveryKey: {e}")))?;
        rotation_keys.push(key.to_owned());
    }
    rotation_keys.push(state.secrets.plc_rotation_key.public_key().to_did_key());
    let op = PlcOperation::for_account(
        rotation_keys,
        &signing.public_key().to_did_key(),
        handle,
        &state.config.public_url,
        None,
    )
    .sign(&state.secrets.plc_rotation_key);
    let did = op.genesis_did();
    state
        .plc
        .submit(&did, &op)
        .await
        .map_err(|e| XrpcError::upstream(format!("could not register the DID: {e}")))?;
    Ok(did)
}

/// An existing DID brought to this server: a did:web whose document names us.
async fn check_existing_did(
    state: &AppState,
    did: &str,
    service_auth: Option<&str>,
) -> XrpcResult<(String, bool)> {
    let parsed = Did::new(did)?;
    if did == state.config.service_did() {
        return Err(XrpcError::invalid_request(
            "that is this server's own DID, not an account's",
        ));
    }
    // Whoever controls the DID vouches with a service-auth token signed by its key (the
    // current PDS mints it with getServiceAuth), as the reference requires for any DID.
    let token = service_auth.ok_or_else(|| {
        XrpcError::auth_required(format!(
            "Missing auth to create account with did: {did} (a service-auth token for \
             com.atproto.server.createAccount, from getServiceAuth on its current PDS)"
        ))
    })?;
    let doc = state
        .resolver
        .resolve_did_fresh(&parsed)
        .await
        .map_err(|e| XrpcError::named("UnresolvableDid", e.to_string()))?;
    let key = doc.signing_key().ok_or_else(|| {
        XrpcError::named("IncompatibleDidDoc", "the DID document has no #atproto key")
    })?;
    let claims = crate::auth::service_jwt::verify(
        token,
        &key,
        &state.config.service_did(),
        "com.atproto.server.createAccount",
        crate::storage::unix_now(),
    )
    .and_then(|claims| {
        state
            .service_jtis
            .first_use(&claims, crate::storage::unix_now())?;
        Ok(claims)
    })
    .map_err(|e| XrpcError::auth_required(format!("service-auth token refused: {e}")))?;
    if claims.iss.split('#').next() != Some(did) {
        return Err(XrpcError::auth_required(
            "the service-auth token was issued for another account",
        ));
    }
    if parsed.method() == "plc" {
        // Moving an account here: it stays deactivated until the move completes.
        return Ok((did.to_owned(), true));
    }
    if doc.pds_endpoint().as_deref() != Some(state.config.public_url.as_str()) {
        return Err(XrpcError::named(
            "IncompatibleDidDoc",
            format!(
                "the DID document's #atproto_pds service must be {}",
                state.config.public_url
            ),
        ));
    }
    Ok((did.to_owned(), false))
}
