//! `atbox firstboot`: applies the configuration a user put on the SD card's boot
//! partition (`/boot/firmware/atbox.toml`, editable from any computer) on the first
//! boot of the appliance image, exactly once.
//!
//! The file is an ordinary atbox config plus an optional `[first_account]` table
//! (`handle`, `email`, `password`). The config part is merged over the image's own
//! `/etc/atbox/atbox.toml` (the appliance defaults: port 80, the OLED, mDNS), checked,
//! and installed there; the account is created; then the password is removed from
//! the FAT copy (anyone with the card could read it) and a marker makes later boots skip
//! all this. A failure leaves no marker, so the next boot tries again.

use crate::pds::AppState;
use anyhow::{bail, Context};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub(crate) struct FirstbootArgs {
    /// The user-editable config on the boot partition.
    #[arg(long, default_value = "/boot/firmware/atbox.toml")]
    boot_config: PathBuf,
    /// Where the system config is installed.
    #[arg(long, default_value = crate::config::SYSTEM_CONFIG)]
    system_config: PathBuf,
    /// Written when first boot has completed.
    #[arg(long, default_value = "/var/lib/atbox/.firstboot-done")]
    marker: PathBuf,
    /// The system user the service runs as; files it needs are handed to it.
    #[arg(long, default_value = "atbox")]
    user: String,
}

/// Writes a file durably with its permission bits, creating its directory.
fn write_private(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::storage::write_durably_with_mode(path, text.as_bytes(), mode)?;
    Ok(())
}

/// The uid and gid of a system user, if it exists.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let name = std::ffi::CString::new(user).ok()?;
    // SAFETY: getpwnam reads a static buffer; we copy the two ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: non-null pointer returned by getpwnam.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

fn chown_tree(path: &Path, ids: (u32, u32)) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), ids)?;
        }
    }
    Ok(())
}

/// Creates the first account (unless it exists already), as the owner.
fn create_first_account(
    config: crate::config::Config,
    handle: String,
    email: String,
    password: String,
) -> anyhow::Result<()> {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        crate::server::restrict_umask();
        let state = AppState::open(config)?;
        if state
            .find_account(&handle)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?
            .is_some()
        {
            return Ok(());
        }
        let input = crate::pds::accounts::NewAccount {
            handle: handle.clone(),
            email: Some(email),
            password: Some(password),
            by_owner: true,
            ..Default::default()
        };
        let created = crate::pds::accounts::create_account(&state, input, None)
            .await
            .map_err(|e| anyhow::anyhow!(e.message))?;
        println!("created the first account: {handle} ({})", created.did);
        Ok::<_, anyhow::Error>(())
    })
}

pub(crate) fn run(args: FirstbootArgs) -> anyhow::Result<()> {
    if args.marker.exists() {
        println!("first boot already done ({} exists)", args.marker.display());
        return Ok(());
    }
    let ids = user_ids(&args.user);
    if args.boot_config.exists() {
        let text = std::fs::read_to_string(&args.boot_config)
            .with_context(|| format!("cannot read {}", args.boot_config.display()))?;
        let mut table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", args.boot_config.display()))?;
        let account = table.remove("first_account");
        // The user's keys win; the image's defaults fill in the rest.
        let mut merged: toml::Table = match std::fs::read_to_string(&args.system_config) {
            Ok(defaults) => toml::from_str(&defaults)
                .with_context(|| format!("{} is not valid TOML", args.system_config.display()))?,
            Err(_) => toml::Table::new(),
        };
        merged.extend(table);
        let config_text = toml::to_string(&merged)?;
        write_private(&args.system_config, &config_text, 0o640)?;
        if let Some((_, gid)) = ids {
            std::os::unix::fs::chown(&args.system_config, Some(0), Some(gid)).ok();
        }
        let config = crate::config::load(Some(&args.system_config), &|k| std::env::var(k).ok())?;
        println!(
            "installed {} from {}",
            args.system_config.display(),
            args.boot_config.display()
        );
        if let Some(account) = account {
            let field = |k: &str| account.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let (Some(handle), Some(email), Some(password)) =
                (field("handle"), field("email"), field("password"))
            else {
                bail!(
                    "[first_account] in {} needs handle, email and password",
                    args.boot_config.display()
                );
            };
            let data_dir = config.data_dir.clone();
            create_first_account(config, handle, email, password)?;
            // The card's copy keeps everything but the password.
            let mut cleaned: toml::Table = toml::from_str(&text)?;
            if let Some(toml::Value::Table(t)) = cleaned.get_mut("first_account") {
                t.remove("password");
            }
            let note = "# atbox removed the first account's password from this file after creating the account.\n";
            write_private(
                &args.boot_config,
                &format!("{note}{}", toml::to_string(&cleaned)?),
                0o600,
            )
            .with_context(|| format!("cannot rewrite {}", args.boot_config.display()))?;
            if let Some(ids) = ids {
                chown_tree(&data_dir, ids).ok();
            }
        }
    }
    write_private(&args.marker, "done\n", 0o644)?;
    println!("first boot complete");
    Ok(())
}
