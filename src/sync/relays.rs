//! Relays: asking them to crawl us, and a watchdog that checks they keep up.
//!
//! "My posts don't show up" is the most common self-hosting complaint, and it is almost
//! always a relay that stopped (or never started) following the PDS. So atbox asks each
//! configured relay to crawl it at start, after the first write that follows a quiet
//! period, and on demand (`atbox relay crawl`); and every few minutes it asks each relay
//! what it knows of our accounts (`getRepoStatus`, or `getLatestCommit`), compares with
//! our heads, and re-requests a crawl when a relay lags, has forgotten us, or thinks an
//! active account is inactive. Findings are stored for `atbox status` (and the screen).

use crate::error::XrpcError;
use crate::pds::{AppState, Ctx};
use crate::storage::relays::{self as db, RelayStatus};
use crate::storage::unix_now;
use crate::storage::{accounts, repos};
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A write after this long without one is a "first write after a quiet period".
const QUIET_PERIOD_SECS: i64 = 15 * 60;
/// How long after a write a relay may still be behind before it counts as lagging
/// (shorter when the watchdog is set to look more often).
const LAG_GRACE_SECS: i64 = 30;

fn lag_grace(state: &AppState) -> i64 {
    LAG_GRACE_SECS.min(2 * state.config.relay_check_interval_secs as i64)
}

/// What the watchdog concluded about one relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelayState {
    Ok,
    Lagging,
    NotCrawling,
    Unreachable,
}

impl RelayState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RelayState::Ok => "ok",
            RelayState::Lagging => "lagging",
            RelayState::NotCrawling => "not crawling",
            RelayState::Unreachable => "unreachable",
        }
    }
}

/// The base URL of a relay given as a host (`bsky.network`), a host:port or a URL.
pub(crate) fn relay_url(relay: &str) -> String {
    if relay.contains("://") {
        return relay.trim_end_matches('/').to_owned();
    }
    let host = relay.split(':').next().unwrap_or(relay);
    let local = host == "localhost" || host.starts_with("127.") || host == "[::1]";
    format!(
        "{}://{}",
        if local { "http" } else { "https" },
        relay.trim_end_matches('/')
    )
}

/// The name relays should crawl: our public host, with its port when not the default.
pub(crate) fn crawl_hostname(state: &AppState) -> String {
    reqwest::Url::parse(&state.config.public_url)
        .ok()
        .and_then(|u| {
            Some(match u.port() {
                Some(p) => format!("{}:{p}", u.host_str()?),
                None => u.host_str()?.to_owned(),
            })
        })
        .unwrap_or_else(|| state.config.hostname.clone())
}

/// Asks one relay to crawl us.
pub(crate) async fn request_crawl(state: &AppState, relay: &str) -> Result<(), String> {
    let url = format!("{}/xrpc/com.atproto.sync.requestCrawl", relay_url(relay));
    let res = state
        .http
        .post(url)
        .json(&json!({ "hostname": crawl_hostname(state) }))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    if res.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        ))
    }
}

/// Records a crawl request to `relay` and how it went.
async fn remember_crawl(state: &AppState, relay: &str, outcome: &Result<(), String>) {
    let (relay, failure, now) = (
        relay.to_owned(),
        outcome.as_ref().err().cloned(),
        unix_now(),
    );
    let _ = state
        .storage
        .write(move |conn| {
            let previous = db::get(conn, &relay)?;
            let status = match failure {
                None => RelayStatus {
                    state: previous
                        .as_ref()
                        .map_or("unknown".into(), |p| p.state.clone()),
                    detail: previous
                        .as_ref()
                        .map_or("crawl requested".into(), |p| p.detail.clone()),
                    checked_at: previous.as_ref().map_or(now, |p| p.checked_at),
                    last_crawl_request: Some(now),
                    relay,
                },
                Some(e) => RelayStatus {
                    state: RelayState::Unreachable.as_str().into(),
                    detail: format!("crawl request failed: {e}"),
                    checked_at: now,
                    last_crawl_request: previous.and_then(|p| p.last_crawl_request),
                    relay,
                },
            };
            db::put(conn, &status)?;
            Ok::<_, XrpcError>(())
        })
        .await;
}

/// What a relay says about one repo: `(active, rev)`, `None` if it does not know it.
async fn relay_view(
    state: &AppState,
    base: &str,
    did: &str,
) -> Result<Option<(bool, Option<String>)>, String> {
    let get = |nsid: &str| {
        state
            .http
            .get(format!("{base}/xrpc/{nsid}?did={did}"))
            .timeout(Duration::from_secs(15))
            .send()
    };
    let res = get("com.atproto.sync.getRepoStatus")
        .await
        .map_err(|e| e.to_string())?;
    let (status, body): (u16, Value) = (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    );
    let not_found = |b: &Value| b["error"] == "RepoNotFound";
    match status {
        200 => Ok(Some((
            body["active"].as_bool().unwrap_or(false),
            body["rev"].as_str().map(str::to_owned),
        ))),
        400 if not_found(&body) => Ok(None),
        404 | 501 => {
            // An older relay without getRepoStatus: fall back to getLatestCommit.
            let res = get("com.atproto.sync.getLatestCommit")
                .await
                .map_err(|e| e.to_string())?;
            let (status, body): (u16, Value) = (
                res.status().as_u16(),
                res.json().await.unwrap_or(Value::Null),
            );
            match status {
                200 => Ok(Some((true, body["rev"].as_str().map(str::to_owned)))),
                400 if not_found(&body) => Ok(None),
                s => Err(format!("getLatestCommit answered {s}")),
            }
        }
        s => Err(format!("getRepoStatus answered {s}")),
    }
}

/// Compares one relay's view of every active account with our heads.
pub(crate) async fn check_relay(state: &AppState, relay: &str) -> (RelayState, String) {
    let heads = state
        .storage
        .read(|conn| {
            let mut out = Vec::new();
            for a in accounts::list(conn)? {
                if a.status == accounts::AccountStatus::Active {
                    if let Some(h) = repos::head(conn, &a.did)? {
                        out.push((a.did, h.rev.into_string()));
                    }
                }
            }
            Ok::<_, XrpcError>(out)
        })
        .await
        .unwrap_or_default();
    let base = relay_url(relay);
    if heads.is_empty() {
        return match state
            .http
            .get(format!("{base}/xrpc/_health"))
            .timeout(Duration::from_secs(15))
            .send()
            .await
        {
            Ok(r) if !r.status().is_server_error() => (
                RelayState::Ok,
                "reachable; no accounts to follow yet".into(),
            ),
            Ok(r) => (RelayState::Unreachable, format!("answered {}", r.status())),
            Err(e) => (RelayState::Unreachable, e.to_string()),
        };
    }
    let recently_written = unix_now()
        - state
            .storage
            .writer
            .stats
            .last_event_at
            .load(Ordering::Relaxed)
        < lag_grace(state);
    let mut worst = (
        RelayState::Ok,
        format!("following all {} accounts", heads.len()),
    );
    for (did, our_rev) in heads {
        let found = match relay_view(state, &base, &did).await {
            Err(e) => return (RelayState::Unreachable, e),
            Ok(v) => v,
        };
        let verdict = match found {
            None => (RelayState::NotCrawling, format!("does not know {did}")),
            Some((false, _)) => (RelayState::NotCrawling, format!("thinks {did} is inactive")),
            Some((true, rev)) if rev.as_deref().is_some_and(|r| r >= our_rev.as_str()) => continue,
            Some((true, _)) if recently_written => continue,
            Some((true, rev)) => (
                RelayState::Lagging,
                format!(
                    "has {did} at rev {}, we are at {our_rev}",
                    rev.unwrap_or_else(|| "none".into())
                ),
            ),
        };
        if rank(verdict.0) > rank(worst.0) {
            worst = verdict;
        }
    }
    worst
}

fn rank(s: RelayState) -> u8 {
    match s {
        RelayState::Ok => 0,
        RelayState::Lagging => 1,
        RelayState::NotCrawling => 2,
        RelayState::Unreachable => 3,
    }
}

/// The watchdog and crawl requester, for as long as the server runs.
pub(crate) async fn run(ctx: Ctx) {
    if ctx.config.relays.is_empty() {
        return;
    }
    let interval = Duration::from_secs(ctx.config.relay_check_interval_secs.max(1));
    let crawl_every = 2 * ctx.config.relay_check_interval_secs.max(1) as i64;
    let mut last_crawl: std::collections::HashMap<String, i64> = Default::default();
    for relay in &ctx.config.relays {
        let outcome = request_crawl(&ctx, relay).await;
        if let Err(e) = &outcome {
            tracing::warn!(%relay, "crawl request failed: {e}");
        }
        remember_crawl(&ctx, relay, &outcome).await;
        last_crawl.insert(relay.clone(), unix_now());
    }
    // Every durable change (records, new accounts, imports, handle and status changes)
    // reaches us as the writer's published events; the first after a quiet period
    // asks the relays to crawl.
    let mut events = ctx.storage.writer.subscribe();
    let mut last_event = unix_now();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        let woke_by_write = tokio::select! {
            _ = ticker.tick() => false,
            event = events.recv() => {
                if matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
                let now = unix_now();
                if now - std::mem::replace(&mut last_event, now) < QUIET_PERIOD_SECS {
                    continue;
                }
                true
            }
        };
        for relay in &ctx.config.relays {
            let due = unix_now() - last_crawl.get(relay).copied().unwrap_or(0) >= crawl_every;
            if woke_by_write {
                if due {
                    let outcome = request_crawl(&ctx, relay).await;
                    remember_crawl(&ctx, relay, &outcome).await;
                    last_crawl.insert(relay.clone(), unix_now());
                }
                continue;
            }
            let (state, detail) = check_relay(&ctx, relay).await;
            let mut crawl_requested = None;
            if matches!(state, RelayState::Lagging | RelayState::NotCrawling) && due {
                tracing::info!(%relay, "relay is {}: {detail}; asking it to crawl again", state.as_str());
                let outcome = request_crawl(&ctx, relay).await;
                last_crawl.insert(relay.clone(), unix_now());
                crawl_requested = Some(unix_now()).filter(|_| outcome.is_ok());
            }
            let status = RelayStatus {
                relay: relay.clone(),
                state: state.as_str().to_owned(),
                detail,
                checked_at: unix_now(),
                last_crawl_request: crawl_requested.or(last_crawl.get(relay).copied()),
            };
            let _ = ctx
                .storage
                .write(move |conn| Ok::<_, XrpcError>(db::put(conn, &status)?))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn relay_urls() {
        assert_eq!(super::relay_url("bsky.network"), "https://bsky.network");
        assert_eq!(super::relay_url("127.0.0.1:2470"), "http://127.0.0.1:2470");
        assert_eq!(super::relay_url("http://relay.test/"), "http://relay.test");
    }
}
