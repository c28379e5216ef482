//! The OLED display path without hardware: atbox's `Oled` and the real `ssd1306`
//! driver over an emulated SSD1306 on an emulated I2C bus (tests/it/display/), checked
//! against what the screen renderer intended — every screen, both mounting
//! orientations, the QR code, bus faults, dimming, sleep, paging and burn-in shift —
//! and golden PNGs of every screen (tests/fixtures/display/, docs/screens/).
//!
//! To accept a deliberate change of the screens: `ATBOX_UPDATE_GOLDEN=1 cargo test
//! --test display`, then look at the PNGs before committing them.

use crate::common;

mod emulator;

use atbox::device::frame::Frame;
use atbox::device::panel::{Level, Oled, Panel, Rotation};
use atbox::device::runner::{DisplayRunner, DisplaySettings};
use atbox::device::screens::{self, Screen, NAMED};
use atbox::device::Snapshot;
use emulator::EmulatedPanel;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const ADDRESS: u8 = 0x3c;

fn oled(panel: &EmulatedPanel, rotation: Rotation) -> Oled<EmulatedPanel> {
    Oled::new(panel.clone(), ADDRESS, rotation)
}

#[test]
fn every_screen_reaches_the_glass_in_both_orientations() {
    for rotation in [Rotation::Normal, Rotation::UpsideDown] {
        let panel = EmulatedPanel::new(ADDRESS);
        let mut display = oled(&panel, rotation);
        display.init().unwrap();
        for (name, screen) in NAMED {
            let intended = screens::render(*screen, &screens::sample_for(*screen));
            display.show(&intended).unwrap();
            // Someone looking at an upside-down module sees the glass turned round.
            let seen = match rotation {
                Rotation::Normal => panel.glass(),
                Rotation::UpsideDown => panel.glass().rotated_180(),
            };
            assert_eq!(seen, intended, "{name} ({rotation:?})");
        }
        assert_eq!(panel.problems(), Vec::<String>::new());
        let s = panel.state();
        assert!(s.display_on && s.charge_pump, "init powers the panel up");
    }
}

#[test]
fn only_changed_areas_are_sent_after_the_first_frame() {
    let panel = EmulatedPanel::new(ADDRESS);
    let mut display = oled(&panel, Rotation::Normal);
    display.init().unwrap();
    let sample = Snapshot::sample();
    display
        .show(&screens::render(Screen::Pds, &sample))
        .unwrap();
    let full = panel.state().data_bytes;
    assert!(full >= 1024, "the first frame fills the RAM ({full} bytes)");
    let mut next = sample.clone();
    next.records += 1;
    let frame = screens::render(Screen::Pds, &next);
    display.show(&frame).unwrap();
    let sent = panel.state().data_bytes - full;
    assert!(sent < 512, "a one-line change sent {sent} bytes");
    assert_eq!(panel.glass(), frame);
}

/// The 128×64 picture scaled up with a white border, as a camera would see it, in a
/// form rqrr reads.
fn decode_qr(frame: &Frame) -> Vec<String> {
    let scale = 4;
    let border = 16;
    let (w, h) = (128 * scale + 2 * border, 64 * scale + 2 * border);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        let (x, y) = (x as i64 - border as i64, y as i64 - border as i64);
        if x < 0 || y < 0 || x >= (128 * scale) as i64 || y >= (64 * scale) as i64 {
            return 255;
        }
        if frame.get((x / scale as i64) as u32, (y / scale as i64) as u32) {
            255
        } else {
            0
        }
    });
    img.detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, content)| content))
        .collect()
}

#[test]
fn the_setup_screen_qr_code_decodes_to_the_setup_url() {
    let mut s = Snapshot::sample_setup();
    for url in ["http://192.168.1.42/", "http://192.168.100.200:8080/"] {
        s.setup.as_mut().unwrap().url = url.into();
        // Through the whole path: renderer, driver, emulated glass (upside-down mount).
        let panel = EmulatedPanel::new(ADDRESS);
        let mut display = oled(&panel, Rotation::UpsideDown);
        display.init().unwrap();
        display.show(&screens::render(Screen::Setup, &s)).unwrap();
        let seen = panel.glass().rotated_180();
        assert_eq!(decode_qr(&seen), vec![url.to_owned()]);
    }
}

#[test]
fn bus_faults_are_errors_not_panics() {
    let panel = EmulatedPanel::new(ADDRESS);
    panel.set_unplugged(true);
    let mut display = oled(&panel, Rotation::Normal);
    assert!(display.init().is_err());
    assert!(display.show(&Frame::default()).is_err());
    assert!(display.set_level(Level::Dim).is_err());
    // A module at another address NACKs too.
    let elsewhere = EmulatedPanel::new(0x3d);
    assert!(oled(&elsewhere, Rotation::Normal).init().is_err());
    // A glitch mid-frame fails that frame; the next one goes through.
    panel.set_unplugged(false);
    display.init().unwrap();
    panel.fail_next(1);
    let frame = screens::render(Screen::System, &Snapshot::sample());
    assert!(display.show(&frame).is_err());
    display.show(&frame).unwrap();
    assert_eq!(panel.glass(), frame);
}

fn settings() -> DisplaySettings {
    DisplaySettings {
        rotation: Rotation::Normal,
        dim_after: Duration::from_secs(60),
        sleep_after: Duration::from_secs(120),
        page_every: Duration::from_secs(5),
        shift_every: Duration::from_secs(30),
    }
}

type TestRunner = DisplayRunner<
    Oled<EmulatedPanel>,
    Box<dyn FnMut() -> Result<Oled<EmulatedPanel>, atbox::device::panel::PanelError>>,
>;

fn runner(panel: &EmulatedPanel, t0: Instant) -> TestRunner {
    let bus = panel.clone();
    DisplayRunner::new(
        Box::new(move || Ok(Oled::new(bus.clone(), ADDRESS, Rotation::Normal))),
        settings(),
        t0,
    )
}

#[test]
fn a_missing_display_is_retried_with_backoff_and_recovers() {
    let panel = EmulatedPanel::new(ADDRESS);
    panel.set_unplugged(true);
    let t0 = Instant::now();
    let mut r = runner(&panel, t0);
    let snap = Snapshot::sample();
    r.step(t0, &snap);
    assert!(r.panel().is_none());
    let tries = panel.state().transactions;
    // Within the backoff nothing touches the bus.
    r.step(t0 + Duration::from_millis(500), &snap);
    assert_eq!(panel.state().transactions, tries);
    panel.set_unplugged(false);
    r.step(t0 + Duration::from_secs(1), &snap);
    assert!(r.panel().is_some(), "found once plugged in");
    assert_eq!(panel.glass(), screens::render(Screen::Pds, &snap));
    // Unplugged while running: the frame fails, the panel is dropped and re-opened.
    panel.set_unplugged(true);
    let mut changed = snap.clone();
    changed.records += 5;
    r.step(t0 + Duration::from_secs(2), &changed);
    assert!(r.panel().is_none());
    panel.set_unplugged(false);
    r.step(t0 + Duration::from_secs(4), &changed);
    assert!(r.panel().is_some());
    assert_eq!(panel.glass(), screens::render(Screen::Pds, &changed));
}

#[test]
fn pages_rotate_shift_dim_sleep_and_wake() {
    let panel = EmulatedPanel::new(ADDRESS);
    let t0 = Instant::now();
    let mut r = runner(&panel, t0);
    let snap = Snapshot::sample();
    let at = |s: u64| t0 + Duration::from_secs(s);
    r.step(at(0), &snap);
    assert_eq!(r.screen(), Some(Screen::Pds));
    let bright = panel.state().contrast;
    r.step(at(5), &snap);
    assert_eq!(r.screen(), Some(Screen::Network));
    assert_eq!(panel.glass(), screens::render(Screen::Network, &snap));
    r.step(at(10), &snap);
    assert_eq!(r.screen(), Some(Screen::System));
    r.step(at(15), &snap);
    assert_eq!(r.screen(), Some(Screen::Pds));
    // Burn-in care: after `shift_every` the picture moves by a pixel.
    r.step(at(31), &snap);
    let shifted = screens::render(r.screen().unwrap(), &snap).shifted(1, 0);
    assert_eq!(panel.glass(), shifted);
    // Counters changing do not keep the screen awake.
    let mut busy = snap.clone();
    busy.records += 100;
    r.step(at(61), &busy);
    assert_eq!(r.level(), Some(Level::Dim));
    assert!(panel.state().contrast < bright, "dimmed");
    assert!(panel.state().display_on);
    r.step(at(121), &busy);
    assert_eq!(r.level(), Some(Level::Off));
    assert!(!panel.state().display_on, "asleep");
    // A status change (an alert) wakes it.
    let mut alarm = busy.clone();
    alarm.clock_synced = Some(false);
    r.step(at(122), &alarm);
    assert_eq!(r.level(), Some(Level::Bright));
    assert!(panel.state().display_on);
    assert_eq!(
        r.screen(),
        Some(Screen::Alert(
            atbox::device::snapshot::Alert::ClockNotSynced
        ))
    );
    // Alerts and the setup screen dim but never go dark.
    r.step(at(1000), &alarm);
    assert_eq!(r.level(), Some(Level::Dim));
    assert!(panel.state().display_on);
}

fn golden_dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(sub)
}

#[test]
fn screens_match_the_golden_images() {
    let update = std::env::var_os("ATBOX_UPDATE_GOLDEN").is_some();
    let mut mismatched = Vec::new();
    for (name, screen) in NAMED {
        let frame = screens::render(*screen, &screens::sample_for(*screen));
        // 1:1 goldens the comparison uses, and the 4x pictures the README shows.
        let golden = golden_dir("tests/fixtures/display").join(format!("{name}.png"));
        let doc = golden_dir("docs/screens").join(format!("{name}.png"));
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::create_dir_all(doc.parent().unwrap()).unwrap();
            std::fs::write(&golden, frame.to_png(1)).unwrap();
            std::fs::write(&doc, frame.to_png(4)).unwrap();
            continue;
        }
        let expected = Frame::from_png(&std::fs::read(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (ATBOX_UPDATE_GOLDEN=1 creates it)",
                golden.display()
            )
        }))
        .unwrap();
        if expected != frame {
            mismatched.push(format!("{name}:\nexpected\n{expected:?}\ngot\n{frame:?}"));
        }
        assert_eq!(
            std::fs::read(&doc).ok(),
            Some(frame.to_png(4)),
            "{} is stale (ATBOX_UPDATE_GOLDEN=1 rewrites it)",
            doc.display()
        );
    }
    assert!(mismatched.is_empty(), "{}", mismatched.join("\n"));
}

#[test]
fn preview_command_writes_a_png_of_the_named_screen() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("setup.png");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(["display", "preview", "--screen", "setup", "--png"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let frame = Frame::from_png(&std::fs::read(&png).unwrap()).unwrap();
    assert_eq!(
        frame,
        screens::render(Screen::Setup, &Snapshot::sample_setup())
    );
    assert_eq!(decode_qr(&frame), vec!["http://192.168.1.42/".to_owned()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(["display", "preview", "--screen", "nope", "--png"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("alert-power"));
}

#[test]
fn the_emulator_decodes_the_datasheet_command_set() {
    use embedded_hal::i2c::I2c;
    let mut bus = EmulatedPanel::new(ADDRESS);
    let check = bus.clone();
    // Power-up state: off, dark.
    assert_eq!(check.glass().lit_count(), 0);
    // Charge pump on, display on, upright orientation, vertical addressing in a 2x2
    // window at column 10, page 1: four bytes fill it column by column.
    bus.write(
        ADDRESS,
        &[
            0x00, 0x8D, 0x14, 0xAF, 0xA1, 0xC8, 0x20, 0x01, 0x21, 10, 11, 0x22, 1, 2,
        ],
    )
    .unwrap();
    bus.write(ADDRESS, &[0x40, 0x01, 0x02, 0x04, 0x80]).unwrap();
    let g = check.glass();
    assert!(g.get(10, 8) && g.get(10, 17) && g.get(11, 10) && g.get(11, 23));
    // Page addressing with Co=1 single commands: page 7, column 0x7E, two bytes.
    bus.write(
        ADDRESS,
        &[
            0x80, 0x20, 0x80, 0x02, 0x80, 0xB7, 0x80, 0x0E, 0x80, 0x17, 0x40, 0xFF, 0xFF,
        ],
    )
    .unwrap();
    let g = check.glass();
    assert!((56..64).all(|y| g.get(126, y) && g.get(127, y)));
    let lit = g.lit_count();
    // Invert, entire-display-on, display off and charge pump off act on the glass.
    bus.write(ADDRESS, &[0x00, 0xA7]).unwrap();
    assert_eq!(check.glass().lit_count(), 128 * 64 - lit);
    bus.write(ADDRESS, &[0x00, 0xA6, 0xA5]).unwrap();
    assert_eq!(check.glass().lit_count(), 128 * 64);
    bus.write(ADDRESS, &[0x00, 0xA4, 0xAE]).unwrap();
    assert_eq!(check.glass().lit_count(), 0);
    bus.write(ADDRESS, &[0x00, 0xAF, 0x8D, 0x10]).unwrap();
    assert_eq!(check.glass().lit_count(), 0, "no charge pump, no light");
    // The power-on orientation (no remap) shows the module upside down.
    bus.write(ADDRESS, &[0x00, 0x8D, 0x14, 0xA0, 0xC0]).unwrap();
    assert!(
        check.glass().get(117, 55),
        "column 10, row 8 seen from the other side"
    );
    // Settings that garble a 128x64 module are reported.
    bus.write(ADDRESS, &[0x00, 0xDA, 0x02, 0x2F]).unwrap();
    assert_eq!(check.problems().len(), 2, "{:?}", check.problems());
}

/// The real server drives the display through the status snapshot: the setup screen
/// (with a QR code of its own address) while unclaimed, status pages afterwards.
#[test]
fn serve_shows_the_setup_screen_until_an_account_exists() {
    let plc = common::server::start_plc();
    let frames = tempfile::tempdir().unwrap();
    let display = format!("png:{}", frames.path().display());
    let atbox = common::server::start_atbox(&plc.url, &[("ATBOX_DISPLAY", display.as_str())]);
    let current = frames.path().join("current.png");
    let wait_for = |what: &str, accept: &dyn Fn(&Frame) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(f) = std::fs::read(&current)
                .ok()
                .and_then(|b| Frame::from_png(&b).ok())
            {
                if accept(&f) {
                    return f;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the screen never showed {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let setup_url = format!("{}/", atbox.server.url.replace("localhost", "127.0.0.1"));
    wait_for("the setup QR code", &|f| {
        decode_qr(f) == vec![setup_url.clone()]
    });
    atbox.cli(
        &plc.url,
        &[
            "account",
            "create",
            "--handle",
            "owner.test",
            "--email",
            "o@example.com",
            "--password",
            "pw for screen",
        ],
    );
    let status = wait_for("a status page", &|f| decode_qr(f).is_empty() && f.get(3, 3));
    assert!(status.lit_count() > 200);
}
