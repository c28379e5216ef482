//! `atbox status` and `atbox relay crawl`: what the box is doing, from its data
//! directory (the server need not be reachable).

use crate::config::Config;
use crate::pds::{unix_now, AppState};
use crate::storage::{accounts, events, relays, repos};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RelayCommand {
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

pub async fn status(config: Config) -> anyhow::Result<()> {
    crate::server::restrict_umask();
    println!(
        "atbox {}  {}  (data in {})",
        env!("CARGO_PKG_VERSION"),
        config.public_url,
        config.data_dir.display()
    );
    let relays_configured = config.relays.clone();
    let state = AppState::open(config)?;
    let (rows, bounds, relay_rows) = state
        .storage
        .read(|conn| {
            let mut rows = Vec::new();
            for a in accounts::list(conn)? {
                let head = repos::head(conn, &a.did)?;
                let records = repos::record_count(conn, &a.did)?;
                rows.push((a, head, records));
            }
            Ok::<_, anyhow::Error>((rows, events::bounds(conn)?, relays::all(conn)?))
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
    println!("\nrelays:");
    // The configured relays, and any the running server (perhaps configured
    // differently from this shell) has reported on.
    let mut relays_shown = relays_configured;
    for r in &relay_rows {
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
    Ok(())
}

pub async fn relay(config: Config, cmd: RelayCommand) -> anyhow::Result<()> {
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
