//! Settings the owner chose on the LAN setup page, kept in the data directory.
//!
//! The service cannot write `/etc/atbox/atbox.toml`: the unit runs with
//! `ProtectSystem=strict`, and that file is the owner's (comments and all). So what the
//! owner picks on the setup page — the public host name and the handle domain that goes
//! with it, the AppView and the relays the box uses — is saved to `<data_dir>/settings.toml`, and [`super::load`] lays it over
//! the config file. Environment variables still win over both, as everywhere. The file
//! is written durably (temp file, fsync, rename, fsync the directory) and read at every
//! start; `atbox status` and the start-up log say when it is in force.

use super::{bad, ConfigError, ConfigFile, StringOrList};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's name inside `data_dir`.
pub const FILE: &str = "settings.toml";

/// What the setup page may set. Every key optional; unknown keys refused.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handle_domains: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appview_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appview_did: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relays: Option<Vec<String>>,
}

impl Settings {
    /// The settings for serving at `hostname`, with handles under it (`alice.<hostname>`).
    pub fn public_name(hostname: &str) -> Settings {
        let hostname = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
        Settings {
            handle_domains: Some(vec![format!(".{hostname}")]),
            hostname: Some(hostname),
            ..Settings::default()
        }
    }

    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// The saved settings, if the setup page ever saved any.
    pub fn read(data_dir: &Path) -> Result<Option<Settings>, ConfigError> {
        let path = Settings::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(bad(
                    "settings",
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        toml::from_str(&text).map(Some).map_err(|e| {
            bad(
                "settings",
                format!(
                    "{} ({}; delete the file to go back to the config file's values)",
                    e.message(),
                    path.display()
                ),
            )
        })
    }

    /// Saves the settings so that a power cut leaves the old file or the new one.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let text = format!(
            "# Chosen on atbox's setup page; overrides /etc/atbox/atbox.toml (ATBOX_* variables\n\
             # still win). Delete this file to go back to the config file's values.\n{}",
            toml::to_string(self).expect("settings serialise")
        );
        crate::storage::write_durably(&Settings::path(data_dir), text.as_bytes())
    }

    /// Lays the settings over the config file's keys. A new host name also drops the
    /// file's `public_url`, which was derived for the old name.
    pub(super) fn apply(&self, file: &mut ConfigFile) {
        if let Some(hostname) = &self.hostname {
            file.hostname = Some(hostname.clone());
            file.public_url = None;
        }
        if let Some(domains) = &self.handle_domains {
            file.handle_domains = Some(StringOrList::Many(domains.clone()));
        }
        if let (Some(url), Some(did)) = (&self.appview_url, &self.appview_did) {
            file.appview_url = Some(url.clone());
            file.appview_did = Some(did.clone());
        }
        if let Some(relays) = &self.relays {
            file.relays = Some(StringOrList::Many(relays.clone()));
        }
    }
}
