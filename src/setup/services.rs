//! Which AppView and relays the box uses, chosen by its owner on the setup page:
//! Bluesky's, a community's (BlackSky's), or any other DID/URL pair — no editing of
//! `atbox.toml` needed.
//!
//! The choice is checked the way the config file's keys are (`config::load_with`),
//! saved in `data_dir/settings.toml` next to the public name, and atbox restarts under
//! it. Environment variables still win (the page says so instead of saving a choice
//! that would not take effect).

use super::owner::owner;
use crate::error::XrpcError;
use crate::pds::Ctx;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

/// A well-known set of services: name, AppView URL, AppView DID, relays.
struct Preset {
    name: &'static str,
    appview_url: &'static str,
    appview_did: &'static str,
    relays: &'static [&'static str],
}

const PRESETS: &[Preset] = &[
    Preset {
        name: "Bluesky",
        appview_url: "https://api.bsky.app",
        appview_did: "did:web:api.bsky.app",
        relays: &["bsky.network"],
    },
    Preset {
        name: "BlackSky",
        appview_url: "https://api.blacksky.community",
        appview_did: "did:web:api.blacksky.community",
        relays: &["atproto.africa"],
    },
];

/// The variables that would override a choice made here.
const OVERRIDING_VARIABLES: &[&str] = &["ATBOX_APPVIEW_URL", "ATBOX_APPVIEW_DID", "ATBOX_RELAYS"];

/// `GET /setup/owner/services`: what the box uses now, and the presets.
pub(crate) async fn current(State(ctx): State<Ctx>, headers: HeaderMap) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    let presets: Vec<Value> = PRESETS
        .iter()
        .map(|p| {
            json!({ "name": p.name, "appviewUrl": p.appview_url, "appviewDid": p.appview_did, "relays": p.relays })
        })
        .collect();
    Json(json!({
        "appviewUrl": ctx.config.appview_url,
        "appviewDid": ctx.config.appview_did,
        "relays": ctx.config.relays,
        "presets": presets,
    }))
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Choice {
    appview_url: String,
    appview_did: String,
    relays: Vec<String>,
}

/// `POST /setup/owner/services`: saves the owner's choice and restarts under it.
pub(crate) async fn choose(
    State(ctx): State<Ctx>,
    headers: HeaderMap,
    Json(choice): Json<Choice>,
) -> Response {
    if let Err(refused) = owner(&ctx, &headers).await {
        return refused;
    }
    match save(&ctx, choice).await {
        Ok(answer) => (StatusCode::ACCEPTED, Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn save(ctx: &Ctx, choice: Choice) -> Result<Value, XrpcError> {
    let invalid = |m: String| XrpcError::named("InvalidServices", m);
    if let Some(var) = OVERRIDING_VARIABLES
        .iter()
        .find(|v| std::env::var_os(v).is_some())
    {
        return Err(invalid(format!(
            "atbox's environment sets {var}, which would win over this choice: change it there"
        )));
    }
    let url = choice.appview_url.trim().trim_end_matches('/').to_owned();
    if !url.starts_with("https://") {
        return Err(invalid(format!(
            "the AppView URL must start with https:// (got {url:?})"
        )));
    }
    let relays: Vec<String> = choice
        .relays
        .iter()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    let mut settings = ctx.config.settings.clone().unwrap_or_default();
    settings.appview_url = Some(url);
    settings.appview_did = Some(choice.appview_did.trim().to_owned());
    settings.relays = Some(relays);
    // The same checks as the config file's keys, on the choice alone.
    let checked = crate::config::load_with(None, &|_| None, Some(settings.clone()))
        .map_err(|e| invalid(e.to_string()))?;
    let data_dir = ctx.config.data_dir.clone();
    tokio::task::spawn_blocking(move || settings.save(&data_dir))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?
        .map_err(|e| XrpcError::internal(format!("could not save the settings: {e}")))?;
    tracing::info!(
        appview = ?checked.appview_url,
        relays = ?checked.relays,
        "setup: the owner chose the network services; restarting"
    );
    ctx.restart.notify_one();
    Ok(json!({
        "restarting": true,
        "appviewUrl": checked.appview_url,
        "appviewDid": checked.appview_did,
        "relays": checked.relays,
    }))
}
