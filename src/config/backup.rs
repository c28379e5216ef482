//! The backup keys: where backups go (`backup_dir`, `backup_s3_url` with
//! `backup_s3_access_key_id` / `backup_s3_secret_access_key`) and how often
//! (`backup_interval_secs`). What a backup is lives in `backup`.

use super::resolve::Env;
use super::{bad, ConfigError};
use std::path::PathBuf;

/// The backup keys, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// A directory (a USB drive's mount point) to back up to.
    pub dir: Option<PathBuf>,
    pub s3: Option<S3Target>,
    /// Seconds between runs.
    pub interval_secs: u64,
}

/// `s3://bucket/prefix?endpoint=…&region=…` and its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Target {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Target({})", self.label())
    }
}

impl S3Target {
    /// Reads `s3://bucket/prefix?endpoint=http://host:9000&region=us-east-1`.
    pub fn parse(url: &str, access_key_id: &str, secret: &str) -> Result<S3Target, String> {
        let u = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if u.scheme() != "s3" {
            return Err("must start with s3://, e.g. s3://bucket/prefix?region=eu-west-1".into());
        }
        let bucket = u
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or("names no bucket (s3://BUCKET/prefix)")?
            .to_owned();
        let mut endpoint = None;
        let mut region = "us-east-1".to_owned();
        for (k, v) in u.query_pairs() {
            match &*k {
                "endpoint" => {
                    let e = url::Url::parse(&v).map_err(|e| format!("endpoint: {e}"))?;
                    if !matches!(e.scheme(), "http" | "https") {
                        return Err("endpoint must be an http:// or https:// URL".into());
                    }
                    endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => region = v.into_owned(),
                other => return Err(format!("unknown parameter {other:?} (endpoint, region)")),
            }
        }
        Ok(S3Target {
            bucket,
            prefix: u.path().trim_matches('/').to_owned(),
            endpoint,
            region,
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret.to_owned(),
        })
    }

    pub fn label(&self) -> String {
        let host = self
            .endpoint
            .as_deref()
            .and_then(|e| url::Url::parse(e).ok())
            .and_then(|u| u.host_str().map(str::to_owned));
        let place = format!("s3://{}/{}", self.bucket, self.prefix);
        match host {
            Some(h) => format!("{} at {h}", place.trim_end_matches('/')),
            None => place.trim_end_matches('/').to_owned(),
        }
    }
}

/// Reads the backup keys (each from its `ATBOX_*` variable, else the file).
pub(super) fn resolve(
    env: Env,
    dir: Option<String>,
    s3_url: Option<String>,
    key_id: Option<String>,
    secret: Option<String>,
    interval: Option<u64>,
) -> Result<BackupConfig, ConfigError> {
    let pick = |key: &str, file: Option<String>| {
        env(&format!("ATBOX_{}", key.to_ascii_uppercase()))
            .or(file)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let dir = pick("backup_dir", dir).map(PathBuf::from);
    if let Some(d) = &dir {
        if !d.is_absolute() {
            return Err(bad(
                "backup_dir",
                "must be an absolute path, e.g. /media/ATBOX-BACKUP",
            ));
        }
    }
    let s3 = match pick("backup_s3_url", s3_url) {
        None => None,
        Some(url) => {
            let id = pick("backup_s3_access_key_id", key_id).ok_or_else(|| {
                bad(
                    "backup_s3_url",
                    "needs ATBOX_BACKUP_S3_ACCESS_KEY_ID and ATBOX_BACKUP_S3_SECRET_ACCESS_KEY",
                )
            })?;
            let secret = pick("backup_s3_secret_access_key", secret)
                .ok_or_else(|| bad("backup_s3_url", "needs ATBOX_BACKUP_S3_SECRET_ACCESS_KEY"))?;
            Some(S3Target::parse(&url, &id, &secret).map_err(|e| bad("backup_s3_url", e))?)
        }
    };
    let interval_secs = match env("ATBOX_BACKUP_INTERVAL_SECS") {
        Some(s) => s.trim().parse().map_err(|_| {
            bad(
                "backup_interval_secs",
                format!("{s:?} is not a number of seconds"),
            )
        })?,
        None => interval.unwrap_or(300),
    };
    if interval_secs < 10 {
        return Err(bad("backup_interval_secs", "must be at least 10 seconds"));
    }
    Ok(BackupConfig {
        dir,
        s3,
        interval_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_are_read_or_refused_plainly() {
        let t = S3Target::parse(
            "s3://bkt/box/one?endpoint=http://127.0.0.1:9000/&region=eu-west-1",
            "id",
            "secret",
        )
        .unwrap();
        assert_eq!(t.bucket, "bkt");
        assert_eq!(t.prefix, "box/one");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(t.region, "eu-west-1");
        assert_eq!(t.label(), "s3://bkt/box/one at 127.0.0.1");
        assert!(!format!("{t:?}").contains("secret"));
        assert_eq!(
            S3Target::parse("s3://b", "i", "s").unwrap().region,
            "us-east-1"
        );
        for bad in [
            "http://b/x",
            "s3:///x",
            "s3://b/x?color=red",
            "s3://b?endpoint=ftp://x",
        ] {
            assert!(S3Target::parse(bad, "i", "s").is_err(), "{bad}");
        }
    }
}
