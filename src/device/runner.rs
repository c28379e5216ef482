//! The display loop: which screen to show, when to dim and sleep, and what to do when
//! the panel is missing or fails.
//!
//! [`DisplayRunner::step`] is called a few times a second with the time and the latest
//! snapshot; it is deterministic in both, so tests drive it with made-up clocks. A
//! panel that cannot be opened or stops answering is logged once, dropped, and
//! re-opened with exponential backoff; nothing here can block or fail the PDS, which
//! only publishes snapshots. [`spawn`] runs the loop on its own thread (I2C calls
//! block).

use super::frame::Frame;
use super::panel::{open_i2c, DisplaySpec, Level, Panel, PanelError, PngDir, Rotation};
use super::screens::{self, Screen};
use super::snapshot::Snapshot;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Timing of the display loop.
#[derive(Debug, Clone)]
pub struct DisplaySettings {
    pub rotation: Rotation,
    /// Idle time (no status change) before the screen dims; zero = never.
    pub dim_after: Duration,
    /// Idle time before the screen turns off; zero = never.
    pub sleep_after: Duration,
    /// How long each status page stays up.
    pub page_every: Duration,
    /// How often the burn-in shift moves the picture by one pixel.
    pub shift_every: Duration,
}

impl Default for DisplaySettings {
    fn default() -> Self {
        DisplaySettings {
            rotation: Rotation::Normal,
            dim_after: Duration::from_secs(10 * 60),
            sleep_after: Duration::from_secs(60 * 60),
            page_every: Duration::from_secs(5),
            shift_every: Duration::from_secs(120),
        }
    }
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// The four burn-in offsets, visited in a square so no pixel stays lit for long.
const SHIFTS: [(u32, u32); 4] = [(0, 0), (1, 0), (1, 1), (0, 1)];

pub struct DisplayRunner<P, Open> {
    open: Open,
    settings: DisplaySettings,
    started: Instant,
    panel: Option<P>,
    next_attempt: Instant,
    backoff: Duration,
    /// Whether the current run of failures has been logged already.
    failing: bool,
    shown: Option<Frame>,
    level: Option<Level>,
    last_change: Instant,
    last_seen: Option<Snapshot>,
    plan: Vec<Screen>,
    page: usize,
    page_since: Instant,
}

impl<P: Panel, Open: FnMut() -> Result<P, PanelError>> DisplayRunner<P, Open> {
    pub fn new(open: Open, settings: DisplaySettings, now: Instant) -> Self {
        DisplayRunner {
            open,
            settings,
            started: now,
            panel: None,
            next_attempt: now,
            backoff: FIRST_RETRY,
            failing: false,
            shown: None,
            level: None,
            last_change: now,
            last_seen: None,
            plan: Vec::new(),
            page: 0,
            page_since: now,
        }
    }

    /// The screen currently selected (for tests and the log).
    pub fn screen(&self) -> Option<Screen> {
        self.plan.get(self.page).copied()
    }

    /// The level last applied to the panel.
    pub fn level(&self) -> Option<Level> {
        self.level
    }

    pub fn panel(&self) -> Option<&P> {
        self.panel.as_ref()
    }

    /// One turn of the loop.
    pub fn step(&mut self, now: Instant, snap: &Snapshot) {
        if self.panel.is_none() {
            if now < self.next_attempt {
                return;
            }
            match (self.open)().and_then(|mut p| p.init().map(|()| p)) {
                Ok(p) => {
                    if self.failing {
                        tracing::info!("display: working again");
                    }
                    self.panel = Some(p);
                    self.failing = false;
                    self.backoff = FIRST_RETRY;
                }
                Err(e) => return self.failed(now, e),
            }
        }
        if let Err(e) = self.update(now, snap) {
            self.failed(now, e);
        }
    }

    fn failed(&mut self, now: Instant, e: PanelError) {
        if !self.failing {
            tracing::warn!(
                "display: {e}; the PDS is unaffected, retrying in the background \
                 (set display = \"none\" / ATBOX_DISPLAY=none if there is no screen)"
            );
        } else {
            tracing::debug!("display: still failing: {e}");
        }
        self.failing = true;
        self.panel = None;
        self.shown = None;
        self.level = None;
        self.next_attempt = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_RETRY);
    }

    fn wanted_level(&self, now: Instant, plan: &[Screen]) -> Level {
        let idle = now.saturating_duration_since(self.last_change);
        let past = |limit: Duration| !limit.is_zero() && idle >= limit;
        // The boot and setup screens are being looked at, and an alert must stay
        // visible: those never go dark, at most dim.
        let may_sleep = matches!(
            plan.first(),
            Some(Screen::Pds | Screen::Network | Screen::System)
        );
        if past(self.settings.sleep_after) && may_sleep {
            Level::Off
        } else if past(self.settings.dim_after) {
            Level::Dim
        } else {
            Level::Bright
        }
    }

    fn update(&mut self, now: Instant, snap: &Snapshot) -> Result<(), PanelError> {
        if self
            .last_seen
            .as_ref()
            .is_none_or(|seen| seen.wake_key() != snap.wake_key())
        {
            self.last_change = now;
            self.last_seen = Some(snap.clone());
        }
        let plan = screens::plan(snap);
        if plan != self.plan {
            self.plan = plan;
            self.page = 0;
            self.page_since = now;
        } else if now.saturating_duration_since(self.page_since) >= self.settings.page_every {
            self.page = (self.page + 1) % self.plan.len().max(1);
            self.page_since = now;
        }
        let level = self.wanted_level(now, &self.plan);
        let panel = self.panel.as_mut().expect("opened above");
        if self.level != Some(level) {
            panel.set_level(level)?;
            self.level = Some(level);
        }
        if level == Level::Off {
            return Ok(());
        }
        let shift_every = self.settings.shift_every.as_secs().max(1);
        let turn = now.saturating_duration_since(self.started).as_secs() / shift_every;
        let (dx, dy) = SHIFTS[(turn % SHIFTS.len() as u64) as usize];
        let frame = screens::render(self.plan[self.page], snap).shifted(dx, dy);
        if self.shown.as_ref() != Some(&frame) {
            panel.show(&frame)?;
            self.shown = Some(frame);
        }
        Ok(())
    }
}

/// How often the display thread looks at the snapshot.
const TICK: Duration = Duration::from_millis(250);

/// Starts the display thread for `spec` (nothing for `none`). It runs until the
/// snapshot channel closes.
pub fn spawn(
    spec: &DisplaySpec,
    settings: DisplaySettings,
    snapshots: watch::Receiver<Snapshot>,
) -> Option<std::thread::JoinHandle<()>> {
    let rotation = settings.rotation;
    let now = Instant::now();
    match spec.clone() {
        DisplaySpec::None => None,
        DisplaySpec::I2c { device, address } => run_thread(
            DisplayRunner::new(move || open_i2c(&device, address, rotation), settings, now),
            snapshots,
        ),
        DisplaySpec::Png { dir } => run_thread(
            DisplayRunner::new(move || Ok(PngDir::new(dir.clone())), settings, now),
            snapshots,
        ),
    }
}

fn run_thread<P, Open>(
    mut runner: DisplayRunner<P, Open>,
    snapshots: watch::Receiver<Snapshot>,
) -> Option<std::thread::JoinHandle<()>>
where
    P: Panel + Send + 'static,
    Open: FnMut() -> Result<P, PanelError> + Send + 'static,
{
    std::thread::Builder::new()
        .name("display".into())
        .spawn(move || loop {
            if snapshots.has_changed().is_err() {
                return;
            }
            let snap = snapshots.borrow().clone();
            runner.step(Instant::now(), &snap);
            std::thread::sleep(TICK);
        })
        .map_err(|e| tracing::warn!("display: cannot start its thread: {e}"))
        .ok()
}
