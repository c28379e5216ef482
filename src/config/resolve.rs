//! Resolving the configuration: each key from its `ATBOX_<KEY>` variable if set, else
//! the file's value (the settings layer already laid over it), else its default, and
//! checked, so that a bad value stops start-up with one line naming the key. One
//! function per group of keys; `resolve` assembles them.

use super::{
    bad, split_list, Config, ConfigError, ConfigFile, StringOrList, TlsMode, LETS_ENCRYPT,
};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where variables are read from (the process environment, or a test's map).
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The variable that overrides `key`: `ATBOX_` and the key in capitals.
fn var(key: &str) -> String {
    format!("ATBOX_{}", key.to_ascii_uppercase())
}

/// A text key: the variable if set, else the file's value.
fn pick(env: Env, key: &str, from_file: Option<String>) -> Option<String> {
    env(&var(key)).or(from_file)
}

pub(super) fn resolve(mut file: ConfigFile, env: Env) -> Result<Config, ConfigError> {
    let Site {
        hostname,
        listen,
        public_url,
        data_dir,
        plc_url,
        handle_domains,
    } = site(&mut file, env)?;
    let Service {
        invite_required,
        admin_password,
        blob_upload_limit,
        relays,
        appview_url,
        appview_did,
        firehose_backfill_hours,
        proxy_allow_private,
        relay_check_interval_secs,
        firehose_buffer_events,
    } = service(&mut file, env)?;
    let Appliance {
        display,
        display_rotation,
        display_dim_secs,
        display_sleep_secs,
        mdns,
        mdns_name,
    } = appliance(&mut file, env)?;
    let Https {
        tls,
        https_listen,
        acme_directory,
        acme_email,
        acme_challenge,
        acme_ca_bundle,
    } = https(&mut file, env)?;
    let Network {
        trusted_proxies,
        rate_limit_bypass,
        dns_server,
        public_ip_url,
        outbound_ca_bundle,
    } = network(&mut file, env)?;
    let (smtp_url, smtp_from) = mail(&mut file, env, &hostname)?;
    let backup = super::backup::resolve(
        env,
        file.backup_dir.take(),
        file.backup_s3_url.take(),
        file.backup_s3_access_key_id.take(),
        file.backup_s3_secret_access_key.take(),
        file.backup_interval_secs.take(),
    )?;
    Ok(Config {
        backup,
        smtp_url,
        smtp_from,
        dns_server,
        outbound_ca_bundle,
        public_ip_url,
        tls,
        https_listen,
        acme_directory,
        acme_email,
        acme_challenge,
        acme_ca_bundle,
        trusted_proxies,
        rate_limit_bypass,
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
        handle_domains,
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

/// The keys of where the box is: its names, sockets, data directory, PLC directory and handle domains.
struct Site {
    hostname: String,
    listen: SocketAddr,
    public_url: String,
    data_dir: PathBuf,
    plc_url: String,
    handle_domains: Vec<String>,
}

fn site(file: &mut ConfigFile, env: Env) -> Result<Site, ConfigError> {
    let hostname =
        pick(env, "hostname", file.hostname.take()).unwrap_or_else(|| "localhost".into());
    if hostname.is_empty() || hostname.contains(['/', ':', ' ']) {
        return Err(bad(
            "hostname",
            format!("{hostname:?} is not a host name (no scheme, port or path)"),
        ));
    }
    let listen = socket(env, "listen", file.listen.take(), "127.0.0.1:2583")?;
    let is_local = matches!(hostname.as_str(), "localhost" | "127.0.0.1" | "::1")
        || hostname.ends_with(".local");
    let public_url = match pick(env, "public_url", file.public_url.take()) {
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
        pick(env, "data_dir", file.data_dir.take()).unwrap_or_else(|| "./atbox-data".into()),
    );
    let plc_url =
        pick(env, "plc_url", file.plc_url.take()).unwrap_or_else(|| "https://plc.directory".into());
    let plc_url = plc_url.trim_end_matches('/').to_owned();
    if !(plc_url.starts_with("http://") || plc_url.starts_with("https://")) {
        return Err(bad(
            "plc_url",
            format!("{plc_url:?} must be an http(s) URL"),
        ));
    }
    let handle_domains = match env(&var("handle_domains")) {
        Some(s) => split_list(&s),
        None => file
            .handle_domains
            .take()
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
    Ok(Site {
        hostname,
        listen,
        public_url,
        data_dir,
        plc_url,
        handle_domains: domains,
    })
}

/// The keys of what the PDS allows and whom it talks to: invites, admin, blobs, relays, the AppView, the firehose.
struct Service {
    invite_required: bool,
    admin_password: Option<String>,
    blob_upload_limit: u64,
    relays: Vec<String>,
    appview_url: Option<String>,
    appview_did: Option<String>,
    firehose_backfill_hours: u64,
    proxy_allow_private: bool,
    relay_check_interval_secs: u64,
    firehose_buffer_events: usize,
}

fn service(file: &mut ConfigFile, env: Env) -> Result<Service, ConfigError> {
    let invite_required = flag(env, "invite_required", file.invite_required.take(), false)?;
    let admin_password =
        pick(env, "admin_password", file.admin_password.take()).filter(|p| !p.is_empty());
    let blob_upload_limit = number(
        env,
        "blob_upload_limit",
        file.blob_upload_limit.take(),
        "bytes",
        100 * 1024 * 1024,
    )?;
    if blob_upload_limit == 0 {
        return Err(bad("blob_upload_limit", "must be more than 0 bytes"));
    }
    let relays = match env(&var("relays")) {
        Some(s) => split_list(&s),
        None => file
            .relays
            .take()
            .map(StringOrList::into_list)
            .unwrap_or_default(),
    };
    let appview_url = pick(env, "appview_url", file.appview_url.take()).filter(|s| !s.is_empty());
    let appview_did = pick(env, "appview_did", file.appview_did.take()).filter(|s| !s.is_empty());
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
        "firehose_backfill_hours",
        file.firehose_backfill_hours.take(),
        "hours",
        72,
    )?;
    let proxy_allow_private = flag(
        env,
        "proxy_allow_private",
        file.proxy_allow_private.take(),
        false,
    )?;
    let relay_check_interval_secs = number(
        env,
        "relay_check_interval_secs",
        file.relay_check_interval_secs.take(),
        "seconds",
        300,
    )?;
    let firehose_buffer_events = number(
        env,
        "firehose_buffer_events",
        file.firehose_buffer_events.take(),
        "events",
        4096,
    )?;
    if firehose_buffer_events == 0 {
        return Err(bad("firehose_buffer_events", "must be at least 1"));
    }
    Ok(Service {
        invite_required,
        admin_password,
        blob_upload_limit,
        relays,
        appview_url,
        appview_did,
        firehose_backfill_hours,
        proxy_allow_private,
        relay_check_interval_secs,
        firehose_buffer_events,
    })
}

/// The keys of the appliance's face: the status screen and mDNS.
struct Appliance {
    display: crate::device::panel::DisplaySpec,
    display_rotation: crate::device::panel::Rotation,
    display_dim_secs: u64,
    display_sleep_secs: u64,
    mdns: bool,
    mdns_name: String,
}

fn appliance(file: &mut ConfigFile, env: Env) -> Result<Appliance, ConfigError> {
    let display_s = pick(env, "display", file.display.take()).unwrap_or_else(|| "none".into());
    let display =
        crate::device::panel::DisplaySpec::parse(&display_s).map_err(|e| bad("display", e))?;
    let degrees = number(
        env,
        "display_rotation",
        file.display_rotation.take(),
        "degrees",
        0,
    )?;
    let display_rotation = crate::device::panel::Rotation::from_degrees(degrees)
        .ok_or_else(|| bad("display_rotation", format!("{degrees} is not 0 or 180")))?;
    let display_dim_secs = number(
        env,
        "display_dim_secs",
        file.display_dim_secs.take(),
        "seconds",
        600,
    )?;
    let display_sleep_secs = number(
        env,
        "display_sleep_secs",
        file.display_sleep_secs.take(),
        "seconds",
        3600,
    )?;
    let mdns = flag(env, "mdns", file.mdns.take(), false)?;
    let mdns_name = pick(env, "mdns_name", file.mdns_name.take()).unwrap_or_else(|| "atbox".into());
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
    Ok(Appliance {
        display,
        display_rotation,
        display_dim_secs,
        display_sleep_secs,
        mdns,
        mdns_name,
    })
}

/// The keys of HTTPS: off, certificate files, or ACME and its CA.
struct Https {
    tls: TlsMode,
    https_listen: SocketAddr,
    acme_directory: String,
    acme_email: Option<String>,
    acme_challenge: String,
    acme_ca_bundle: Option<PathBuf>,
}

fn https(file: &mut ConfigFile, env: Env) -> Result<Https, ConfigError> {
    let tls = match pick(env, "tls", file.tls.take())
        .as_deref()
        .unwrap_or("off")
    {
        "off" => TlsMode::Off,
        "acme" => TlsMode::Acme,
        "files" => {
            let cert = pick(env, "tls_cert", file.tls_cert.take()).ok_or_else(|| {
                bad(
                    "tls_cert",
                    "tls = \"files\" needs tls_cert (a PEM certificate chain)",
                )
            })?;
            let key = pick(env, "tls_key", file.tls_key.take()).ok_or_else(|| {
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
    let https_listen = socket(env, "https_listen", file.https_listen.take(), "0.0.0.0:443")?;
    let acme_directory = pick(env, "acme_directory", file.acme_directory.take())
        .unwrap_or_else(|| LETS_ENCRYPT.into());
    if !acme_directory.starts_with("https://") {
        return Err(bad(
            "acme_directory",
            format!("{acme_directory:?} must be an https:// URL"),
        ));
    }
    let acme_email = pick(env, "acme_email", file.acme_email.take()).filter(|s| !s.is_empty());
    let acme_challenge = pick(env, "acme_challenge", file.acme_challenge.take())
        .unwrap_or_else(|| "tls-alpn-01".into());
    if !matches!(acme_challenge.as_str(), "tls-alpn-01" | "http-01") {
        return Err(bad(
            "acme_challenge",
            format!("{acme_challenge:?} is not \"tls-alpn-01\" or \"http-01\""),
        ));
    }
    let acme_ca_bundle = pick(env, "acme_ca_bundle", file.acme_ca_bundle.take())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(Https {
        tls,
        https_listen,
        acme_directory,
        acme_email,
        acme_challenge,
        acme_ca_bundle,
    })
}

/// The keys of the network around the box: trusted proxies, a DNS server, the public-address service.
struct Network {
    trusted_proxies: Vec<std::net::IpAddr>,
    rate_limit_bypass: Vec<std::net::IpAddr>,
    dns_server: Option<SocketAddr>,
    public_ip_url: Option<String>,
    outbound_ca_bundle: Option<PathBuf>,
}

fn network(file: &mut ConfigFile, env: Env) -> Result<Network, ConfigError> {
    let trusted_proxies = addresses(env, "trusted_proxies", file.trusted_proxies.take())?;
    let rate_limit_bypass = addresses(env, "rate_limit_bypass", file.rate_limit_bypass.take())?;
    let dns_server = match pick(env, "dns_server", file.dns_server.take()).filter(|s| !s.is_empty())
    {
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
    let public_ip_url =
        pick(env, "public_ip_url", file.public_ip_url.take()).filter(|s| !s.is_empty());
    if let Some(u) = &public_ip_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(bad(
                "public_ip_url",
                format!("{u:?} must be an http(s) URL"),
            ));
        }
    }
    let outbound_ca_bundle = pick(env, "outbound_ca_bundle", file.outbound_ca_bundle.take())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(Network {
        trusted_proxies,
        rate_limit_bypass,
        dns_server,
        public_ip_url,
        outbound_ca_bundle,
    })
}

/// The mail keys: `smtp_url` (checked: scheme, host) and `smtp_from` (default
/// `atbox <noreply@HOSTNAME>`).
fn mail(
    file: &mut ConfigFile,
    env: Env,
    hostname: &str,
) -> Result<(Option<String>, String), ConfigError> {
    let smtp_url = pick(env, "smtp_url", file.smtp_url.take()).filter(|s| !s.trim().is_empty());
    if let Some(u) = &smtp_url {
        // The value may hold a password: never echo it back.
        let url =
            url::Url::parse(u.trim()).map_err(|e| bad("smtp_url", format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
            return Err(bad(
                "smtp_url",
                "must look like smtps://user:pass@mail.example.com:465 or smtp://host:587?tls=required",
            ));
        }
    }
    let smtp_from = pick(env, "smtp_from", file.smtp_from.take())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("atbox <noreply@{hostname}>"));
    if !smtp_from.contains('@') {
        return Err(bad(
            "smtp_from",
            format!("{smtp_from:?} is not an address like \"atbox <noreply@example.com>\""),
        ));
    }
    Ok((smtp_url.map(|u| u.trim().to_owned()), smtp_from))
}

/// A socket address to listen on.
fn socket(
    env: Env,
    key: &str,
    from_file: Option<String>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = pick(env, key, from_file).unwrap_or_else(|| default.into());
    text.parse().map_err(|_| {
        bad(
            key,
            format!("{text:?} is not a socket address like {default}"),
        )
    })
}

/// A list of IP addresses.
fn addresses(
    env: Env,
    key: &str,
    from_file: Option<StringOrList>,
) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    let list = match env(&var(key)) {
        Some(s) => split_list(&s),
        None => from_file.map(StringOrList::into_list).unwrap_or_default(),
    };
    list.iter()
        .map(|p| {
            p.parse()
                .map_err(|_| bad(key, format!("{p:?} is not an IP address")))
        })
        .collect()
}

/// A numeric key: the variable if set, else the file's value, else `default`.
fn number<T: std::str::FromStr>(
    env: Env,
    key: &str,
    from_file: Option<T>,
    unit: &str,
    default: T,
) -> Result<T, ConfigError> {
    match env(&var(key)) {
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| bad(key, format!("{s:?} is not a number of {unit}"))),
        None => Ok(from_file.unwrap_or(default)),
    }
}

/// A true/false key, in the same way.
fn flag(env: Env, key: &str, from_file: Option<bool>, default: bool) -> Result<bool, ConfigError> {
    match env(&var(key)) {
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
