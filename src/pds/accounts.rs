//! Accounts: creating them (with a did:plc registered at the PLC directory, or an
//! existing did:web), describing the server, invites, status, handles, passwords and
//! deletion. Where the reference PDS emails a code, atbox keeps it for the owner to read
//! with `atbox account tokens` (home ISPs often block mail).

use super::sessions::issue;
use super::{signing_key, unix_now, AppState};
use crate::auth::password;
use crate::auth::tokens::Scope;
use crate::auth::Session;
use crate::config::Config;
use crate::crypto::{KeyType, Keypair};
use crate::identity::plc::PlcOperation;
use crate::identity::DidDocument;
use crate::repo::writes::apply_writes;
use crate::storage::accounts::{self as db, Account, AccountStatus};
use crate::storage::repos;
use crate::syntax::{Datetime, Did, Handle};
use crate::xrpc::error::{XrpcError, XrpcResult};
use serde_json::{json, Value};

/// How long a one-time code (password reset, account deletion, PLC signature) lives.
pub const TOKEN_TTL_SECS: i64 = 15 * 60;

/// com.atproto.server.describeServer
pub fn describe_server(state: &AppState) -> Value {
    json!({
        "did": state.config.service_did(),
        "availableUserDomains": state.config.handle_domains,
        "inviteCodeRequired": state.config.invite_required,
        "phoneVerificationRequired": false,
        "links": {},
    })
}

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

/// com.atproto.server.createAccount
/// `service_auth` is the bearer token of the request: for an existing did:plc (an
/// account moving here) it must be a service-auth JWT signed with the DID's current key.
pub async fn create_account(
    state: &AppState,
    input: NewAccount,
    service_auth: Option<&str>,
) -> XrpcResult<Value> {
    let handle = check_new_handle(state, &input.handle, input.did.as_deref()).await?;
    let email = match &input.email {
        Some(e) => Some(check_email(e)?),
        None => return Err(XrpcError::invalid_request("an email address is required")),
    };
    if let Some(e) = &email {
        if state
            .find_account(e)
            .await?
            .is_some_and(|a| Some(a.did.as_str()) != input.did.as_deref())
        {
            return Err(XrpcError::invalid_request(format!(
                "email {e} is already used by an account"
            )));
        }
    }
    let pass = match input.password_hash {
        Some(hash) => Password::Hashed(hash),
        None => Password::Plain(check_password(input.password)?),
    };
    if state.config.invite_required && !input.by_owner {
        let code = input
            .invite_code
            .clone()
            .ok_or_else(|| XrpcError::named("InvalidInviteCode", "an invite code is required"))?;
        check_invite(state, &code).await?;
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
    if migrating {
        if let (Some(existing), Password::Plain(pass)) = (state.find_account(&did).await?, &pass) {
            return welcome_back(state, existing, handle, email, pass.clone()).await;
        }
    }
    let pass_hash = match pass {
        Password::Hashed(hash) => hash,
        Password::Plain(pass) => tokio::task::spawn_blocking(move || password::hash(&pass))
            .await
            .map_err(|e| XrpcError::internal(e.to_string()))?,
    };
    let account = Account {
        did: did.clone(),
        handle: handle.clone(),
        email,
        password_hash: pass_hash,
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
    let rev = state.tids.next_tid();
    let did_parsed = Did::new(did.as_str())?;
    let invite = input
        .invite_code
        .filter(|_| state.config.invite_required && !input.by_owner);
    let stored = account.clone();
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
            // An empty repo with its first signed commit.
            let commit = apply_writes(
                &repos::blocks(&outbox.log, conn, &stored.did),
                &did_parsed,
                None,
                &[],
                &signing,
                rev,
            )?;
            repos::save_commit(conn, outbox, &stored.did, None, &commit)?;
            crate::sync::emit::identity(outbox, &stored.did, Some(&stored.handle));
            let active = stored.status == AccountStatus::Active;
            let shown = (!active).then(|| stored.status.as_str());
            crate::sync::emit::account(outbox, &stored.did, active, shown);
            crate::sync::emit::commit(outbox, &stored.did, &commit);
            let commit_block = commit.blocks.get(&commit.commit_cid).unwrap_or_default();
            crate::sync::emit::sync(
                outbox,
                &stored.did,
                commit.commit_cid,
                commit_block,
                commit.rev.as_str(),
            );
            Ok(())
        })
        .await?;
    tracing::info!(did = %account.did, handle = %account.handle, "account created");
    let (access, refresh) = issue(state, &account.did, Scope::Access, None).await?;
    let doc = DidDocument::for_account(
        &account.did,
        &account.handle,
        &signing_key(&account)?.public_key(),
        &state.config.public_url,
    );
    Ok(
        json!({ "did": account.did, "handle": account.handle, "accessJwt": access, "refreshJwt": refresh, "didDoc": doc }),
    )
}

/// An account that moved away (and is deactivated here) coming back: it keeps its
/// signing key and record of invites; handle, email and password are the new ones, and
/// its repo will be replaced by importRepo.
async fn welcome_back(
    state: &AppState,
    existing: Account,
    handle: String,
    email: Option<String>,
    pass: String,
) -> XrpcResult<Value> {
    if existing.status != AccountStatus::Deactivated {
        return Err(XrpcError::invalid_request(format!(
            "an active account for {} already exists here",
            existing.did
        )));
    }
    let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    let (did, h, e) = (existing.did.clone(), handle.clone(), email.clone());
    state
        .storage
        .writer
        .write_with_events(move |conn, outbox| {
            db::set_handle(conn, &did, &h)?;
            db::set_email(conn, &did, e.as_deref())?;
            db::set_password(conn, &did, &hash)?;
            db::delete_refresh_tokens(conn, &did)?;
            crate::sync::emit::identity(outbox, &did, Some(&h));
            Ok::<_, XrpcError>(())
        })
        .await?;
    let (access, refresh) = issue(state, &existing.did, Scope::Access, None).await?;
    let doc = DidDocument::for_account(
        &existing.did,
        &handle,
        &signing_key(&existing)?.public_key(),
        &state.config.public_url,
    );
    Ok(
        json!({ "did": existing.did, "handle": handle, "accessJwt": access, "refreshJwt": refresh, "didDoc": doc }),
    )
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
    let doc = state
        .resolver
        .resolve_did_fresh(&parsed)
        .await
        .map_err(|e| XrpcError::named("UnresolvableDid", e.to_string()))?;
    if parsed.method() == "plc" {
        // Moving an account here: its current PDS vouches with a service-auth token
        // signed by the account's key.
        let token = service_auth.ok_or_else(|| {
            XrpcError::auth_required("bringing an existing did:plc here needs a service-auth token from its current PDS (getServiceAuth)")
        })?;
        let key = doc.signing_key().ok_or_else(|| {
            XrpcError::named("IncompatibleDidDoc", "the DID document has no #atproto key")
        })?;
        let claims = crate::auth::service_jwt::verify(
            token,
            &key,
            &state.config.service_did(),
            "com.atproto.server.createAccount",
            super::unix_now(),
        )
        .map_err(|e| XrpcError::auth_required(format!("service-auth token refused: {e}")))?;
        if claims.iss.split('#').next() != Some(did) {
            return Err(XrpcError::auth_required(
                "the service-auth token was issued for another account",
            ));
        }
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

async fn check_invite(state: &AppState, code: &str) -> XrpcResult<()> {
    let code = code.to_owned();
    state
        .storage
        .read(move |conn| {
            let ok = db::invite(conn, &code)?
                .is_some_and(|c| !c.disabled && (c.uses.len() as i64) < c.available);
            if ok {
                Ok(())
            } else {
                Err(XrpcError::named(
                    "InvalidInviteCode",
                    "invite code not found, disabled or used up",
                ))
            }
        })
        .await
}

fn use_invite_code(conn: &rusqlite::Connection, code: &str, did: &str) -> XrpcResult<()> {
    let invite =
        db::invite(conn, code)?.filter(|c| !c.disabled && (c.uses.len() as i64) < c.available);
    if invite.is_none() {
        return Err(XrpcError::named(
            "InvalidInviteCode",
            "invite code not found, disabled or used up",
        ));
    }
    db::use_invite(conn, code, did, Datetime::now().as_str())?;
    Ok(())
}

fn new_invite_code(hostname: &str) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let part = |n: usize| {
        (0..n)
            .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
            .collect::<String>()
    };
    format!("{}-{}-{}", hostname.replace('.', "-"), part(5), part(5))
}

/// Creates `count` invite codes of `uses` each, for an account (or the admin).
pub async fn create_invites(
    state: &AppState,
    count: usize,
    uses: i64,
    for_account: &str,
) -> XrpcResult<Vec<String>> {
    if !(1..=1000).contains(&count) || uses < 1 {
        return Err(XrpcError::invalid_request(
            "codeCount must be 1 to 1000 and useCount at least 1",
        ));
    }
    let codes: Vec<String> = (0..count)
        .map(|_| new_invite_code(&state.config.hostname))
        .collect();
    let (out, for_account) = (codes.clone(), for_account.to_owned());
    state
        .storage
        .write(move |conn| {
            let now = Datetime::now().to_string();
            for code in &codes {
                db::insert_invite(conn, code, uses, &for_account, "admin", &now)?;
            }
            Ok::<_, XrpcError>(())
        })
        .await?;
    Ok(out)
}

/// An invite code as `com.atproto.server.defs#inviteCode`.
pub fn invite_view(c: &db::InviteCode) -> Value {
    json!({
        "code": c.code,
        "available": c.available - c.uses.len() as i64,
        "disabled": c.disabled,
        "forAccount": c.for_account,
        "createdBy": c.created_by,
        "createdAt": c.created_at,
        "uses": c.uses.iter().map(|(by, at)| json!({"usedBy": by, "usedAt": at})).collect::<Vec<_>>(),
    })
}

/// com.atproto.server.getAccountInviteCodes
pub async fn account_invites(state: &AppState, session: &Session) -> XrpcResult<Value> {
    let did = session.did.clone();
    let codes = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::invites_for(conn, &did)?))
        .await?;
    Ok(json!({ "codes": codes.iter().map(invite_view).collect::<Vec<_>>() }))
}

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
    session.require_full()?;
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
            crate::sync::emit::account(outbox, &did, status == AccountStatus::Active, shown);
            if status == AccountStatus::Active {
                // Back online: tell consumers who it is and where its repo stands.
                crate::sync::emit::identity(outbox, &did, Some(&account.handle));
                if let Some(head) = repos::head(conn, &did)? {
                    let block = repos::get_blocks(&outbox.log, conn, &did, &[head.commit])?;
                    let commit_block = block.get(&head.commit).unwrap_or_default();
                    crate::sync::emit::sync(
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

/// A six-character one-time code, easy to read off a screen or a terminal.
fn one_time_code() -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let part = |n: usize| {
        (0..n)
            .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
            .collect::<String>()
    };
    format!("{}-{}", part(5), part(5))
}

/// Issues a one-time code for `purpose`; it is shown by `atbox account tokens`.
pub async fn request_token(state: &AppState, did: &str, purpose: &'static str) -> XrpcResult<()> {
    let (did, code) = (did.to_owned(), one_time_code());
    tracing::info!(%did, purpose, "one-time code issued; the owner can read it with `atbox account tokens`");
    state
        .storage
        .write(move |conn| {
            Ok::<_, XrpcError>(db::put_token(conn, purpose, &did, &code, unix_now())?)
        })
        .await
}

/// Checks and consumes a one-time code inside a write job.
pub fn consume_token(
    conn: &rusqlite::Connection,
    purpose: &str,
    did: &str,
    token: &str,
) -> XrpcResult<()> {
    match db::get_token(conn, purpose, did)? {
        Some((expected, at)) if expected == token.trim().to_ascii_uppercase() => {
            db::delete_token(conn, purpose, did)?;
            if unix_now() - at > TOKEN_TTL_SECS {
                return Err(XrpcError::named(
                    "ExpiredToken",
                    "the code has expired; request a new one",
                ));
            }
            Ok(())
        }
        _ => Err(XrpcError::named("InvalidToken", "the code is not valid")),
    }
}

/// com.atproto.server.requestPasswordReset (by email).
pub async fn request_password_reset(state: &AppState, email: &str) -> XrpcResult<()> {
    // Say nothing about whether the address has an account.
    if let Some(account) = state.find_account(&check_email(email)?).await? {
        request_token(state, &account.did, "reset_password").await?;
    }
    Ok(())
}

/// com.atproto.server.resetPassword
pub async fn reset_password(state: &AppState, token: &str, new_password: &str) -> XrpcResult<()> {
    if new_password.is_empty() || new_password.len() > 256 {
        return Err(XrpcError::named(
            "InvalidPassword",
            "the password must be 1 to 256 bytes",
        ));
    }
    let token = token.trim().to_ascii_uppercase();
    let pass = new_password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    state
        .storage
        .write(move |conn| {
            let (did, _) = db::token_owner(conn, "reset_password", &token)?
                .ok_or_else(|| XrpcError::named("InvalidToken", "the code is not valid"))?;
            consume_token(conn, "reset_password", &did, &token)?;
            db::set_password(conn, &did, &hash)?;
            db::delete_refresh_tokens(conn, &did)?;
            Ok(())
        })
        .await
}

/// Sets a new password directly (the admin CLI's reset-password).
pub async fn set_password(state: &AppState, did: &str, new_password: &str) -> XrpcResult<()> {
    let pass = new_password.to_owned();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pass))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    let did = did.to_owned();
    state
        .storage
        .write(move |conn| {
            db::set_password(conn, &did, &hash)?;
            db::delete_refresh_tokens(conn, &did)?;
            Ok::<_, XrpcError>(())
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
            crate::sync::emit::account(outbox, &did, false, Some("deleted"));
            Ok::<_, XrpcError>(())
        })
        .await?;
    state.storage.blobs.remove_all(&blob_did)?;
    Ok(())
}

/// com.atproto.identity.getRecommendedDidCredentials
pub async fn recommended_credentials(state: &AppState, session: &Session) -> XrpcResult<Value> {
    let account = state.repo_account(&session.did).await?;
    let key = signing_key(&account)?;
    Ok(json!({
        "rotationKeys": [state.secrets.plc_rotation_key.public_key().to_did_key()],
        "alsoKnownAs": [format!("at://{}", account.handle)],
        "verificationMethods": { "atproto": key.public_key().to_did_key() },
        "services": { "atproto_pds": { "type": "AtprotoPersonalDataServer", "endpoint": state.config.public_url } },
    }))
}

/// com.atproto.identity.resolveHandle: local accounts first, then DNS and HTTPS.
pub async fn resolve_handle(state: &AppState, handle: &str) -> XrpcResult<Value> {
    let parsed = Handle::new(handle.trim())?;
    if let Some(account) = state.find_account(parsed.normalized().as_str()).await? {
        return Ok(json!({ "did": account.did }));
    }
    match state.resolver.resolve_handle(&parsed).await {
        Some(did) => Ok(json!({ "did": did })),
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
            crate::sync::emit::identity(outbox, &did, Some(&handle));
            Ok(())
        })
        .await
}

/// app.bsky.actor.getPreferences: kept on the PDS, as the reference does.
pub async fn preferences(state: &AppState, session: &Session) -> XrpcResult<Value> {
    let did = session.did.clone();
    let stored = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::preferences(conn, &did)?))
        .await?;
    let prefs = stored
        .iter()
        .find(|(ns, _)| ns == "app.bsky")
        .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .unwrap_or_else(|| json!([]));
    Ok(json!({ "preferences": prefs }))
}

/// app.bsky.actor.putPreferences: replaces the account's preferences.
pub async fn put_preferences(state: &AppState, session: &Session, prefs: Value) -> XrpcResult<()> {
    let Value::Array(items) = &prefs else {
        return Err(XrpcError::invalid_request("preferences must be an array"));
    };
    for item in items {
        let ty = item.get("$type").and_then(Value::as_str).unwrap_or("");
        if !ty.starts_with("app.bsky.") {
            return Err(XrpcError::invalid_request(
                "each preference needs an app.bsky.* $type",
            ));
        }
    }
    let (did, text) = (session.did.clone(), prefs.to_string());
    state
        .storage
        .write(move |conn| {
            Ok::<_, XrpcError>(db::put_preferences(
                conn,
                &did,
                &[("app.bsky".to_owned(), text)],
            )?)
        })
        .await
}

/// com.atproto.server.requestEmailConfirmation: a code for confirmEmail (shown by
/// `atbox account tokens`; home connections often cannot send mail).
pub async fn request_email_confirmation(state: &AppState, session: &Session) -> XrpcResult<()> {
    let account = state.repo_account(&session.did).await?;
    if account.email.is_none() {
        return Err(XrpcError::invalid_request(
            "the account has no email address",
        ));
    }
    request_token(state, &account.did, "confirm_email").await
}

/// com.atproto.server.confirmEmail
pub async fn confirm_email(
    state: &AppState,
    session: &Session,
    email: &str,
    token: &str,
) -> XrpcResult<()> {
    let (did, email, token) = (
        session.did.clone(),
        email.trim().to_ascii_lowercase(),
        token.to_owned(),
    );
    state
        .storage
        .write(move |conn| {
            let account = db::by_did(conn, &did)?
                .ok_or_else(|| XrpcError::named("AccountNotFound", "account not found"))?;
            if account.email.as_deref() != Some(email.as_str()) {
                return Err(XrpcError::named(
                    "InvalidEmail",
                    "that is not the account's email address",
                ));
            }
            consume_token(conn, "confirm_email", &did, &token)?;
            db::set_email_confirmed(conn, &did)?;
            Ok(())
        })
        .await
}

/// com.atproto.server.requestEmailUpdate: a confirmed address needs a code to change.
pub async fn request_email_update(state: &AppState, session: &Session) -> XrpcResult<Value> {
    session.require_full()?;
    let account = state.repo_account(&session.did).await?;
    if account.email_confirmed {
        request_token(state, &account.did, "update_email").await?;
    }
    Ok(json!({ "tokenRequired": account.email_confirmed }))
}

/// com.atproto.server.updateEmail
pub async fn update_email(
    state: &AppState,
    session: &Session,
    email: &str,
    token: Option<&str>,
) -> XrpcResult<()> {
    session.require_full()?;
    let email = check_email(email)?;
    let (did, token) = (session.did.clone(), token.map(str::to_owned));
    state
        .storage
        .write(move |conn| {
            let account = db::by_did(conn, &did)?
                .ok_or_else(|| XrpcError::named("AccountNotFound", "account not found"))?;
            if account.email_confirmed {
                let token = token.ok_or_else(|| {
                    XrpcError::named(
                        "TokenRequired",
                        "a code from requestEmailUpdate is required",
                    )
                })?;
                consume_token(conn, "update_email", &did, &token)?;
            }
            if db::by_email(conn, &email)?.is_some_and(|a| a.did != did) {
                return Err(XrpcError::invalid_request(
                    "that email address is used by another account",
                ));
            }
            db::set_email(conn, &did, Some(&email))?;
            Ok(())
        })
        .await
}

/// com.atproto.identity.resolveDid
pub async fn resolve_did(state: &AppState, did: &str) -> XrpcResult<Value> {
    let parsed = Did::new(did)?;
    let doc = match state.find_account(did).await? {
        Some(account) => super::sync::did_document(state, &account).await,
        None => state
            .resolver
            .resolve_did(&parsed)
            .await
            .map_err(|e| XrpcError::named("DidNotFound", e.to_string()))?,
    };
    Ok(json!({ "didDoc": doc }))
}

/// com.atproto.identity.resolveIdentity (and refreshIdentity with `fresh`): the DID, its
/// document, and the handle if it resolves back to the DID (else `handle.invalid`).
pub async fn resolve_identity(
    state: &AppState,
    identifier: &str,
    fresh: bool,
) -> XrpcResult<Value> {
    let id = crate::syntax::AtIdentifier::new(identifier.trim())?;
    let did = match &id {
        crate::syntax::AtIdentifier::Did(d) => d.clone(),
        crate::syntax::AtIdentifier::Handle(_) => {
            let v = resolve_handle(state, id.as_str()).await?;
            Did::new(v["did"].as_str().unwrap_or_default())?
        }
    };
    if fresh {
        state.resolver.forget(did.as_str());
    }
    let local = state.find_account(did.as_str()).await?;
    let doc = match &local {
        Some(account) => super::sync::did_document(state, account).await,
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
    Ok(
        json!({ "did": did, "handle": verified.unwrap_or_else(|| "handle.invalid".into()), "didDoc": doc }),
    )
}
