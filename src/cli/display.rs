//! `atbox display preview`: draws a screen to a PNG, with sample data or the box's own.

use crate::config::Config;
use crate::device::screens::{self, Screen};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum DisplayCommand {
    /// Render one screen as the 128x64 OLED would show it.
    Preview {
        /// boot, setup, pds, network, system, alert-network, alert-disk,
        /// alert-clock, alert-relay, alert-power or alert-checks.
        #[arg(long)]
        screen: String,
        /// Where to write the PNG.
        #[arg(long)]
        png: PathBuf,
        /// Pixel size (4 makes a 512x256 picture for documentation).
        #[arg(long, default_value_t = 1)]
        scale: u32,
        /// Use this box's data (the configured data directory) instead of samples.
        #[arg(long)]
        live: bool,
    },
}

pub(crate) async fn run(config: Config, cmd: DisplayCommand) -> anyhow::Result<()> {
    let DisplayCommand::Preview {
        screen,
        png,
        scale,
        live,
    } = cmd;
    let Some(which) = Screen::by_name(&screen) else {
        let names: Vec<&str> = screens::NAMED.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("no screen {screen:?}; choose one of: {}", names.join(", "));
    };
    if !(1..=16).contains(&scale) {
        anyhow::bail!("--scale must be between 1 and 16");
    }
    let snapshot = if live {
        crate::server::restrict_umask();
        let state = crate::pds::AppState::open(config)?;
        crate::pds::status::snapshot_once(&state).await
    } else {
        screens::sample_for(which)
    };
    let frame = screens::render(which, &snapshot);
    std::fs::write(&png, frame.to_png(scale))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", png.display()))?;
    println!("{} ({}x{})", png.display(), 128 * scale, 64 * scale);
    Ok(())
}
