//! Configuration tests: defaults, environment overrides, and errors naming the key.

use super::*;
use std::collections::HashMap;

fn with_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    resolve(ConfigFile::default(), &|k| map.get(k).cloned())
}

#[test]
fn development_default_runs_on_localhost() {
    let c = development_default();
    assert_eq!(c.listen.to_string(), "127.0.0.1:2583");
    assert_eq!(c.public_url, "http://localhost:2583");
    assert_eq!(c.data_dir, PathBuf::from("./atbox-data"));
    assert_eq!(c.handle_domains, vec![".test"]);
    assert_eq!(c.blob_upload_limit, 100 * 1024 * 1024);
    assert_eq!(c.service_did(), "did:web:localhost");
}

#[test]
fn env_overrides_and_bad_values_name_the_key() {
    let c = with_env(&[
        ("ATBOX_HOSTNAME", "pds.example.com"),
        ("ATBOX_RELAYS", "bsky.network, relay.x"),
    ])
    .unwrap();
    assert_eq!(c.public_url, "https://pds.example.com");
    assert_eq!(c.relays, vec!["bsky.network", "relay.x"]);
    let e = with_env(&[("ATBOX_LISTEN", "nope")]).unwrap_err();
    assert_eq!(e.key, "listen");
    let e = with_env(&[("ATBOX_INVITE_REQUIRED", "maybe")]).unwrap_err();
    assert!(e.to_string().starts_with("config: invite_required:"));
    let e = with_env(&[("ATBOX_BLOB_UPLOAD_LIMIT", "10MB")]).unwrap_err();
    assert_eq!(e.key, "blob_upload_limit");
    let e = with_env(&[("ATBOX_DISPLAY", "hdmi")]).unwrap_err();
    assert_eq!(e.key, "display");
    let e = with_env(&[("ATBOX_DISPLAY_ROTATION", "90")]).unwrap_err();
    assert_eq!(e.key, "display_rotation");
    let e = with_env(&[("ATBOX_MDNS_NAME", "my box")]).unwrap_err();
    assert_eq!(e.key, "mdns_name");
    let c = with_env(&[("ATBOX_DISPLAY", "png:/tmp/s"), ("ATBOX_MDNS", "on")]).unwrap();
    assert!(c.mdns && c.mdns_name == "atbox");
    assert!(!development_default().mdns, "no multicast unless asked");
    assert_eq!(development_default().tls, TlsMode::Off);
    let e = with_env(&[("ATBOX_TLS", "https")]).unwrap_err();
    assert_eq!(e.key, "tls");
    let e = with_env(&[("ATBOX_TLS", "files")]).unwrap_err();
    assert_eq!(e.key, "tls_cert");
    let e = with_env(&[("ATBOX_TRUSTED_PROXIES", "10.0.0.1, proxy")]).unwrap_err();
    assert_eq!(e.key, "trusted_proxies");
    let c = with_env(&[
        ("ATBOX_HOSTNAME", "pds.example.com"),
        ("ATBOX_TLS", "acme"),
        ("ATBOX_TRUSTED_PROXIES", "10.0.0.1,::1"),
    ])
    .unwrap();
    assert_eq!(c.tls, TlsMode::Acme);
    assert_eq!(c.acme_directory, LETS_ENCRYPT);
    assert_eq!(c.trusted_proxies.len(), 2);
    let c = with_env(&[("ATBOX_DNS_SERVER", "10.0.0.53")]).unwrap();
    assert_eq!(c.dns_server, Some("10.0.0.53:53".parse().unwrap()));
    let e = with_env(&[("ATBOX_DNS_SERVER", "dns.example")]).unwrap_err();
    assert_eq!(e.key, "dns_server");
}

#[test]
fn file_keys_are_checked() {
    let f: Result<ConfigFile, _> = toml::from_str("hostnme = \"x\"");
    assert!(f.is_err());
    let f: ConfigFile =
        toml::from_str("handle_domains = [\"example.org\"]\nlisten = \"0.0.0.0:80\"").unwrap();
    let c = resolve(f, &|_| None).unwrap();
    assert_eq!(c.handle_domains, vec![".example.org"]);
}

#[test]
fn setup_page_settings_lie_between_the_file_and_the_variables() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("atbox.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &file,
        format!(
            "hostname = \"atbox.local\"\npublic_url = \"http://atbox.local\"\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let no_env = |_: &str| None;
    let before = load(Some(&file), &no_env).unwrap();
    assert_eq!(before.hostname, "atbox.local");
    assert_eq!(before.settings, None);
    assert_eq!(before.config_file.as_deref(), Some(file.as_path()));

    Settings::public_name("PDS.Example.com.")
        .save(&data)
        .unwrap();
    let after = load(Some(&file), &no_env).unwrap();
    assert_eq!(after.hostname, "pds.example.com");
    // The file's public_url belonged to the old name.
    assert_eq!(after.public_url, "https://pds.example.com");
    assert_eq!(after.handle_domains, vec![".pds.example.com"]);
    assert!(after.settings.is_some());

    let env = |k: &str| (k == "ATBOX_HOSTNAME").then(|| "env.example.net".to_owned());
    assert_eq!(load(Some(&file), &env).unwrap().hostname, "env.example.net");

    // A choice is checked before it is saved: a bad one names the key.
    let bad = Settings {
        hostname: Some("not a host".into()),
        ..Settings::default()
    };
    assert_eq!(
        load_with(Some(&file), &no_env, Some(bad)).unwrap_err().key,
        "hostname"
    );
    // The AppView and relays chosen on the page lie over the file's.
    let services = Settings {
        appview_url: Some("https://api.blacksky.community".into()),
        appview_did: Some("did:web:api.blacksky.community".into()),
        relays: Some(vec!["atproto.africa".into()]),
        ..Settings::default()
    };
    let chosen = load_with(Some(&file), &no_env, Some(services.clone())).unwrap();
    assert_eq!(
        chosen.appview_did.as_deref(),
        Some("did:web:api.blacksky.community")
    );
    assert_eq!(chosen.relays, vec!["atproto.africa"]);
    let bad = Settings {
        appview_did: Some("not a did".into()),
        ..services
    };
    assert_eq!(
        load_with(Some(&file), &no_env, Some(bad)).unwrap_err().key,
        "appview_did"
    );

    std::fs::write(Settings::path(&data), "hostname = 3\n").unwrap();
    let e = load(Some(&file), &no_env).unwrap_err();
    assert_eq!(e.key, "settings");
}

#[test]
fn the_sd_image_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("image/rootfs/etc/atbox/atbox.toml");
    let c = resolve(read_file(&path).unwrap(), &|_| None).unwrap();
    assert_eq!(c.listen.port(), 80);
    assert_eq!(c.tls, TlsMode::Acme);
    assert!(c.invite_required && c.mdns);
    assert_eq!(c.relays, vec!["bsky.network"]);
    assert_eq!(c.appview_did.as_deref(), Some("did:web:api.bsky.app"));
    // Backups to the drive the image mounts (systemd/media-ATBOX\x2dBACKUP.mount).
    assert_eq!(c.backup.dir, Some(PathBuf::from("/media/ATBOX-BACKUP")));
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/media-ATBOX\\x2dBACKUP.mount"),
    )
    .unwrap();
    assert!(unit.contains("Where=/media/ATBOX-BACKUP"));
}

#[test]
fn backup_keys_are_read_and_checked() {
    let c = with_env(&[]).unwrap();
    assert_eq!((c.backup.dir.as_ref(), c.backup.s3.as_ref()), (None, None));
    assert_eq!(c.backup.interval_secs, 300);
    let c = with_env(&[
        ("ATBOX_BACKUP_DIR", "/mnt/usb"),
        (
            "ATBOX_BACKUP_S3_URL",
            "s3://b/p?endpoint=http://127.0.0.1:9000",
        ),
        ("ATBOX_BACKUP_S3_ACCESS_KEY_ID", "id"),
        ("ATBOX_BACKUP_S3_SECRET_ACCESS_KEY", "sekrit"),
        ("ATBOX_BACKUP_INTERVAL_SECS", "60"),
    ])
    .unwrap();
    assert_eq!(c.backup.dir, Some(PathBuf::from("/mnt/usb")));
    assert_eq!(c.backup.s3.as_ref().map(|s| s.bucket.as_str()), Some("b"));
    assert_eq!(c.backup.interval_secs, 60);
    for (vars, key) in [
        (vec![("ATBOX_BACKUP_DIR", "usb")], "backup_dir"),
        (vec![("ATBOX_BACKUP_S3_URL", "s3://b")], "backup_s3_url"),
        (
            vec![("ATBOX_BACKUP_INTERVAL_SECS", "5")],
            "backup_interval_secs",
        ),
    ] {
        let e = with_env(&vars).unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(!e.to_string().contains("sekrit"));
    }
}

#[test]
fn smtp_settings_are_checked_without_echoing_the_password() {
    let c = with_env(&[("ATBOX_HOSTNAME", "pds.example.com")]).unwrap();
    assert_eq!(c.smtp_url, None);
    assert_eq!(c.smtp_from, "atbox <noreply@pds.example.com>");
    let c = with_env(&[("ATBOX_SMTP_URL", "smtps://u:secret@mail.example.com:465")]).unwrap();
    assert_eq!(
        c.smtp_url.as_deref(),
        Some("smtps://u:secret@mail.example.com:465")
    );
    for bad in ["http://u:secret@mail.example.com", "mail.example.com"] {
        let e = with_env(&[("ATBOX_SMTP_URL", bad)]).unwrap_err();
        assert_eq!(e.key, "smtp_url");
        assert!(!e.to_string().contains("secret"), "{e}");
    }
    let e = with_env(&[("ATBOX_SMTP_FROM", "nobody")]).unwrap_err();
    assert_eq!(e.key, "smtp_from");
}
