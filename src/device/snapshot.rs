//! The status snapshot: every fact the screen (and later the setup page) shows, as
//! plain data.
//!
//! The server's status collector (`crate::pds::status`) fills one in every few
//! seconds and publishes it on a `tokio::sync::watch` channel; the display only ever
//! reads snapshots, so it cannot slow down or break the PDS, and any screen can be
//! drawn from sample data.

use std::net::IpAddr;

/// Where start-up is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Starting: what is being done, as step `step` of `steps`.
    Booting {
        step: u8,
        steps: u8,
        doing: String,
    },
    Running,
}

/// What the relay watchdog last concluded (`crate::sync::relays`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayView {
    NoneConfigured,
    NotCheckedYet(String),
    /// Relay host, watchdog state ("ok", "lagging", "not crawling", "unreachable"), and
    /// for how long (seconds) it has not been "ok".
    Checked {
        relay: String,
        state: String,
        bad_for_secs: i64,
    },
}

/// Under-voltage / throttling as the Pi firmware reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PowerFlags {
    pub under_voltage: bool,
    pub throttled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub version: String,
    pub phase: Phase,
    /// Present while no account exists: how to claim the box.
    pub setup: Option<SetupInfo>,
    /// The first account's handle and DID.
    pub handle: Option<String>,
    pub did: Option<String>,
    /// LAN addresses (non-loopback), IPv4 first.
    pub addresses: Vec<IpAddr>,
    /// The mDNS host name actually in use (`atbox.local`, or `atbox-2.local` after a
    /// conflict), when mDNS is on.
    pub mdns_name: Option<String>,
    pub relay: RelayView,
    pub records: u64,
    pub blobs: u64,
    pub subscribers: usize,
    pub disk_free: Option<u64>,
    pub disk_total: Option<u64>,
    pub bytes_written_today: u64,
    pub cpu_temp_c: Option<f32>,
    pub uptime_secs: u64,
    /// `None` when the kernel cannot tell.
    pub clock_synced: Option<bool>,
    pub power: PowerFlags,
    /// The `atbox doctor` checks that failed at the server's last periodic run (not
    /// clock and relays, which have alerts of their own).
    pub failing_checks: Vec<String>,
    /// One-time codes waiting for their person (no SMTP): the screen shows them.
    pub codes: Vec<ShownCode>,
    pub backup: BackupView,
}

/// Backups as the screen shows them (worded by `backup::status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupView {
    /// "backup 12m ago USB", "backup: none set".
    pub line: String,
    /// Two lines when backups need the owner (drive removed or full, none for 24 h, a
    /// failed check).
    pub alert: Option<[String; 2]>,
}

/// A one-time code shown on the box instead of emailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownCode {
    pub did: String,
    pub handle: String,
    /// The storage key of what it is for (`confirm_email`, …).
    pub purpose: String,
    /// The same for people ("confirm email").
    pub what: String,
    pub code: String,
    /// Shown until (unix seconds).
    pub until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupInfo {
    pub pairing_code: String,
    pub url: String,
}

/// A condition that takes over the screen until it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alert {
    NoNetwork,
    DiskAlmostFull,
    ClockNotSynced,
    RelayNotCrawling,
    UnderVoltage,
    /// Doctor checks are failing (DNS, reachability, certificate, identity).
    ChecksFailing,
    /// Backups are configured and failing (see `BackupView::alert`).
    BackupFailing,
}

/// Disk is "almost full" below this share free, or below the absolute floor.
const DISK_FREE_MIN_SHARE: f64 = 0.05;
const DISK_FREE_MIN_BYTES: u64 = 500_000_000;
/// A relay gets this long to recover before it becomes an alert.
const RELAY_ALERT_AFTER_SECS: i64 = 15 * 60;

impl Snapshot {
    /// The first snapshot, before anything is known.
    pub fn booting(doing: &str, step: u8, steps: u8) -> Snapshot {
        Snapshot {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            phase: Phase::Booting {
                step,
                steps,
                doing: doing.to_owned(),
            },
            setup: None,
            handle: None,
            did: None,
            addresses: Vec::new(),
            mdns_name: None,
            relay: RelayView::NoneConfigured,
            records: 0,
            blobs: 0,
            subscribers: 0,
            disk_free: None,
            disk_total: None,
            bytes_written_today: 0,
            cpu_temp_c: None,
            uptime_secs: 0,
            clock_synced: None,
            power: PowerFlags::default(),
            failing_checks: Vec::new(),
            codes: Vec::new(),
            backup: BackupView::default(),
        }
    }

    /// Believable fixed data for previews, documentation and golden images.
    pub fn sample() -> Snapshot {
        Snapshot {
            phase: Phase::Running,
            handle: Some("alice.atbox.example.com".into()),
            did: Some("did:plc:ewvi7nxzyoun6zhxrhs64oiz".into()),
            addresses: vec![
                IpAddr::from([192, 168, 1, 42]),
                "fd00::42".parse().expect("literal"),
            ],
            mdns_name: Some("atbox.local".into()),
            relay: RelayView::Checked {
                relay: "bsky.network".into(),
                state: "ok".into(),
                bad_for_secs: 0,
            },
            records: 1843,
            blobs: 127,
            subscribers: 2,
            disk_free: Some(27_400_000_000),
            disk_total: Some(31_900_000_000),
            bytes_written_today: 18_700_000,
            cpu_temp_c: Some(47.2),
            uptime_secs: 3 * 86400 + 4 * 3600 + 12 * 60,
            clock_synced: Some(true),
            backup: BackupView {
                line: "backup 12m ago USB".into(),
                alert: None,
            },
            ..Snapshot::booting("", 0, 0)
        }
    }

    /// The sample as it looks before the box is claimed.
    pub fn sample_setup() -> Snapshot {
        Snapshot {
            setup: Some(SetupInfo {
                pairing_code: "482913".into(),
                url: "http://192.168.1.42/".into(),
            }),
            handle: None,
            did: None,
            records: 0,
            blobs: 0,
            relay: RelayView::NotCheckedYet("bsky.network".into()),
            ..Snapshot::sample()
        }
    }

    /// Conditions that need the owner's attention, most urgent first.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut alerts = Vec::new();
        if self.phase != Phase::Running {
            return alerts;
        }
        if self.addresses.is_empty() {
            alerts.push(Alert::NoNetwork);
        }
        if self.power.under_voltage {
            alerts.push(Alert::UnderVoltage);
        }
        if let (Some(free), Some(total)) = (self.disk_free, self.disk_total) {
            if free < DISK_FREE_MIN_BYTES.min(total / 4)
                || (free as f64) < total as f64 * DISK_FREE_MIN_SHARE
            {
                alerts.push(Alert::DiskAlmostFull);
            }
        }
        if self.clock_synced == Some(false) {
            alerts.push(Alert::ClockNotSynced);
        }
        if let RelayView::Checked {
            state,
            bad_for_secs,
            ..
        } = &self.relay
        {
            if state != "ok" && *bad_for_secs >= RELAY_ALERT_AFTER_SECS {
                alerts.push(Alert::RelayNotCrawling);
            }
        }
        if !self.failing_checks.is_empty() {
            alerts.push(Alert::ChecksFailing);
        }
        if self.backup.alert.is_some() {
            alerts.push(Alert::BackupFailing);
        }
        alerts
    }

    /// The facts whose change should wake a dimmed or sleeping screen (not counters
    /// and clocks, which change all the time).
    pub fn wake_key(&self) -> impl PartialEq {
        (
            self.phase.clone(),
            self.setup.clone(),
            self.handle.clone(),
            self.addresses.clone(),
            self.mdns_name.clone(),
            self.alerts(),
            self.codes.clone(),
        )
    }

    /// The address to show first: a private IPv4 if there is one.
    pub fn primary_address(&self) -> Option<IpAddr> {
        self.addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or(self.addresses.first())
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_follow_the_facts() {
        assert!(Snapshot::sample().alerts().is_empty());
        let mut s = Snapshot::sample();
        s.addresses.clear();
        s.disk_free = Some(100_000_000);
        s.clock_synced = Some(false);
        s.power.under_voltage = true;
        s.relay = RelayView::Checked {
            relay: "bsky.network".into(),
            state: "not crawling".into(),
            bad_for_secs: 3600,
        };
        s.failing_checks = vec!["reachable".into()];
        assert_eq!(
            s.alerts(),
            vec![
                Alert::NoNetwork,
                Alert::UnderVoltage,
                Alert::DiskAlmostFull,
                Alert::ClockNotSynced,
                Alert::RelayNotCrawling,
                Alert::ChecksFailing,
            ]
        );
        // A relay hiccup is not an alert yet.
        s.relay = RelayView::Checked {
            relay: "bsky.network".into(),
            state: "lagging".into(),
            bad_for_secs: 60,
        };
        assert!(!s.alerts().contains(&Alert::RelayNotCrawling));
        // Booting shows no alerts.
        assert!(Snapshot::booting("x", 1, 3).alerts().is_empty());
    }

    #[test]
    fn counters_do_not_wake_the_screen() {
        let a = Snapshot::sample();
        let mut b = a.clone();
        b.records += 1;
        b.uptime_secs += 60;
        assert!(a.wake_key() == b.wake_key());
        b.mdns_name = Some("atbox-2.local".into());
        assert!(a.wake_key() != b.wake_key());
    }
}
