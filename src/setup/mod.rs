//! The LAN setup page: claiming the box from a phone, then its live status.
//!
//! Served at `/` (and `/setup/*`) only to clients on the local network that ask for the
//! box by a LAN name (`lan`: not through a proxy or tunnel, not by a public or
//! rebinding name); the internet sees the plain front page. While
//! no account exists, the page asks for the pairing code shown on the OLED — proof of
//! physical presence, so neither a stranger on the Wi-Fi nor a web page in a visitor's
//! browser can claim the box — and the first account's handle, email and password.
//! Wrong codes are rate-limited per client and by a budget shared by everyone
//! (`auth::pairing`, `AppState::pairing_failures`). Afterwards the page shows the same facts as the screen
//! (`AppState.snapshots`), how to log in from the Bluesky app, the doctor's checks, and
//! the owner's actions behind their login (`owner`). Plain HTML with a little JS,
//! served by atbox itself: nothing to build on the device.

mod claim;
pub(crate) mod lan;
mod owner;
mod services;

pub(crate) use claim::{claim, finish_saved_claim};
pub(crate) use owner::{
    backup_key as owner_backup_key, backup_key_written as owner_backup_key_written,
    codes as owner_codes, crawl as owner_crawl, invite as owner_invite,
    list_accounts as owner_accounts,
};
pub(crate) use services::{choose as owner_choose_services, current as owner_services};

use crate::error::XrpcError;
use crate::pds::Ctx;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};

const PAGE: &str = include_str!("page.html");

fn lan_client(ctx: &Ctx, peer: SocketAddr, headers: &HeaderMap) -> Option<IpAddr> {
    lan::lan_client(&ctx.config.trusted_proxies, peer, headers)
}

/// `GET /`: the setup page for the LAN, the public front page for everyone else.
pub(crate) async fn front_page(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if lan_client(&ctx, peer, &headers).is_some() {
        return ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response();
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>atbox</title>\
         <h1>atbox</h1><p>This is an AT Protocol personal data server (PDS), running at home on atbox {}.</p>\
         <p>Most API routes are under <code>/xrpc/</code>. Use a Bluesky app and sign in with this server's address: <code>{}</code></p>\
         <p>Accounts on this box: <a href=\"/account\">your account page</a> (apps, app passwords, password, email).</p>",
        env!("CARGO_PKG_VERSION"),
        ctx.config.public_url
    ))
    .into_response()
}

fn lan_only() -> Response {
    XrpcError::forbidden("the setup page only answers on the local network").into_response()
}

/// The client's address, on the local network: what [`require_lan`] hands the `/setup`
/// handlers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LanClient(pub IpAddr);

/// The layer over every `/setup/*` route: clients outside the local network are refused
/// here, once, and the handlers get the client's address as a [`LanClient`].
pub(crate) async fn require_lan(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match lan_client(&ctx, peer, request.headers()) {
        Some(ip) => {
            request.extensions_mut().insert(LanClient(ip));
            next.run(request).await
        }
        None => lan_only(),
    }
}

/// `GET /setup/status`: the box's state for the page.
pub(crate) async fn status(State(ctx): State<Ctx>) -> Response {
    let snap = ctx.snapshots.borrow().clone();
    let relay = match &snap.relay {
        crate::device::snapshot::RelayView::NoneConfigured => json!(null),
        crate::device::snapshot::RelayView::NotCheckedYet(r) => {
            json!({"relay": r, "state": "not checked yet"})
        }
        crate::device::snapshot::RelayView::Checked { relay, state, .. } => {
            json!({"relay": relay, "state": state})
        }
    };
    // The owner from storage (the snapshot may be a few seconds behind a claim).
    let owner = ctx
        .storage
        .read(crate::storage::accounts::list)
        .await
        .ok()
        .and_then(|list| list.into_iter().next());
    let claimed = owner.is_some();
    let backups = crate::backup::status::summary_now(&ctx.config, crate::storage::unix_now());
    let tls = match &ctx.config.tls {
        crate::config::TlsMode::Off => "off",
        crate::config::TlsMode::Files { .. } => "files",
        crate::config::TlsMode::Acme => "acme",
    };
    // The certificate for the host name, once issued (`tls = "acme"` or files).
    let certificate = crate::storage::certs::stored_certificates(&ctx.config.data_dir)
        .into_iter()
        .find(|(name, _)| *name == ctx.config.hostname)
        .map(|(name, not_after)| json!({"name": name, "notAfter": not_after}));
    Json(json!({
        "version": snap.version,
        "claimed": claimed,
        "claimFinishing": claim::claim_saved(&ctx.config.data_dir),
        "claimError": ctx.claim_error.lock().expect("claim error lock").clone(),
        "tls": tls,
        "certificate": certificate,
        "handle": owner.as_ref().map(|a| a.handle.clone()),
        "did": owner.as_ref().map(|a| a.did.clone()),
        "hostname": ctx.config.hostname,
        "publicUrl": ctx.config.public_url,
        "handleDomains": ctx.config.handle_domains,
        "addresses": snap.addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "mdnsName": snap.mdns_name,
        "relay": relay,
        "records": snap.records,
        "blobs": snap.blobs,
        "subscribers": snap.subscribers,
        "diskFree": snap.disk_free,
        "bytesWrittenToday": snap.bytes_written_today,
        "cpuTemperature": snap.cpu_temp_c,
        "uptimeSecs": snap.uptime_secs,
        "clockSynced": snap.clock_synced,
        "alerts": snap.alerts().iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
        "backup": {
            "line": backups.line,
            "alert": backups.alert.map(|a| a.sentence()),
            "nag": backups.nag,
            "phraseWrittenDown": crate::backup::status::phrase_acknowledged(&ctx.config.data_dir),
        },
    }))
    .into_response()
}

/// `GET /setup/doctor`: the `atbox doctor` checks, for the page's "Check" button.
pub(crate) async fn doctor(
    State(ctx): State<Ctx>,
    axum::Extension(LanClient(ip)): axum::Extension<LanClient>,
) -> Response {
    // Each run makes outbound requests: a page must not make the box a traffic source.
    if let Err(e) = ctx.check_limit(&ctx.limits.doctor, &ip.to_string()) {
        return e.into_response();
    }
    let findings = crate::pds::doctor::examine(&ctx).await;
    let list: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "check": f.check,
                "verdict": f.verdict.as_str(),
                "detail": f.detail,
                "fix": f.fix,
            })
        })
        .collect();
    Json(json!({ "findings": list })).into_response()
}

#[cfg(test)]
mod tests {
    use super::lan::is_lan;

    #[test]
    fn lan_addresses() {
        for lan in [
            "192.168.1.5",
            "10.0.0.1",
            "172.16.3.4",
            "127.0.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.5",
        ] {
            assert!(is_lan(lan.parse().unwrap()), "{lan}");
        }
        for public in ["8.8.8.8", "2001:db8::1", "172.32.0.1", "::ffff:8.8.8.8"] {
            assert!(!is_lan(public.parse().unwrap()), "{public}");
        }
    }
}
