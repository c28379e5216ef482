//! Server configuration: a TOML file, every key overridable by an `ATBOX_*` variable,
//! and a development default that runs on a fresh machine with neither.
//!
//! Lookup order: `--config PATH`; else `/etc/atbox/atbox.toml` if it exists; else the
//! built-in development default. Environment variables override the file. The key
//! names and variables are a stable interface (docs, systemd units and tests use them).
//! A bad value stops start-up with one line naming the key and what is wrong.
//! What the owner chose on the LAN setup page (`settings`, kept in `data_dir`) lies
//! between the file and the variables.

pub mod settings;

pub use settings::Settings;

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
    /// A DNS server to use instead of the system's (host names and handles).
    pub dns_server: Option<SocketAddr>,
    /// A URL of the owner's choosing that answers with the caller's public IP address
    /// (e.g. `https://api.ipify.org`); `atbox doctor` compares it with the host name's
    /// DNS records. Never asked unless set.
    pub public_ip_url: Option<String>,
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
    dns_server: Option<String>,
    public_ip_url: Option<String>,
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

fn resolve(file: ConfigFile, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // The value of a key: the environment variable if set, else the file's.
    let pick = |var: &str, from_file: Option<String>| env(var).or(from_file);

    let hostname = pick("ATBOX_HOSTNAME", file.hostname).unwrap_or_else(|| "localhost".into());
    if hostname.is_empty() || hostname.contains(['/', ':', ' ']) {
        return Err(bad(
            "hostname",
            format!("{hostname:?} is not a host name (no scheme, port or path)"),
        ));
    }
    let listen_s = pick("ATBOX_LISTEN", file.listen).unwrap_or_else(|| "127.0.0.1:2583".into());
    let listen: SocketAddr = listen_s.parse().map_err(|_| {
        bad(
            "listen",
            format!("{listen_s:?} is not a socket address like 127.0.0.1:2583"),
        )
    })?;
    let is_local = matches!(hostname.as_str(), "localhost" | "127.0.0.1" | "::1")
        || hostname.ends_with(".local");
    let public_url = match pick("ATBOX_PUBLIC_URL", file.public_url) {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None if is_local => format!("http://{hostname}:{}", listen.port()),
        None => format!("https://{hostname}"),
    };
    if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
        return Err(bad(
            "public_url",
            format!("{public_url:?} must start with http:// or https://"),
        ));
    }
    let data_dir = PathBuf::from(
        pick("ATBOX_DATA_DIR", file.data_dir).unwrap_or_else(|| "./atbox-data".into()),
    );
    let plc_url =
        pick("ATBOX_PLC_URL", file.plc_url).unwrap_or_else(|| "https://plc.directory".into());
    let plc_url = plc_url.trim_end_matches('/').to_owned();
    if !(plc_url.starts_with("http://") || plc_url.starts_with("https://")) {
        return Err(bad(
            "plc_url",
            format!("{plc_url:?} must be an http(s) URL"),
        ));
    }
    let handle_domains = match env("ATBOX_HANDLE_DOMAINS") {
        Some(s) => split_list(&s),
        None => file
            .handle_domains
            .map(StringOrList::into_list)
            .unwrap_or_else(|| vec![".test".into()]),
    };
    if handle_domains.is_empty() {
        return Err(bad(
            "handle_domains",
            "at least one domain is needed, e.g. \".test\"",
        ));
    }
    let mut domains = Vec::new();
    for d in handle_domains {
        let d = if d.starts_with('.') {
            d
        } else {
            format!(".{d}")
        };
        if crate::syntax::Handle::new(format!("x{d}")).is_err() {
            return Err(bad("handle_domains", format!("{d:?} is not a domain")));
        }
        domains.push(d.to_ascii_lowercase());
    }
    let invite_required = flag(
        env,
        ("ATBOX_INVITE_REQUIRED", "invite_required"),
        file.invite_required,
        false,
    )?;
    let admin_password =
        pick("ATBOX_ADMIN_PASSWORD", file.admin_password).filter(|p| !p.is_empty());
    let blob_upload_limit = number(
        env,
        ("ATBOX_BLOB_UPLOAD_LIMIT", "blob_upload_limit"),
        file.blob_upload_limit,
        "bytes",
        100 * 1024 * 1024,
    )?;
    if blob_upload_limit == 0 {
        return Err(bad("blob_upload_limit", "must be more than 0 bytes"));
    }
    let relays = match env("ATBOX_RELAYS") {
        Some(s) => split_list(&s),
        None => file.relays.map(StringOrList::into_list).unwrap_or_default(),
    };
    let appview_url = pick("ATBOX_APPVIEW_URL", file.appview_url).filter(|s| !s.is_empty());
    let appview_did = pick("ATBOX_APPVIEW_DID", file.appview_did).filter(|s| !s.is_empty());
    if let Some(did) = &appview_did {
        crate::syntax::Did::new(did.as_str()).map_err(|e| bad("appview_did", e.to_string()))?;
    }
    if appview_url.is_some() != appview_did.is_some() {
        return Err(bad(
            "appview_url",
            "appview_url and appview_did go together: set both or neither",
        ));
    }
    let firehose_backfill_hours = number(
        env,
        ("ATBOX_FIREHOSE_BACKFILL_HOURS", "firehose_backfill_hours"),
        file.firehose_backfill_hours,
        "hours",
        72,
    )?;
    let proxy_allow_private = flag(
        env,
        ("ATBOX_PROXY_ALLOW_PRIVATE", "proxy_allow_private"),
        file.proxy_allow_private,
        false,
    )?;
    let relay_check_interval_secs = number(
        env,
        (
            "ATBOX_RELAY_CHECK_INTERVAL_SECS",
            "relay_check_interval_secs",
        ),
        file.relay_check_interval_secs,
        "seconds",
        300,
    )?;
    let firehose_buffer_events = number(
        env,
        ("ATBOX_FIREHOSE_BUFFER_EVENTS", "firehose_buffer_events"),
        file.firehose_buffer_events,
        "events",
        4096,
    )?;
    if firehose_buffer_events == 0 {
        return Err(bad("firehose_buffer_events", "must be at least 1"));
    }
    let display_s = pick("ATBOX_DISPLAY", file.display).unwrap_or_else(|| "none".into());
    let display =
        crate::device::panel::DisplaySpec::parse(&display_s).map_err(|e| bad("display", e))?;
    let degrees = number(
        env,
        ("ATBOX_DISPLAY_ROTATION", "display_rotation"),
        file.display_rotation,
        "degrees",
        0,
    )?;
    let display_rotation = crate::device::panel::Rotation::from_degrees(degrees)
        .ok_or_else(|| bad("display_rotation", format!("{degrees} is not 0 or 180")))?;
    let display_dim_secs = number(
        env,
        ("ATBOX_DISPLAY_DIM_SECS", "display_dim_secs"),
        file.display_dim_secs,
        "seconds",
        600,
    )?;
    let display_sleep_secs = number(
        env,
        ("ATBOX_DISPLAY_SLEEP_SECS", "display_sleep_secs"),
        file.display_sleep_secs,
        "seconds",
        3600,
    )?;
    let mdns = flag(env, ("ATBOX_MDNS", "mdns"), file.mdns, false)?;
    let mdns_name = pick("ATBOX_MDNS_NAME", file.mdns_name).unwrap_or_else(|| "atbox".into());
    if mdns_name.is_empty()
        || mdns_name.len() > 63
        || !mdns_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(bad(
            "mdns_name",
            format!("{mdns_name:?} is not a host label (letters, digits and '-', e.g. atbox)"),
        ));
    }
    let tls = match pick("ATBOX_TLS", file.tls).as_deref().unwrap_or("off") {
        "off" => TlsMode::Off,
        "acme" => TlsMode::Acme,
        "files" => {
            let cert = pick("ATBOX_TLS_CERT", file.tls_cert).ok_or_else(|| {
                bad(
                    "tls_cert",
                    "tls = \"files\" needs tls_cert (a PEM certificate chain)",
                )
            })?;
            let key = pick("ATBOX_TLS_KEY", file.tls_key).ok_or_else(|| {
                bad(
                    "tls_key",
                    "tls = \"files\" needs tls_key (a PEM private key)",
                )
            })?;
            TlsMode::Files {
                cert: cert.into(),
                key: key.into(),
            }
        }
        other => {
            return Err(bad(
                "tls",
                format!("{other:?} is not \"off\", \"files\" or \"acme\""),
            ))
        }
    };
    let https_s =
        pick("ATBOX_HTTPS_LISTEN", file.https_listen).unwrap_or_else(|| "0.0.0.0:443".into());
    let https_listen: SocketAddr = https_s.parse().map_err(|_| {
        bad(
            "https_listen",
            format!("{https_s:?} is not a socket address like 0.0.0.0:443"),
        )
    })?;
    let acme_directory =
        pick("ATBOX_ACME_DIRECTORY", file.acme_directory).unwrap_or_else(|| LETS_ENCRYPT.into());
    if !acme_directory.starts_with("https://") {
        return Err(bad(
            "acme_directory",
            format!("{acme_directory:?} must be an https:// URL"),
        ));
    }
    let acme_email = pick("ATBOX_ACME_EMAIL", file.acme_email).filter(|s| !s.is_empty());
    let acme_challenge =
        pick("ATBOX_ACME_CHALLENGE", file.acme_challenge).unwrap_or_else(|| "tls-alpn-01".into());
    if !matches!(acme_challenge.as_str(), "tls-alpn-01" | "http-01") {
        return Err(bad(
            "acme_challenge",
            format!("{acme_challenge:?} is not \"tls-alpn-01\" or \"http-01\""),
        ));
    }
    let acme_ca_bundle = pick("ATBOX_ACME_CA_BUNDLE", file.acme_ca_bundle)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let proxies = match env("ATBOX_TRUSTED_PROXIES") {
        Some(s) => split_list(&s),
        None => file
            .trusted_proxies
            .map(StringOrList::into_list)
            .unwrap_or_default(),
    };
    let trusted_proxies = proxies
        .iter()
        .map(|p| {
            p.parse()
                .map_err(|_| bad("trusted_proxies", format!("{p:?} is not an IP address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dns_server = match pick("ATBOX_DNS_SERVER", file.dns_server).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            s.parse::<SocketAddr>()
                .or_else(|_| {
                    s.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    bad(
                        "dns_server",
                        format!("{s:?} is not an address like 192.168.1.1 or 127.0.0.1:5353"),
                    )
                })?,
        ),
    };
    let public_ip_url = pick("ATBOX_PUBLIC_IP_URL", file.public_ip_url).filter(|s| !s.is_empty());
    if let Some(u) = &public_ip_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(bad(
                "public_ip_url",
                format!("{u:?} must be an http(s) URL"),
            ));
        }
    }
    Ok(Config {
        dns_server,
        public_ip_url,
        tls,
        https_listen,
        acme_directory,
        acme_email,
        acme_challenge,
        acme_ca_bundle,
        trusted_proxies,
        display,
        display_rotation,
        display_dim_secs,
        display_sleep_secs,
        mdns,
        mdns_name,
        firehose_buffer_events,
        relay_check_interval_secs,
        proxy_allow_private,
        firehose_backfill_hours,
        hostname,
        public_url,
        listen,
        data_dir,
        plc_url,
        handle_domains: domains,
        invite_required,
        admin_password,
        blob_upload_limit,
        relays,
        appview_url,
        appview_did,
        config_file: None,
        settings: None,
    })
}

/// A numeric key: the variable if set, else the file's value, else `default`.
fn number<T: std::str::FromStr>(
    env: &dyn Fn(&str) -> Option<String>,
    (var, key): (&str, &str),
    from_file: Option<T>,
    unit: &str,
    default: T,
) -> Result<T, ConfigError> {
    match env(var) {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| bad(key, format!("{s:?} is not a number of {unit}"))),
        None => Ok(from_file.unwrap_or(default)),
    }
}

/// A true/false key, in the same way.
fn flag(
    env: &dyn Fn(&str) -> Option<String>,
    (var, key): (&str, &str),
    from_file: Option<bool>,
    default: bool,
) -> Result<bool, ConfigError> {
    match env(var) {
        Some(s) => parse_bool(&s).ok_or_else(|| bad(key, format!("{s:?} is not true or false"))),
        None => Ok(from_file.unwrap_or(default)),
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
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
