//! Claiming the box: the pairing code from the screen, the public host name, and the
//! first account.
//!
//! With the host name the box already has, a claim creates the account at once. A new
//! public host name changes what the whole server is (its URL, service DID, handle
//! domain, certificates, mDNS record), so it is not patched into a running server: the
//! claim is checked against the configuration it will run under (`config::load_with`),
//! then saved — the settings to `data_dir/settings.toml`, the account's details
//! (password already hashed) to `data_dir/saved-claim.json` — and atbox restarts; the
//! new server finishes the claim ([`finish_saved_claim`]) and the page, polling
//! `/setup/status`, follows along. The pairing code is spent before anything is saved,
//! so a saved claim is always one the owner proved.

use super::LanClient;
use crate::config::Settings;
use crate::error::XrpcError;
use crate::pds::accounts::{check_email, check_password, create_account, handle_fits, NewAccount};
use crate::pds::Ctx;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};

/// A claim waiting for the restart that applies its host name.
#[derive(Debug, Serialize, Deserialize)]
struct SavedClaim {
    handle: String,
    email: String,
    password_hash: String,
    from: String,
    #[serde(default)]
    did_web: bool,
}

impl SavedClaim {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("saved-claim.json")
    }
}

/// Whether a claim is waiting to be finished (the page shows "finishing").
pub(crate) fn claim_saved(data_dir: &Path) -> bool {
    SavedClaim::path(data_dir).exists()
}

/// `POST /setup/claim` `{code, hostname?, handle, email, password, didMethod?}`.
pub(crate) async fn claim(
    State(ctx): State<Ctx>,
    axum::Extension(LanClient(ip)): axum::Extension<LanClient>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match claim_inner(&ctx, ip, &headers, &body).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

/// What the page posts. Every field is text as typed (trimmed here); absent is empty.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Claim {
    code: String,
    hostname: String,
    handle: String,
    email: String,
    password: Option<String>,
    did_method: String,
}

/// A claim whose every field passed, before the code is spent.
struct Checked {
    /// The configuration to restart under, when the claim names a new public name.
    new_name: Option<crate::config::Config>,
    handle: String,
    email: String,
    password: String,
    did_web: bool,
}

async fn claim_inner(
    ctx: &Ctx,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, XrpcError> {
    // JSON only: a cross-site form post cannot send it without a CORS preflight, which
    // atbox does not grant for this path.
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(XrpcError::invalid_request(
            "send the claim as application/json",
        ));
    }
    let claim: Claim = serde_json::from_slice(body)
        .map_err(|e| XrpcError::invalid_request(format!("the body is not a claim: {e}")))?;
    if !matches!(
        ctx.storage.read(crate::storage::accounts::count).await,
        Ok(0)
    ) || claim_saved(&ctx.config.data_dir)
    {
        return Err(XrpcError::new(
            StatusCode::CONFLICT,
            "AlreadyClaimed",
            "this box already has its owner",
        ));
    }
    ctx.setup_attempts.check(&ip.to_string())?;
    ctx.pairing_failures.check_open()?;
    // Everything is checked before the code is spent: a typo in the host name or the
    // handle should not cost the owner a trip back to the screen.
    let checked = check_claim(ctx, &claim)?;
    if !ctx.pairing.verify(claim.code.trim()) {
        ctx.pairing_failures.failed();
        return Err(XrpcError::new(
            StatusCode::UNAUTHORIZED,
            "WrongCode",
            "that is not the code on the box's screen: look again",
        ));
    }
    match checked.new_name.clone() {
        None => claim_now(ctx, ip, checked).await,
        Some(config) => claim_after_restart(ctx, ip, checked, config).await,
    }
}

/// The claim's fields, checked against the configuration the box will run under.
fn check_claim(ctx: &Ctx, claim: &Claim) -> Result<Checked, XrpcError> {
    let hostname = claim
        .hostname
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let new_name = (!hostname.is_empty() && hostname != ctx.config.hostname)
        .then(|| check_public_name(ctx, &hostname))
        .transpose()?;
    let runs_under = new_name.as_ref().unwrap_or(&ctx.config);
    let handle = handle_fits(runs_under, &qualify(claim.handle.trim(), runs_under))?;
    // did:plc (the default) or a did:web the box serves at the handle's host.
    let did_web = match claim.did_method.trim() {
        "" | "plc" => false,
        "web" => true,
        other => {
            return Err(XrpcError::invalid_request(format!(
                "didMethod must be \"plc\" or \"web\", not {other:?}"
            )))
        }
    };
    if did_web && !runs_under.public_url.starts_with("https://") {
        return Err(XrpcError::invalid_request(
            "a did:web needs a public name: the world fetches it over HTTPS from the handle's host",
        ));
    }
    Ok(Checked {
        handle,
        email: check_email(claim.email.trim())?,
        password: check_password(claim.password.clone())?,
        did_web,
        new_name,
    })
}

/// Under the name the box already has: the owner's account, now.
async fn claim_now(
    ctx: &Ctx,
    ip: std::net::IpAddr,
    checked: Checked,
) -> Result<Response, XrpcError> {
    let account = NewAccount {
        handle: checked.handle,
        email: Some(checked.email),
        password: Some(checked.password),
        by_owner: true,
        did_web_here: checked.did_web,
        ..Default::default()
    };
    let created = create_account(ctx, account, None).await?;
    tracing::info!("setup: the box was claimed from {ip} by {}", created.handle);
    Ok(Json(json!({
        "did": created.did,
        "handle": created.handle,
        "publicUrl": ctx.config.public_url,
    }))
    .into_response())
}

/// Under a new public name: the claim (password hashed) and the settings are saved
/// durably, and atbox restarts under the name and finishes the claim
/// ([`finish_saved_claim`]).
async fn claim_after_restart(
    ctx: &Ctx,
    ip: std::net::IpAddr,
    checked: Checked,
    config: crate::config::Config,
) -> Result<Response, XrpcError> {
    let password = checked.password;
    let password_hash = tokio::task::spawn_blocking(move || crate::auth::password::hash(&password))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    let handle = checked.handle;
    let saved = SavedClaim {
        handle: handle.clone(),
        email: checked.email,
        password_hash,
        from: ip.to_string(),
        did_web: checked.did_web,
    };
    let data_dir = ctx.config.data_dir.clone();
    let settings = config.settings.clone().expect("checked with settings");
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let json = serde_json::to_vec(&saved).expect("claim serialises");
        crate::storage::write_durably(&SavedClaim::path(&data_dir), &json)?;
        settings.save(&data_dir).inspect_err(|_| {
            let _ = std::fs::remove_file(SavedClaim::path(&data_dir));
        })
    })
    .await
    .map_err(|e| XrpcError::internal(e.to_string()))?;
    written.map_err(|e| XrpcError::internal(format!("could not save the settings: {e}")))?;
    tracing::info!(
        "setup: claimed from {ip} for {handle} at {}; restarting to serve under that name",
        config.hostname
    );
    ctx.restart.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "restarting": true,
            "handle": handle,
            "hostname": config.hostname,
            "publicUrl": config.public_url,
        })),
    )
        .into_response())
}

/// A bare name typed on the page ("alice") gets the first handle domain.
fn qualify(handle: &str, config: &crate::config::Config) -> String {
    let handle = handle.trim_start_matches('@');
    match config.handle_domains.first() {
        Some(domain) if !handle.contains('.') && !handle.is_empty() => format!("{handle}{domain}"),
        _ => handle.to_owned(),
    }
}

/// The configuration the server would run under with `hostname` as its public name.
fn check_public_name(ctx: &Ctx, hostname: &str) -> Result<crate::config::Config, XrpcError> {
    let invalid = |m: String| XrpcError::named("InvalidHostname", m);
    if crate::syntax::Handle::new(hostname).is_err() || hostname.parse::<std::net::IpAddr>().is_ok()
    {
        return Err(invalid(format!(
            "{hostname:?} is not a host name: use a domain name such as pds.example.com"
        )));
    }
    if hostname.ends_with(".local")
        || crate::syntax::DISALLOWED_HANDLE_TLDS
            .iter()
            .any(|t| hostname.ends_with(t))
    {
        return Err(invalid(format!(
            "{hostname} only works on this network: the public name must be a domain the internet can look up"
        )));
    }
    let config = crate::config::load_with(
        ctx.config.config_file.as_deref(),
        &|k| std::env::var(k).ok(),
        Some(Settings::public_name(hostname)),
    )
    .map_err(|e| invalid(e.to_string()))?;
    if config.hostname != hostname {
        return Err(invalid(format!(
            "atbox's environment sets the host name (ATBOX_HOSTNAME={}): change it there, or leave the name empty",
            config.hostname
        )));
    }
    Ok(config)
}

/// Finishes a claim saved before the restart: creates the account under the new name
/// (which registers its DID with the PLC directory). A failure is kept for the page
/// (`AppState.claim_error`) and the saved claim removed: the owner tries again with a
/// fresh code, and the new name stays.
pub(crate) async fn finish_saved_claim(ctx: Ctx) {
    let path = SavedClaim::path(&ctx.config.data_dir);
    let saved: SavedClaim = match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::warn!("setup: ignoring an unreadable saved claim ({e})");
                let _ = std::fs::remove_file(&path);
                return;
            }
        },
        Err(_) => return,
    };
    let account = NewAccount {
        handle: saved.handle,
        email: Some(saved.email),
        password_hash: Some(saved.password_hash),
        by_owner: true,
        did_web_here: saved.did_web,
        ..Default::default()
    };
    let outcome = match ctx.storage.read(crate::storage::accounts::count).await {
        Ok(0) => create_account(&ctx, account, None).await.map(|_| ()),
        // Finished already (the box lost power between creating it and this cleanup).
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    };
    match outcome {
        Ok(()) => tracing::info!(
            "setup: the box was claimed from {} at {}",
            saved.from,
            ctx.config.public_url
        ),
        Err(e) => {
            tracing::warn!("setup: the saved claim failed: {}", e.message);
            *ctx.claim_error.lock().expect("claim error lock") = Some(e.message);
        }
    }
    let _ = std::fs::remove_file(&path);
}
