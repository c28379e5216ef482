//! `atbox status` and `atbox relay crawl`: what the box is doing, from its data
//! directory (the server need not be reachable).

use crate::config::Config;
use crate::pds::AppState;
use crate::storage::unix_now;
use crate::storage::{accounts, relays, repos};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum RelayCommand {
    /// Ask every configured relay to crawl this PDS now.
    Crawl,
}

fn ago(t: i64) -> String {
    let secs = (unix_now() - t).max(0);
    match secs {
        0..=119 => format!("{secs}s ago"),
        120..=7199 => format!("{}m ago", secs / 60),
        _ => format!("{}h ago", secs / 3600),
    }
}

fn human(bytes: f64) -> String {
    crate::device::screens::human_bytes(bytes as u64)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Storage health: sizes, free space, and (from the running server) how much it writes.
async fn storage_health(config: &Config) {
    let db: u64 = ["atbox.sqlite", "atbox.sqlite-wal"]
        .iter()
        .map(|f| {
            std::fs::metadata(config.data_dir.join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    let blobs = dir_size(&config.data_dir.join("blobs"));
    println!("\nstorage:");
    println!("  database            {}", human(db as f64));
    println!("  blobs               {}", human(blobs as f64));
    let space = crate::device::sysinfo::disk_space(&config.data_dir);
    if let Some((free, total)) = space {
        println!(
            "  free space          {} of {}",
            human(free as f64),
            human(total as f64)
        );
    }
    let ip = if config.listen.ip().is_unspecified() {
        [127, 0, 0, 1].into()
    } else {
        config.listen.ip()
    };
    let url = format!(
        "http://{}/_atbox/status",
        std::net::SocketAddr::new(ip, config.listen.port())
    );
    let live: Option<serde_json::Value> = async {
        let res = reqwest::Client::new()
            .get(&url)
            .timeout(std::time::Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        res.json().await.ok()
    }
    .await;
    let Some(live) = live else {
        println!(
            "  (the server is not running at {}: no write figures)",
            config.listen
        );
        return;
    };
    let up = (unix_now() - live["startedAt"].as_i64().unwrap_or(0)).max(1) as f64;
    let bytes = live["writeBytes"].as_f64().unwrap_or(0.0);
    let writes = live["writes"].as_f64().unwrap_or(0.0);
    let fsyncs = live["fsyncs"].as_f64().unwrap_or(0.0);
    let per_day = bytes / up * 86400.0;
    println!(
        "  written since start {} in {:.1} h ({}/day)",
        human(bytes),
        up / 3600.0,
        human(per_day)
    );
    if writes > 0.0 {
        println!(
            "  per write           {:.2} fsyncs, {}",
            fsyncs / writes,
            human(bytes / writes)
        );
    }
    if let Some((_, total)) = space {
        // Consumer SD cards are rated for roughly a thousand full writes (wear levelling
        // spreads them over the card); what this rate would use of that in a year:
        let per_year = per_day * 365.0;
        let endurance = total as f64 * 1000.0;
        println!(
            "  wear estimate       {}/year: about {:.3}% of this card's life per year (assuming ~1000 full writes)",
            human(per_year),
            per_year / endurance * 100.0
        );
    }
    if let Some(name) = live["mdnsName"].as_str() {
        println!("\nlan: advertised as {name} (mDNS)");
    }
}

/// HTTPS: the mode and each stored certificate's expiry.
fn print_certificates(config: &Config) {
    let certs = crate::storage::certs::stored_certificates(&config.data_dir);
    if config.tls != crate::config::TlsMode::Off || !certs.is_empty() {
        println!("\nhttps: tls = {:?}", config.tls);
        for (name, not_after) in certs {
            let days = (not_after - unix_now()) as f64 / 86400.0;
            println!(
                "  {name:<30} valid until {} ({days:.1} days)",
                chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default()
            );
        }
    }
}

/// Each relay (configured, or reported on by the running server) and what the
/// watchdog last found.
fn print_relays(configured: Vec<String>, relay_rows: &[crate::storage::relays::RelayStatus]) {
    println!("\nrelays:");
    // The configured relays, and any the running server (perhaps configured
    // differently from this shell) has reported on.
    let mut relays_shown = configured;
    for r in relay_rows {
        if !relays_shown.contains(&r.relay) {
            relays_shown.push(r.relay.clone());
        }
    }
    if relays_shown.is_empty() {
        println!("  none configured (set relays / ATBOX_RELAYS, e.g. bsky.network)");
    }
    for relay in relays_shown {
        match relay_rows.iter().find(|r| r.relay == relay) {
            None => println!("  {relay:<28} not checked yet"),
            Some(r) => {
                let crawl = r
                    .last_crawl_request
                    .map(|t| format!("; crawl requested {}", ago(t)))
                    .unwrap_or_default();
                println!(
                    "  {relay:<28} {:<13} {} (checked {}{crawl})",
                    r.state,
                    r.detail,
                    ago(r.checked_at)
                );
            }
        }
    }
}

/// "last good backup: 12 min ago, USB", and anything wrong with backups.
fn print_backups(config: &Config) {
    let dests = crate::backup::destinations(config);
    let status = crate::backup::status::BackupStatus::load(&config.data_dir);
    let summary = status.summary(&dests, crate::storage::unix_now());
    println!("  backups: {}", summary.line);
    for d in &dests {
        let label = d.label();
        if let Some(e) = status.destinations.iter().find(|s| s.label == label) {
            if let Some(err) = &e.error {
                println!("    {} ({}): last run failed: {err}", label, d.kind());
            }
        }
    }
    if let Some(alert) = &summary.alert {
        println!("  ALERT: {}", alert.sentence());
    }
    if dests.is_empty() {
        println!("    set backup_dir (a USB drive) or backup_s3_url: README \"Backups\"");
    }
}

pub(crate) async fn status(config: Config) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    println!(
        "atbox {}  {}  (data in {})",
        env!("CARGO_PKG_VERSION"),
        config.public_url,
        config.data_dir.display()
    );
    if config.settings.is_some() {
        println!(
            "  settings chosen on the setup page ({}; ATBOX_* variables still win)",
            crate::config::Settings::path(&config.data_dir).display()
        );
    }
    match (&config.appview_url, &config.appview_did) {
        (Some(url), Some(did)) => println!("  appview: {url} ({did})"),
        _ => println!("  appview: none (app.bsky calls answer 501; choose one on the setup page)"),
    }
    println!(
        "  email: {}",
        match &config.smtp_url {
            Some(_) => format!("one-time codes are emailed from {}", config.smtp_from),
            None => "no smtp_url: one-time codes are shown on the screen and the setup page".into(),
        }
    );
    print_backups(&config);
    storage_health(&config).await;
    print_certificates(&config);
    let relays_configured = config.relays.clone();
    let state = AppState::open(config)?;
    let bounds = state.storage.log.seq_bounds();
    let (rows, relay_rows) = state
        .storage
        .read(|conn| {
            let mut rows = Vec::new();
            for a in accounts::list(conn)? {
                let head = repos::head(conn, &a.did)?;
                let records = repos::record_count(conn, &a.did)?;
                rows.push((a, head, records));
            }
            Ok::<_, anyhow::Error>((rows, relays::all(conn)?))
        })
        .await?;
    println!("\naccounts: {}", rows.len());
    for (a, head, records) in rows {
        let rev = head
            .map(|h| h.rev.into_string())
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<30} {}  {}  rev {rev}  {records} records",
            a.handle,
            a.did,
            a.status.as_str()
        );
    }
    match bounds {
        Some((oldest, newest)) => println!("\nfirehose: events {oldest}..{newest} kept"),
        None => println!("\nfirehose: no events yet"),
    }
    print_relays(relays_configured, &relay_rows);
    Ok(())
}

pub(crate) async fn relay(config: Config, cmd: RelayCommand) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    let RelayCommand::Crawl = cmd;
    if config.relays.is_empty() {
        anyhow::bail!("no relays configured: set relays (ATBOX_RELAYS), e.g. bsky.network");
    }
    let relays = config.relays.clone();
    let state = AppState::open(config)?;
    let mut failed = 0;
    for relay in relays {
        match crate::sync::relays::request_crawl(&state, &relay).await {
            Ok(()) => println!(
                "{relay}: crawl requested for {}",
                crate::sync::relays::crawl_hostname(&state)
            ),
            Err(e) => {
                failed += 1;
                println!("{relay}: {e}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} relay(s) did not accept the crawl request");
    }
    Ok(())
}
