//! The status collector: every few seconds, the facts the screen shows, gathered into a
//! [`Snapshot`] and published on a watch channel.
//!
//! This is the only place that reads storage on the display's behalf; the display and
//! (later) the setup page only read snapshots. It also keeps the mDNS TXT record's
//! account fields current.

use super::{AppState, Ctx};
use crate::device::mdns::Mdns;
use crate::device::snapshot::{BackupView, Phase, RelayView, SetupInfo, Snapshot};
use crate::device::sysinfo;
use crate::storage::{accounts, blobs, relays, repos, StorageError};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the snapshot is refreshed.
const EVERY: Duration = Duration::from_secs(3);

/// What the collector remembers between rounds.
#[derive(Default)]
struct Memory {
    /// Day number (UTC) and the process's storage writes when it began.
    day: Option<(i64, u64)>,
    /// When the first relay was first seen in a state other than "ok".
    relay_bad_since: Option<i64>,
}

/// The setup page's address as a phone on the LAN would type it.
fn setup_url(state: &AppState, addresses: &[IpAddr]) -> String {
    let listen = state.config.listen;
    let host = if listen.ip().is_unspecified() {
        addresses
            .iter()
            .find(|a| a.is_ipv4())
            .map_or("atbox.local".to_owned(), |a| a.to_string())
    } else {
        match listen.ip() {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }
    };
    match listen.port() {
        80 => format!("http://{host}/"),
        port => format!("http://{host}:{port}/"),
    }
}

/// The first relay's state for the screen, remembering since when it has been bad.
fn relay_view(
    memory: &mut Memory,
    now: i64,
    first_relay: Option<String>,
    relay_row: Option<relays::RelayStatus>,
) -> RelayView {
    match (first_relay, relay_row) {
        (None, _) => RelayView::NoneConfigured,
        (Some(r), None) => RelayView::NotCheckedYet(r),
        (Some(r), Some(row)) => {
            if row.state == "ok" {
                memory.relay_bad_since = None;
            } else {
                memory.relay_bad_since.get_or_insert(now);
            }
            RelayView::Checked {
                relay: r,
                state: row.state,
                bad_for_secs: memory.relay_bad_since.map_or(0, |t| now - t),
            }
        }
    }
}

/// Bytes written to storage today: counted from midnight UTC, or from start-up on the
/// first day.
fn written_today(state: &AppState, memory: &mut Memory, now: i64) -> u64 {
    let written = crate::device::sysinfo::write_bytes().saturating_sub(state.write_bytes_at_start);
    let today = now.div_euclid(86400);
    let (day, at_start) = memory.day.get_or_insert((today, 0));
    if *day != today {
        (*day, *at_start) = (today, written);
    }
    written - *at_start
}

async fn collect(state: &AppState, memory: &mut Memory, mdns: Option<&Mdns>) -> Snapshot {
    let now = crate::storage::unix_now();
    let first_relay = state.config.relays.first().cloned();
    let relay_for_db = first_relay.clone();
    let facts = state
        .storage
        .read(move |conn| {
            let first = accounts::list(conn)?.into_iter().next();
            let (mut records, mut blob_count) = (0, 0);
            for a in accounts::list(conn)? {
                records += repos::record_count(conn, &a.did)?;
                blob_count += blobs::blob_count(conn, &a.did)?;
            }
            let relay = match &relay_for_db {
                Some(r) => relays::get(conn, r)?,
                None => None,
            };
            Ok::<_, StorageError>((first, records, blob_count, relay))
        })
        .await;
    let (first, records, blob_count, relay_row) = match facts {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!("status: {e}");
            (None, 0, 0, None)
        }
    };
    let relay = relay_view(memory, now, first_relay, relay_row);
    let bytes_written_today = written_today(state, memory, now);
    let addresses = sysinfo::lan_addresses();
    let disk = sysinfo::disk_space(&state.config.data_dir);
    if let Some(mdns) = mdns {
        mdns.set_account(first.as_ref().map(|a| (a.did.clone(), a.handle.clone())));
    }
    let codes = super::delivery::on_show(state).await;
    let backups = crate::backup::status::summary_now(&state.config, now);
    Snapshot {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        phase: Phase::Running,
        setup: first.is_none().then(|| SetupInfo {
            pairing_code: state.pairing.current(),
            url: setup_url(state, &addresses),
        }),
        handle: first.as_ref().map(|a| a.handle.clone()),
        did: first.map(|a| a.did),
        mdns_name: mdns.map(Mdns::name_in_use),
        addresses,
        relay,
        records,
        blobs: blob_count,
        subscribers: state.storage.writer.subscriber_count(),
        disk_free: disk.map(|d| d.0),
        disk_total: disk.map(|d| d.1),
        bytes_written_today,
        cpu_temp_c: sysinfo::cpu_temperature(),
        uptime_secs: (now - state.started_at).max(0) as u64,
        clock_synced: sysinfo::clock_synced(),
        power: sysinfo::power_flags(),
        failing_checks: state
            .failing_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
        codes,
        backup: BackupView {
            line: backups.short,
            alert: backups.alert.map(|a| a.screen_lines()),
        },
    }
}

/// One snapshot, now (for `atbox display preview --live`).
pub async fn snapshot_once(state: &AppState) -> Snapshot {
    collect(state, &mut Memory::default(), None).await
}

/// Publishes a fresh snapshot every few seconds until the server stops.
pub async fn run(ctx: Ctx, snapshots: watch::Sender<Snapshot>, mdns: Option<Arc<Mdns>>) {
    let mut memory = Memory::default();
    loop {
        let snap = collect(&ctx, &mut memory, mdns.as_deref()).await;
        snapshots.send_replace(snap);
        tokio::time::sleep(EVERY).await;
    }
}
