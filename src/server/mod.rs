//! `atbox serve`: opens the data directory, binds the listener and runs the HTTP server
//! and background tasks until SIGINT/SIGTERM, or until the setup page asks for a restart
//! (new settings that the whole server is rebuilt with: `cli` then re-executes atbox).

mod routes;

pub use routes::router;

use crate::config::Config;
use crate::device::mdns::Mdns;
use crate::device::runner::DisplaySettings;
use crate::device::Snapshot;
use crate::pds::{AppState, Ctx};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Files atbox creates are for its own user only (the database holds keys).
pub fn restrict_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM: the process ends.
    Stopped,
    /// The setup page saved settings: start again with them.
    Restart,
}

/// Runs the server until a shutdown signal or a restart request.
pub async fn serve(config: Config) -> anyhow::Result<Exit> {
    restrict_umask();
    let listen = config.listen;
    let public_url = config.public_url.clone();
    let data_dir = config.data_dir.clone();
    // The screen comes up first, so a slow start (migrations on an SD card) shows.
    let (snapshots, screen) = watch::channel(Snapshot::booting("opening the database", 1, 3));
    crate::device::runner::spawn(&config.display, display_settings(&config), screen);
    let mut state = AppState::open(config)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    state.snapshots = snapshots.subscribe();
    let state: Ctx = Arc::new(state);
    // The backup key is made at first start, so the setup page can show its phrase.
    if let Err(e) = crate::backup::BackupKey::load_or_create(&data_dir) {
        tracing::error!("cannot make the backup key in {}: {e}", data_dir.display());
    }
    snapshots.send_replace(Snapshot::booting("starting the network", 2, 3));
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen}: is another atbox (or something else) using it? Choose another with `listen` / ATBOX_LISTEN")
    })?;
    tracing::info!(
        "atbox {} serving {public_url} on {listen}, data in {}",
        env!("CARGO_PKG_VERSION"),
        data_dir.display()
    );
    if let Some(settings) = &state.config.settings {
        tracing::info!(
            "in force from the setup page ({}): {settings:?}",
            crate::config::Settings::path(&data_dir).display()
        );
    }
    println!(
        "atbox is running: {public_url} (listening on {listen}; data in {})",
        data_dir.display()
    );
    let mdns = start_mdns(&state.config);
    tokio::spawn(crate::pds::status::run(state.clone(), snapshots, mdns));
    notify_systemd(state.clone());
    crate::oauth::restore(&state).await;
    tokio::spawn(crate::pds::blobs::garbage_collector(state.clone()));
    tokio::spawn(sweep_rate_limits(state.clone()));
    tokio::spawn(crate::sync::firehose::compact_log(state.clone()));
    tokio::spawn(crate::sync::relays::run(state.clone()));
    tokio::spawn(crate::pds::doctor::watch(state.clone()));
    tokio::spawn(crate::setup::finish_saved_claim(state.clone()));
    tokio::spawn(crate::backup::watch(state.config.clone()));
    let app = routes::router(state.clone());
    // One stop signal for both sockets.
    let (stop, stopped) = watch::channel(false);
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    let waiter = state.clone();
    tokio::spawn(async move {
        let exit = tokio::select! {
            _ = shutdown_signal() => Exit::Stopped,
            _ = waiter.restart.notified() => Exit::Restart,
        };
        if exit == Exit::Restart {
            tracing::info!("restarting with the settings saved by the setup page");
            let _ = sd_notify::notify(
                false,
                &[sd_notify::NotifyState::Status(
                    "restarting with new settings",
                )],
            );
        }
        let _ = exit_tx.send(exit);
        let _ = stop.send(true);
    });
    let https = crate::tls::start(&state, app.clone(), stopped.clone()).await?;
    let plain = crate::tls::plain_router(app, state.clone(), https.as_ref());
    // Responses go out as written (no Nagle): a streamed export's last chunk must not
    // wait for the client's delayed ACK (40 ms a response).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    crate::http::serve::serve(listener, plain, connection_caps(&state.config), stopped).await;
    let exit = exit_rx.await.unwrap_or(Exit::Stopped);
    if exit == Exit::Stopped {
        tracing::info!("atbox stopped");
    }
    Ok(exit)
}

/// The connection caps of both listeners (reverse proxies carry every client: no
/// per-address cap for them).
pub fn connection_caps(config: &Config) -> crate::http::serve::Caps {
    crate::http::serve::Caps {
        exempt: config.trusted_proxies.clone(),
        ..Default::default()
    }
}

/// Drops idle rate-limit buckets every few minutes, so their memory follows the
/// current traffic rather than all traffic since start.
async fn sweep_rate_limits(state: Ctx) {
    let mut every = tokio::time::interval(Duration::from_secs(5 * 60));
    loop {
        every.tick().await;
        state.limits.sweep();
        state.setup_attempts.sweep();
    }
}

fn display_settings(config: &Config) -> DisplaySettings {
    DisplaySettings {
        rotation: config.display_rotation,
        dim_after: Duration::from_secs(config.display_dim_secs),
        sleep_after: Duration::from_secs(config.display_sleep_secs),
        ..Default::default()
    }
}

/// Advertises the box on the LAN when `mdns` is on; a failure is logged, not fatal
/// (the PDS works without it, by IP address).
fn start_mdns(config: &Config) -> Option<Arc<Mdns>> {
    if !config.mdns {
        return None;
    }
    match Mdns::start(&config.mdns_name, config.listen.port()) {
        Ok(m) => {
            tracing::info!("mDNS: advertising {}.local", config.mdns_name);
            Some(Arc::new(m))
        }
        Err(e) => {
            tracing::warn!("{e}; the box is still reachable by its IP address");
            None
        }
    }
}

/// Tells systemd (`Type=notify`) that the PDS is serving, and keeps its watchdog fed
/// while the database still answers (a wedged server gets restarted). Does nothing when
/// not started by systemd.
fn notify_systemd(state: Ctx) {
    let _ = sd_notify::notify(
        false,
        &[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status("serving"),
        ],
    );
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        tokio::spawn(async move {
            loop {
                // Fed only while both reads and the writer thread answer: a dead
                // writer (every write failing) gets the service restarted.
                let reads = state.storage.read(|conn| {
                    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                        .map_err(crate::storage::StorageError::from)
                });
                let reads_ok = matches!(tokio::time::timeout(every, reads).await, Ok(Ok(1)));
                if reads_ok && state.storage.writer.alive(every).await {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                }
                tokio::time::sleep(every).await;
            }
        });
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
