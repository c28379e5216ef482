//! What atbox knows about its backups, kept in `data_dir/backup-status.json` so that the
//! server's loop and `atbox backup run` (another process) tell the same story, and the
//! one wording of it: "last good backup: 12 min ago, USB" for the LAN page and
//! `atbox status`, a short form for the screen, and when it is an alert.
//!
//! Alert rules: backups are configured and none succeeded for 24 h; a drive that held
//! backups is gone or full (at once: the owner can fix it now); the daily full check of
//! the newest backup failed. A drive that was never plugged in is not an alert but the
//! LAN page's gentle nag, as is having no destination at all.

use super::{BackupError, Destination};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE: &str = "backup-status.json";

/// No good backup for this long is an alert.
pub const ALERT_AFTER_SECS: i64 = 24 * 3600;

/// Present once the owner said, on the setup page, that they wrote the recovery
/// phrase down (a file of its own: the page never races a run's status update).
const PHRASE_ACKNOWLEDGED: &str = "backup-phrase-written-down";

/// Whether the setup page may still show the recovery phrase (until the owner says
/// they wrote it down; `atbox backup key` on the box always shows it).
pub fn phrase_acknowledged(data_dir: &Path) -> bool {
    data_dir.join(PHRASE_ACKNOWLEDGED).exists()
}

pub fn acknowledge_phrase(data_dir: &Path) -> std::io::Result<()> {
    crate::storage::write_durably(&data_dir.join(PHRASE_ACKNOWLEDGED), b"")
}

/// The file: one entry per destination ever used.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BackupStatus {
    #[serde(default)]
    pub destinations: Vec<DestStatus>,
}

/// How backups to one destination have gone.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DestStatus {
    /// "USB", "folder" or "S3".
    pub kind: String,
    /// The path or `s3://bucket/prefix` (no credentials).
    pub label: String,
    pub last_ok_unix: Option<i64>,
    /// The newest manifest there.
    pub last_seq: Option<u64>,
    /// When the current run of failures began.
    pub failing_since_unix: Option<i64>,
    /// The last failure, worded for the owner.
    pub error: Option<String>,
    pub problem: Option<Problem>,
    pub last_verified_unix: Option<i64>,
    /// When a full check last ran, passed or not (they run once a day either way).
    #[serde(default)]
    pub last_check_unix: Option<i64>,
    /// The last full check's failure, until a check passes.
    pub verify_error: Option<String>,
}

/// What kind of failure, for the alert's wording.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    Absent,
    Full,
    Failed,
}

impl Problem {
    fn of(e: &BackupError) -> Problem {
        match e {
            BackupError::Absent(_) => Problem::Absent,
            BackupError::Full(_) => Problem::Full,
            _ => Problem::Failed,
        }
    }
}

impl BackupStatus {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE)
    }

    /// The saved status (none yet, or unreadable: an empty one — it is only a record).
    pub fn load(data_dir: &Path) -> BackupStatus {
        std::fs::read(Self::path(data_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves it, replaced whole (a reader never sees half a file) but not fsynced: it
    /// is only a record, saved at every run, and a flush every few minutes would be
    /// wear on the card for nothing (a power cut costs at most its last update).
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let path = Self::path(data_dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
            .write_all(&json)?;
        std::fs::rename(&tmp, &path)
    }

    fn entry(&mut self, dest: &Destination) -> &mut DestStatus {
        let label = dest.label();
        let at = match self.destinations.iter().position(|d| d.label == label) {
            Some(i) => i,
            None => {
                self.destinations.push(DestStatus {
                    label,
                    ..DestStatus::default()
                });
                self.destinations.len() - 1
            }
        };
        let entry = &mut self.destinations[at];
        entry.kind = dest.kind().to_owned();
        entry
    }

    /// Records a run's outcome.
    pub fn record_run(&mut self, dest: &Destination, now: i64, outcome: Result<u64, &BackupError>) {
        let e = self.entry(dest);
        match outcome {
            Ok(seq) => {
                e.last_ok_unix = Some(now);
                e.last_seq = Some(seq);
                e.failing_since_unix = None;
                e.error = None;
                e.problem = None;
            }
            Err(err) => {
                e.failing_since_unix.get_or_insert(now);
                e.error = Some(err.to_string());
                e.problem = Some(Problem::of(err));
            }
        }
    }

    /// Records a full check's outcome.
    pub fn record_verify(
        &mut self,
        dest: &Destination,
        now: i64,
        outcome: Result<(), &BackupError>,
    ) {
        let e = self.entry(dest);
        e.last_check_unix = Some(now);
        match outcome {
            Ok(()) => {
                e.last_verified_unix = Some(now);
                e.verify_error = None;
            }
            // A drive that is not there could not be checked: that is the run's alert.
            Err(BackupError::Absent(_)) => {}
            Err(err) => e.verify_error = Some(err.to_string()),
        }
    }

    /// When a full check of `dest` last ran, passed or not.
    pub fn last_checked(&self, dest: &Destination) -> Option<i64> {
        let label = dest.label();
        self.destinations
            .iter()
            .find(|d| d.label == label)
            .and_then(|d| d.last_check_unix.or(d.last_verified_unix))
    }

    /// The one wording of where backups stand, for the destinations configured now.
    pub fn summary(&self, configured: &[Destination], now: i64) -> Summary {
        let current: Vec<&DestStatus> = configured
            .iter()
            .filter_map(|d| {
                let label = d.label();
                self.destinations.iter().find(|s| s.label == label)
            })
            .collect();
        let best = current
            .iter()
            .filter_map(|d| d.last_ok_unix.map(|t| (t, d.kind.as_str())))
            .max_by_key(|(t, _)| *t);
        let line = match (configured.is_empty(), best) {
            (true, _) => "backups: none set up".to_owned(),
            (false, Some((t, kind))) => {
                format!("last good backup: {} ago, {kind}", ago((now - t).max(0)))
            }
            (false, None) => {
                let kinds: Vec<&str> = configured.iter().map(Destination::kind).collect();
                format!("no backup yet ({})", kinds.join(", "))
            }
        };
        let short = match (configured.is_empty(), best) {
            (true, _) => "backup: none set".to_owned(),
            (false, Some((t, kind))) => {
                format!("backup {} ago {kind}", ago_short((now - t).max(0)))
            }
            (false, None) => "backup: none yet".to_owned(),
        };
        let alert = alert(&current, best.map(|(t, _)| t), configured.len(), now);
        // Nothing set up, or only a drive that was never plugged in: a nag, not an alert.
        let nag = configured.is_empty()
            || (best.is_none()
                && alert.is_none()
                && current.iter().all(|d| d.problem == Some(Problem::Absent))
                && current.len() == configured.len());
        Summary {
            line,
            short,
            alert,
            nag,
        }
    }
}

/// Where backups of the box `config` describes stand at `now`: the saved status,
/// worded for the destinations configured.
pub fn summary_now(config: &crate::config::Config, now: i64) -> Summary {
    BackupStatus::load(&config.data_dir).summary(&super::destinations(config), now)
}

/// Why backups need the owner now, if they do.
fn alert(
    current: &[&DestStatus],
    best: Option<i64>,
    configured: usize,
    now: i64,
) -> Option<BackupAlert> {
    if configured == 0 {
        return None;
    }
    for d in current {
        match d.problem {
            Some(Problem::Full) => return Some(BackupAlert::DriveFull(d.kind.clone())),
            Some(Problem::Absent) if d.last_ok_unix.is_some() => {
                return Some(BackupAlert::DriveGone(d.kind.clone()))
            }
            _ => {}
        }
        if d.verify_error.is_some() {
            return Some(BackupAlert::CheckFailed(d.kind.clone()));
        }
    }
    let failing_since = current.iter().filter_map(|d| d.failing_since_unix).min();
    let stale = match best {
        Some(t) => now - t >= ALERT_AFTER_SECS,
        // Never one good backup: an alert once a day of trying has passed (a drive never
        // plugged in is the nag instead).
        None => {
            failing_since.is_some_and(|t| now - t >= ALERT_AFTER_SECS)
                && current.iter().any(|d| d.problem != Some(Problem::Absent))
        }
    };
    stale.then_some(BackupAlert::NoneFor24h)
}

/// Where backups stand, worded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// "last good backup: 12 min ago, USB".
    pub line: String,
    /// The same in 21 characters, for the screen.
    pub short: String,
    pub alert: Option<BackupAlert>,
    /// No backups are being made: the LAN page says how to start.
    pub nag: bool,
}

/// An alert about backups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupAlert {
    /// The drive that held backups is not there (the kind: "USB").
    DriveGone(String),
    DriveFull(String),
    /// The daily full check of the newest backup failed.
    CheckFailed(String),
    NoneFor24h,
}

impl BackupAlert {
    /// Two short lines for the screen.
    pub fn screen_lines(&self) -> [String; 2] {
        match self {
            BackupAlert::DriveGone(_) => ["drive removed:".into(), "plug it back in".into()],
            BackupAlert::DriveFull(_) => ["backup drive full:".into(), "use a bigger one".into()],
            BackupAlert::CheckFailed(k) => [format!("{k} check failed"), "see atbox.local".into()],
            BackupAlert::NoneFor24h => ["none for 24 hours".into(), "see atbox.local".into()],
        }
    }

    /// One sentence for the LAN page and `atbox status`.
    pub fn sentence(&self) -> String {
        match self {
            BackupAlert::DriveGone(k) => format!("the {k} backup drive is not plugged in: plug it back in"),
            BackupAlert::DriveFull(k) => format!("the {k} backup drive is full: use a bigger drive (the backup there stays valid)"),
            BackupAlert::CheckFailed(k) => format!("the daily check of the newest {k} backup failed: run `atbox backup verify` on the box"),
            BackupAlert::NoneFor24h => "no backup has succeeded for 24 hours: see `atbox backup run` on the box".into(),
        }
    }
}

/// "12 min", "3 h", "2 days".
pub fn ago(secs: i64) -> String {
    match secs {
        s if s < 60 => "less than a minute".into(),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86400),
    }
}

fn ago_short(secs: i64) -> String {
    match secs {
        s if s < 60 => "<1m".into(),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb() -> Destination {
        Destination::Dir(PathBuf::from("/media/ATBOX-BACKUP"))
    }

    #[test]
    fn the_status_line_and_alerts_follow_the_runs() {
        let now = 1_000_000;
        let mut s = BackupStatus::default();
        assert!(s.summary(&[], now).nag);
        assert_eq!(s.summary(&[], now).line, "backups: none set up");
        // A drive never plugged in: a nag, never an alert.
        let absent = BackupError::Absent("no drive".into());
        s.record_run(&usb(), now - 3 * 86400, Err(&absent));
        s.record_run(&usb(), now, Err(&absent));
        let sum = s.summary(&[usb()], now);
        assert!(sum.nag && sum.alert.is_none(), "{sum:?}");
        // It works: the line says when and where.
        s.record_run(&usb(), now - 720, Ok(4));
        let sum = s.summary(&[usb()], now);
        assert_eq!(sum.line, "last good backup: 12 min ago, USB");
        assert_eq!(sum.short, "backup 12m ago USB");
        assert!(!sum.nag && sum.alert.is_none());
        // Removed after that: an alert at once; full likewise.
        s.record_run(&usb(), now, Err(&absent));
        assert_eq!(
            s.summary(&[usb()], now).alert,
            Some(BackupAlert::DriveGone("USB".into()))
        );
        s.record_run(&usb(), now, Err(&BackupError::Full("x".into())));
        assert_eq!(
            s.summary(&[usb()], now).alert,
            Some(BackupAlert::DriveFull("USB".into()))
        );
        // Any other failure: an alert only once the last good backup is a day old.
        s.record_run(&usb(), now, Err(&BackupError::Destination("io".into())));
        assert_eq!(s.summary(&[usb()], now).alert, None);
        assert_eq!(
            s.summary(&[usb()], now - 720 + ALERT_AFTER_SECS).alert,
            Some(BackupAlert::NoneFor24h)
        );
        // A failed full check is an alert until one passes.
        s.record_run(&usb(), now, Ok(5));
        s.record_verify(&usb(), now, Err(&BackupError::Damaged("hash".into())));
        assert_eq!(
            s.summary(&[usb()], now).alert,
            Some(BackupAlert::CheckFailed("USB".into()))
        );
        s.record_verify(&usb(), now + 1, Ok(()));
        assert_eq!(s.summary(&[usb()], now + 1).alert, None);
    }
}
