//! What the 128×64 screen says, drawn with `embedded-graphics` into a [`Frame`].
//!
//! [`plan`] picks the screens a snapshot calls for (boot while starting; alerts, which
//! take over while any is active; the setup screen while the box is unclaimed; else
//! the rotating status pages), and [`render`] draws one. Layout rules: text in the
//! 6×10 font where it fits (5×8 otherwise, truncated as a last resort), and the
//! right-most column and bottom row left empty so the burn-in shift loses nothing.

use super::frame::{Frame, HEIGHT, WIDTH};
use super::snapshot::{Alert, Phase, RelayView, Snapshot};
use embedded_graphics::mono_font::ascii::{FONT_10X20, FONT_4X6, FONT_5X8, FONT_6X10};
use embedded_graphics::mono_font::{MonoFont, MonoTextStyle};
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Baseline, Text};

/// One screenful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Boot,
    Setup,
    /// Account, records, firehose, relay.
    Pds,
    /// Addresses and mDNS name.
    Network,
    /// Disk, writes, temperature, uptime.
    System,
    /// The n-th one-time code waiting for its person (no SMTP).
    Code(usize),
    Alert(Alert),
}

/// Every screen by the name `atbox display preview --screen` takes.
pub const NAMED: &[(&str, Screen)] = &[
    ("boot", Screen::Boot),
    ("setup", Screen::Setup),
    ("pds", Screen::Pds),
    ("network", Screen::Network),
    ("system", Screen::System),
    ("code", Screen::Code(0)),
    ("alert-network", Screen::Alert(Alert::NoNetwork)),
    ("alert-disk", Screen::Alert(Alert::DiskAlmostFull)),
    ("alert-clock", Screen::Alert(Alert::ClockNotSynced)),
    ("alert-relay", Screen::Alert(Alert::RelayNotCrawling)),
    ("alert-power", Screen::Alert(Alert::UnderVoltage)),
    ("alert-checks", Screen::Alert(Alert::ChecksFailing)),
    ("alert-backup", Screen::Alert(Alert::BackupFailing)),
];

impl Screen {
    pub fn by_name(name: &str) -> Option<Screen> {
        NAMED.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }
}

/// Sample facts that make `screen` the one shown (previews, docs, golden images).
pub fn sample_for(screen: Screen) -> Snapshot {
    let mut s = Snapshot::sample();
    match screen {
        Screen::Boot => return Snapshot::booting("opening the database", 1, 3),
        Screen::Setup => return Snapshot::sample_setup(),
        Screen::Pds | Screen::Network | Screen::System => {}
        Screen::Code(_) => {
            s.codes = vec![super::snapshot::ShownCode {
                did: s.did.clone().unwrap_or_default(),
                handle: "bob.atbox.example.com".into(),
                purpose: "confirm_email".into(),
                what: "confirm email".into(),
                code: "K7QXM-3HRTA".into(),
                until: i64::MAX,
            }]
        }
        Screen::Alert(Alert::NoNetwork) => s.addresses.clear(),
        Screen::Alert(Alert::DiskAlmostFull) => s.disk_free = Some(180_000_000),
        Screen::Alert(Alert::ClockNotSynced) => s.clock_synced = Some(false),
        Screen::Alert(Alert::UnderVoltage) => s.power.under_voltage = true,
        Screen::Alert(Alert::ChecksFailing) => {
            s.failing_checks = vec!["reachable".into(), "certificate".into()]
        }
        Screen::Alert(Alert::BackupFailing) => {
            s.backup.alert = Some(["drive removed:".into(), "plug it back in".into()])
        }
        Screen::Alert(Alert::RelayNotCrawling) => {
            s.relay = RelayView::Checked {
                relay: "bsky.network".into(),
                state: "not crawling".into(),
                bad_for_secs: 3600,
            }
        }
    }
    s
}

/// The screens to cycle through for this snapshot, in order.
pub fn plan(s: &Snapshot) -> Vec<Screen> {
    if matches!(s.phase, Phase::Booting { .. }) {
        return vec![Screen::Boot];
    }
    let alerts = s.alerts().into_iter().map(Screen::Alert);
    // Somebody is waiting for a code: it takes over (alerts take turns with it).
    if !s.codes.is_empty() {
        return (0..s.codes.len()).map(Screen::Code).chain(alerts).collect();
    }
    if s.setup.is_some() {
        // Claiming the box is how most problems get fixed: the setup screen stays in
        // the rotation, alerts take turns with it.
        return std::iter::once(Screen::Setup).chain(alerts).collect();
    }
    let alerts: Vec<Screen> = alerts.collect();
    if !alerts.is_empty() {
        return alerts;
    }
    vec![Screen::Pds, Screen::Network, Screen::System]
}

/// Draws `screen` with the facts of `s`.
pub fn render(screen: Screen, s: &Snapshot) -> Frame {
    let mut f = Frame::default();
    match screen {
        Screen::Boot => boot(&mut f, s),
        Screen::Setup => setup(&mut f, s),
        Screen::Pds => pds(&mut f, s),
        Screen::Network => network(&mut f, s),
        Screen::System => system(&mut f, s),
        Screen::Code(n) => code(&mut f, s, n),
        Screen::Alert(a) => alert(&mut f, s, a),
    }
    f
}

const ON: BinaryColor = BinaryColor::On;
/// Usable area: everything but the last column and row (the burn-in shift's room).
const RIGHT: i32 = WIDTH as i32 - 1;

fn text(f: &mut Frame, font: &MonoFont, s: &str, x: i32, y: i32) {
    let style = MonoTextStyle::new(font, ON);
    let _ = Text::with_baseline(s, Point::new(x, y), style, Baseline::Top).draw(f);
}

/// Text in the largest font it fits at, within `width` pixels; cut with ".." if even
/// the smallest font is too wide.
fn fit(f: &mut Frame, s: &str, x: i32, y: i32, width: i32) {
    let chars = s.chars().count() as i32;
    if chars * 6 <= width {
        text(f, &FONT_6X10, s, x, y);
    } else if chars * 5 <= width {
        text(f, &FONT_5X8, s, x, y + 1);
    } else if chars * 4 <= width {
        text(f, &FONT_4X6, s, x, y + 2);
    } else {
        let keep = (width / 5 - 2).max(0) as usize;
        let cut: String = s.chars().take(keep).collect();
        text(f, &FONT_5X8, &format!("{cut}.."), x, y + 1);
    }
}

/// An inverted title bar with the page's name and, on the right, `note`.
fn title(f: &mut Frame, name: &str, note: &str) {
    let _ = Rectangle::new(Point::zero(), Size::new(RIGHT as u32, 11))
        .into_styled(PrimitiveStyle::with_fill(ON))
        .draw(f);
    let style = MonoTextStyle::new(&FONT_6X10, BinaryColor::Off);
    let _ = Text::with_baseline(name, Point::new(2, 1), style, Baseline::Top).draw(f);
    let w = note.len() as i32 * 6;
    let _ = Text::with_baseline(note, Point::new(RIGHT - 2 - w, 1), style, Baseline::Top).draw(f);
}

/// Lines under a title bar, 12 pixels apart.
fn lines(f: &mut Frame, rows: &[String]) {
    for (i, row) in rows.iter().take(4).enumerate() {
        fit(f, row, 1, 14 + 12 * i as i32, RIGHT - 1);
    }
}

pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

fn boot(f: &mut Frame, s: &Snapshot) {
    text(f, &FONT_10X20, "atbox", 1, 2);
    fit(f, &format!("v{}", s.version), 60, 8, RIGHT - 60);
    let (step, steps, doing) = match &s.phase {
        Phase::Booting { step, steps, doing } => (*step, *steps, doing.as_str()),
        Phase::Running => (1, 1, "ready"),
    };
    fit(f, "starting", 1, 26, RIGHT - 1);
    fit(f, doing, 1, 38, RIGHT - 1);
    let bar = Rectangle::new(Point::new(1, 52), Size::new(RIGHT as u32 - 2, 9));
    let _ = bar.into_styled(PrimitiveStyle::with_stroke(ON, 1)).draw(f);
    let inner = (RIGHT - 6) as u32 * u32::from(step.min(steps)) / u32::from(steps.max(1));
    let _ = Rectangle::new(Point::new(3, 54), Size::new(inner, 5))
        .into_styled(PrimitiveStyle::with_fill(ON))
        .draw(f);
}

/// The QR code of `url`: dark modules on a lit square (the polarity phone cameras
/// expect), two modules of quiet zone, as large as fits in `max` pixels.
fn qr(f: &mut Frame, url: &str, x: i32, y: i32, max: i32) {
    use qrcode::{EcLevel, QrCode, Version};
    // Version 2 (25 modules) at 2 px each fills the height; longer URLs fall back to
    // the smallest version that holds them, at whatever module size still fits.
    let code = QrCode::with_version(url, Version::Normal(2), EcLevel::L)
        .or_else(|_| QrCode::with_error_correction_level(url, EcLevel::L));
    let Ok(code) = code else { return };
    let modules = code.width() as i32;
    let quiet = 2;
    let scale = max / (modules + 2 * quiet);
    if scale < 1 {
        return;
    }
    let side = (modules + 2 * quiet) * scale;
    let _ = Rectangle::new(Point::new(x, y), Size::new(side as u32, side as u32))
        .into_styled(PrimitiveStyle::with_fill(ON))
        .draw(f);
    let colors = code.to_colors();
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (mx, my) = (i as i32 % modules, i as i32 / modules);
            for dy in 0..scale {
                for dx in 0..scale {
                    f.set(
                        (x + (quiet + mx) * scale + dx) as u32,
                        (y + (quiet + my) * scale + dy) as u32,
                        false,
                    );
                }
            }
        }
    }
}

fn setup(f: &mut Frame, s: &Snapshot) {
    let Some(info) = &s.setup else {
        return pds(f, s);
    };
    let qr_side = HEIGHT as i32 - 4;
    qr(f, &info.url, 0, 2, qr_side);
    let x = qr_side + 4;
    let w = RIGHT - x;
    fit(f, "SET ME UP", x, 0, w);
    if let Some(name) = &s.mdns_name {
        fit(f, name, x, 11, w);
    }
    if let Some(ip) = s.primary_address() {
        fit(f, &ip.to_string(), x, 21, w);
    }
    fit(f, "code:", x, 32, w);
    if info.pairing_code.len() as i32 * 10 <= w {
        text(f, &FONT_10X20, &info.pairing_code, x, 42);
    } else {
        fit(f, &info.pairing_code, x, 44, w);
    }
}

fn relay_line(r: &RelayView) -> String {
    match r {
        RelayView::NoneConfigured => "relay: none set".into(),
        RelayView::NotCheckedYet(relay) => format!("{relay}: ..."),
        RelayView::Checked { relay, state, .. } => format!("{relay}: {state}"),
    }
}

fn pds(f: &mut Frame, s: &Snapshot) {
    title(f, "atbox", "1/3");
    lines(
        f,
        &[
            s.handle.clone().unwrap_or_else(|| "no account yet".into()),
            format!("{} rec  {} blobs", s.records, s.blobs),
            format!("firehose: {} conn", s.subscribers),
            relay_line(&s.relay),
        ],
    );
}

fn network(f: &mut Frame, s: &Snapshot) {
    title(f, "network", "2/3");
    let v4 = s.addresses.iter().find(|a| a.is_ipv4());
    let v6 = s.addresses.iter().find(|a| a.is_ipv6());
    lines(
        f,
        &[
            s.mdns_name.clone().unwrap_or_else(|| "mDNS off".into()),
            v4.map_or("no IPv4".into(), |a| a.to_string()),
            v6.map_or("no IPv6".into(), |a| a.to_string()),
            match s.clock_synced {
                Some(true) => "clock synced".into(),
                Some(false) => "clock NOT synced".into(),
                None => "clock: unknown".into(),
            },
        ],
    );
}

fn system(f: &mut Frame, s: &Snapshot) {
    title(f, "system", "3/3");
    let disk = match (s.disk_free, s.disk_total) {
        (Some(free), Some(_)) => format!("{} free", human_bytes(free)),
        _ => "disk: unknown".into(),
    };
    let temp = s.cpu_temp_c.map_or("cpu temp: n/a".into(), |t| {
        format!(
            "cpu {t:.0} C{}",
            if s.power.throttled { " THROTTLED" } else { "" }
        )
    });
    lines(
        f,
        &[
            disk,
            format!("{} written today", human_bytes(s.bytes_written_today)),
            format!("{temp}, up {}", human_duration(s.uptime_secs)),
            s.backup.line.clone(),
        ],
    );
}

/// The failing checks in one short line: the first, and how many more.
fn checks_line(checks: &[String]) -> String {
    let first: String = checks
        .first()
        .map_or("", String::as_str)
        .chars()
        .take(14)
        .collect();
    match checks.len() {
        0 | 1 => format!("{first} failed"),
        n => format!("{first} +{} more", n - 1),
    }
}

/// "CODE for @alice…", the code large, and what it is for.
fn code(f: &mut Frame, s: &Snapshot, n: usize) {
    let Some(c) = s.codes.get(n) else {
        return pds(f, s);
    };
    title(f, "CODE", &format!("{}/{}", n + 1, s.codes.len()));
    fit(f, &format!("for @{}", c.handle), 1, 14, RIGHT - 1);
    if (c.code.len() as i32) * 10 < RIGHT {
        text(f, &FONT_10X20, &c.code, 1, 27);
    } else {
        fit(f, &c.code, 1, 32, RIGHT - 1);
    }
    fit(f, &c.what, 1, 50, RIGHT - 1);
}

fn alert(f: &mut Frame, s: &Snapshot, a: Alert) {
    let (headline, advice): (&str, Vec<String>) = match a {
        Alert::NoNetwork => (
            "NO NETWORK",
            vec!["Check the cable".into(), "and the router.".into()],
        ),
        Alert::DiskAlmostFull => (
            "DISK FULL",
            vec![
                format!("{} left", human_bytes(s.disk_free.unwrap_or(0))),
                "Use a bigger card".into(),
            ],
        ),
        Alert::ClockNotSynced => (
            "CLOCK WRONG",
            vec!["Time not synced:".into(), "needs internet/NTP".into()],
        ),
        Alert::RelayNotCrawling => (
            "NOT FEDERATING",
            vec![relay_line(&s.relay), "see atbox doctor".into()],
        ),
        Alert::UnderVoltage => (
            "LOW VOLTAGE",
            vec!["Use a 5V 3A".into(), "power supply.".into()],
        ),
        Alert::ChecksFailing => (
            "CHECKS FAILING",
            vec![
                checks_line(&s.failing_checks),
                // Where the doctor's findings and fixes are: the setup page.
                format!("see {}", s.mdns_name.as_deref().unwrap_or("atbox doctor")),
            ],
        ),
        Alert::BackupFailing => (
            "BACKUP FAILING",
            s.backup.alert.clone().unwrap_or_default().to_vec(),
        ),
    };
    let index = s.alerts().iter().position(|x| *x == a).unwrap_or(0) + 1;
    title(
        f,
        "! ALERT",
        &format!("{index}/{}", s.alerts().len().max(1)),
    );
    let mut rows = vec![headline.to_owned()];
    rows.extend(advice);
    lines(f, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_state() {
        assert_eq!(plan(&Snapshot::booting("db", 1, 3)), vec![Screen::Boot]);
        assert_eq!(plan(&Snapshot::sample_setup()), vec![Screen::Setup]);
        assert_eq!(
            plan(&Snapshot::sample()),
            vec![Screen::Pds, Screen::Network, Screen::System]
        );
        let mut s = Snapshot::sample();
        s.addresses.clear();
        assert_eq!(plan(&s), vec![Screen::Alert(Alert::NoNetwork)]);
        let mut s = Snapshot::sample_setup();
        s.clock_synced = Some(false);
        assert_eq!(
            plan(&s),
            vec![Screen::Setup, Screen::Alert(Alert::ClockNotSynced)]
        );
    }

    #[test]
    fn every_screen_draws_inside_the_shift_margin() {
        for (name, screen) in NAMED {
            let sample = sample_for(*screen);
            assert!(
                plan(&sample).contains(screen),
                "the sample for {name} shows it"
            );
            let f = render(*screen, &sample);
            assert!(f.lit_count() > 30, "{name} is nearly empty");
            for y in 0..HEIGHT {
                assert!(!f.get(WIDTH - 1, y), "{name} touches the right edge");
            }
            for x in 0..WIDTH {
                assert!(!f.get(x, HEIGHT - 1), "{name} touches the bottom edge");
            }
        }
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(18_700_000), "18.7 MB");
        assert_eq!(human_duration(3 * 86400 + 4 * 3600 + 12 * 60), "3d 4h 12m");
        assert_eq!(human_duration(59), "0m");
    }
}
