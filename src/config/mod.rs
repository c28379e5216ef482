//! Server configuration: a TOML file, every key overridable by an `ATBOX_*` variable,
//! and a development default that runs on a fresh machine with neither.
//!
//! Lookup order: `--config PATH`; else `/etc/atbox/atbox.toml` if it exists; else the
//! built-in development default. Environment variables override the file. The key
//! names and variables are a stable interface (docs, systemd units and tests use them).
//! A bad value stops start-up with one line naming the key and what is wrong.
//! What the owner chose on the LAN setup page (`settings`, kept in `data_dir`) lies
//! between the file and the variables.

mod backup;
mod resolve;
pub mod settings;

pub use backup::{BackupConfig, S3Target};
pub use settings::Settings;

use resolve::resolve;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the system-wide config lives on the appliance image.
pub const SYSTEM_CONFIG: &str = "/etc/atbox/atbox.toml";

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Public host name; the service DID is `did:web:<hostname>`.
    pub hostname: String,
    /// The URL clients and the network use to reach this PDS.
    pub public_url: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub plc_url: String,
    /// Handle suffixes accounts may take, each starting with '.', e.g. `.test`.
    pub handle_domains: Vec<String>,
    pub invite_required: bool,
    pub admin_password: Option<String>,
    pub blob_upload_limit: u64,
    pub relays: Vec<String>,
    pub appview_url: Option<String>,
    pub appview_did: Option<String>,
    /// How long firehose events stay available to cursors.
    pub firehose_backfill_hours: u64,
    /// How many live events a slow firehose subscriber may fall behind before it is
    /// cut off (bounds memory whatever subscribers do).
    pub firehose_buffer_events: usize,
    /// Let proxying reach private and loopback addresses (development and tests only:
    /// otherwise a crafted DID document could aim the PDS at the owner's LAN).
    pub proxy_allow_private: bool,
    /// How often the relay watchdog checks each relay (seconds).
    pub relay_check_interval_secs: u64,
    /// The status display: `none`, `i2c:/dev/i2c-1@0x3c`, or `png:/dir`.
    pub display: crate::device::panel::DisplaySpec,
    /// 0, or 180 for a module mounted upside down.
    pub display_rotation: crate::device::panel::Rotation,
    /// Idle seconds before the screen dims, and before it turns off (0 = never).
    pub display_dim_secs: u64,
    pub display_sleep_secs: u64,
    /// Advertise `<mdns_name>.local` and the PDS service on the LAN.
    pub mdns: bool,
    pub mdns_name: String,
    /// How HTTPS is provided: off (plain HTTP, e.g. behind a reverse proxy), from
    /// certificate files, or obtained over ACME.
    pub tls: TlsMode,
    /// The TLS socket (`listen` stays the plain-HTTP one: redirects, HTTP-01, the LAN).
    pub https_listen: SocketAddr,
    pub acme_directory: String,
    pub acme_email: Option<String>,
    /// The challenge tried first: `tls-alpn-01` (needs only port 443) or `http-01`.
    pub acme_challenge: String,
    /// Extra root certificates (PEM) for the ACME server's own HTTPS.
    pub acme_ca_bundle: Option<PathBuf>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Client addresses no rate limit applies to (a benchmark, a load test on the box).
    pub rate_limit_bypass: Vec<std::net::IpAddr>,
    /// A DNS server to use instead of the system's (host names and handles).
    pub dns_server: Option<SocketAddr>,
    /// Extra root certificates (PEM) for the HTTPS of other services (a private CA on
    /// a lab network, a test's CA), on top of the public web's.
    pub outbound_ca_bundle: Option<PathBuf>,
    /// A URL of the owner's choosing that answers with the caller's public IP address
    /// (e.g. `https://api.ipify.org`); `atbox doctor` compares it with the host name's
    /// DNS records. Never asked unless set.
    pub public_ip_url: Option<String>,
    /// Where one-time codes are emailed from (`smtp://`, `smtps://` or
    /// `smtp://…?tls=required`, with `user:pass@` if the server wants a login); unset,
    /// the codes are shown on the box instead (LAN page, screen, `atbox account tokens`).
    pub smtp_url: Option<String>,
    /// The sender of those emails.
    pub smtp_from: String,
    /// Where and how often backups go (none configured: none are made, and the LAN
    /// page says so).
    pub backup: BackupConfig,
    /// The config file read, if any (`--config`, or the system one).
    pub config_file: Option<PathBuf>,
    /// The setup page's settings in force (from `data_dir`), if any.
    pub settings: Option<Settings>,
}

/// `tls = "off" | "files" | "acme"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    Off,
    /// PEM files, re-read on SIGHUP.
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    Acme,
}

/// Let's Encrypt's production directory, the default ACME server.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// The file form: every key optional, unknown keys refused (a typo should not pass
/// silently on a box the user cannot easily debug).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    hostname: Option<String>,
    public_url: Option<String>,
    listen: Option<String>,
    data_dir: Option<String>,
    plc_url: Option<String>,
    handle_domains: Option<StringOrList>,
    invite_required: Option<bool>,
    admin_password: Option<String>,
    blob_upload_limit: Option<u64>,
    relays: Option<StringOrList>,
    appview_url: Option<String>,
    appview_did: Option<String>,
    firehose_backfill_hours: Option<u64>,
    firehose_buffer_events: Option<usize>,
    proxy_allow_private: Option<bool>,
    relay_check_interval_secs: Option<u64>,
    display: Option<String>,
    display_rotation: Option<u32>,
    display_dim_secs: Option<u64>,
    display_sleep_secs: Option<u64>,
    mdns: Option<bool>,
    mdns_name: Option<String>,
    tls: Option<String>,
    https_listen: Option<String>,
    acme_directory: Option<String>,
    acme_email: Option<String>,
    acme_challenge: Option<String>,
    acme_ca_bundle: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    trusted_proxies: Option<StringOrList>,
    rate_limit_bypass: Option<StringOrList>,
    dns_server: Option<String>,
    public_ip_url: Option<String>,
    outbound_ca_bundle: Option<String>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    backup_dir: Option<String>,
    backup_s3_url: Option<String>,
    backup_s3_access_key_id: Option<String>,
    backup_s3_secret_access_key: Option<String>,
    backup_interval_secs: Option<u64>,
}

/// Lists may be written as TOML arrays or as comma lists (as in the env variables).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_list(self) -> Vec<String> {
        match self {
            StringOrList::One(s) => split_list(&s),
            StringOrList::Many(v) => v
                .into_iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("config: {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Reads the configuration. `explicit` is `--config PATH`; `env` is the process
/// environment (a parameter so tests can pass their own).
pub fn load(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    load_with(explicit, env, None)
}

/// As [`load`], with `settings` in place of those saved in the data directory: the
/// setup page checks a choice this way before it saves it.
pub fn load_with(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    settings: Option<Settings>,
) -> Result<Config, ConfigError> {
    let source = match explicit {
        Some(path) => Some(path.to_owned()),
        None if Path::new(SYSTEM_CONFIG).exists() => Some(PathBuf::from(SYSTEM_CONFIG)),
        None => None,
    };
    let mut file = match &source {
        Some(path) => read_file(path)?,
        None => ConfigFile::default(),
    };
    // The data directory comes from the file and the variables, never from settings.
    let plain = resolve(file.clone(), env)?;
    let settings = match settings {
        Some(s) => Some(s),
        None => Settings::read(&plain.data_dir)?,
    };
    let mut config = match &settings {
        Some(s) => {
            s.apply(&mut file);
            resolve(file, env)?
        }
        None => plain,
    };
    config.config_file = source;
    config.settings = settings;
    Ok(config)
}

/// The development default, as `atbox serve` runs with no file and no variables.
pub fn development_default() -> Config {
    resolve(ConfigFile::default(), &|_| None).expect("the built-in default is valid")
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad("--config", format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.message().to_owned();
        let key = msg.split('`').nth(1).unwrap_or("file").to_owned();
        bad(&key, format!("{} ({})", msg, path.display()))
    })
}

impl Config {
    /// The service DID of this PDS.
    pub fn service_did(&self) -> String {
        format!("did:web:{}", self.hostname)
    }

    /// Whether `handle` falls under one of our handle domains.
    pub fn is_local_handle(&self, handle: &str) -> bool {
        let h = handle.to_ascii_lowercase();
        self.handle_domains
            .iter()
            .any(|d| h.ends_with(d.as_str()) && h.len() > d.len())
    }
}

#[cfg(test)]
mod tests;
