//! Where frames go: the SSD1306 OLED over I2C, or a directory of PNGs.
//!
//! [`Oled`] is generic over `embedded_hal::i2c::I2c`: on the Pi it runs over
//! `linux-embedded-hal`'s `I2cdev`, in the tests over an emulated panel — the same
//! code either way. The driver is the `ssd1306` crate in buffered-graphics mode; a
//! frame is copied into its buffer and flushed (the driver sends only the changed
//! window). Rotation 180 uses the controller's segment remap and COM scan direction,
//! for enclosures that mount the module upside down.

use super::frame::{Frame, HEIGHT, WIDTH};
use ssd1306::mode::BufferedGraphicsMode;
use ssd1306::prelude::*;
use ssd1306::size::DisplaySize128x64;
use ssd1306::{I2CDisplayInterface, Ssd1306};
use std::path::PathBuf;

/// How bright the glass is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Bright,
    Dim,
    Off,
}

/// A display failure (no device, NACK, bus error), as one line for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PanelError(pub String);

/// Something that shows frames.
pub trait Panel {
    /// Brings the panel up (called once after opening, and after every failure).
    fn init(&mut self) -> Result<(), PanelError>;
    fn show(&mut self, frame: &Frame) -> Result<(), PanelError>;
    fn set_level(&mut self, level: Level) -> Result<(), PanelError>;
}

/// Mounting orientation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rotation {
    #[default]
    Normal,
    UpsideDown,
}

impl Rotation {
    /// From the config value, in degrees.
    pub fn from_degrees(degrees: u32) -> Option<Rotation> {
        match degrees {
            0 => Some(Rotation::Normal),
            180 => Some(Rotation::UpsideDown),
            _ => None,
        }
    }
}

/// The configured display: `none`, `i2c:/dev/i2c-1@0x3c`, or `png:/some/dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplaySpec {
    None,
    I2c { device: PathBuf, address: u8 },
    Png { dir: PathBuf },
}

/// The SSD1306's usual I2C address (0x3D on modules with the address jumper moved).
pub const DEFAULT_ADDRESS: u8 = 0x3c;

impl DisplaySpec {
    pub fn parse(s: &str) -> Result<DisplaySpec, String> {
        let s = s.trim();
        if s == "none" || s.is_empty() {
            return Ok(DisplaySpec::None);
        }
        if let Some(dir) = s.strip_prefix("png:") {
            if dir.is_empty() {
                return Err("png: needs a directory, e.g. png:/tmp/atbox-screen".into());
            }
            return Ok(DisplaySpec::Png { dir: dir.into() });
        }
        if let Some(rest) = s.strip_prefix("i2c:") {
            let (device, address) = match rest.rsplit_once('@') {
                Some((dev, addr)) => {
                    let parsed = match addr.strip_prefix("0x").or(addr.strip_prefix("0X")) {
                        Some(hex) => u8::from_str_radix(hex, 16),
                        None => addr.parse(),
                    };
                    let address = parsed.ok().filter(|a| *a < 0x80).ok_or_else(|| {
                        format!("{addr:?} is not a 7-bit I2C address such as 0x3c")
                    })?;
                    (dev, address)
                }
                None => (rest, DEFAULT_ADDRESS),
            };
            if !device.starts_with('/') {
                return Err(format!(
                    "{device:?} is not a device path such as /dev/i2c-1"
                ));
            }
            return Ok(DisplaySpec::I2c {
                device: device.into(),
                address,
            });
        }
        Err(format!(
            "{s:?} is not a display: use \"none\", \"i2c:/dev/i2c-1@0x3c\" or \"png:/some/dir\""
        ))
    }
}

type Driver<I2C> = Ssd1306<
    ssd1306::prelude::I2CInterface<I2C>,
    DisplaySize128x64,
    BufferedGraphicsMode<DisplaySize128x64>,
>;

/// An SSD1306 128×64 module on an I2C bus.
pub struct Oled<I2C> {
    driver: Driver<I2C>,
    /// What the panel's RAM holds, once known: only pixels that differ are set, so
    /// the driver's dirty window (and the I2C traffic) stays small.
    on_glass: Option<Frame>,
}

fn bus<E: std::fmt::Debug>(e: E) -> PanelError {
    PanelError(format!("display bus error: {e:?}"))
}

impl<I2C: embedded_hal::i2c::I2c> Oled<I2C> {
    pub fn new(i2c: I2C, address: u8, rotation: Rotation) -> Oled<I2C> {
        let rotation = match rotation {
            Rotation::Normal => DisplayRotation::Rotate0,
            Rotation::UpsideDown => DisplayRotation::Rotate180,
        };
        let interface = I2CDisplayInterface::new_custom_address(i2c, address);
        Oled {
            driver: Ssd1306::new(interface, DisplaySize128x64, rotation)
                .into_buffered_graphics_mode(),
            on_glass: None,
        }
    }

    /// Gives the bus back (tests inspect the emulated panel through it).
    pub fn release(self) -> I2C {
        self.driver.release().release()
    }
}

impl<I2C: embedded_hal::i2c::I2c> Panel for Oled<I2C> {
    fn init(&mut self) -> Result<(), PanelError> {
        self.on_glass = None;
        self.driver.init().map_err(bus)
    }

    fn show(&mut self, frame: &Frame) -> Result<(), PanelError> {
        let previous = self.on_glass.take();
        for y in 0..HEIGHT {
            for x in 0..WIDTH {
                let on = frame.get(x, y);
                if previous.as_ref().is_none_or(|p| p.get(x, y) != on) {
                    self.driver.set_pixel(x, y, on);
                }
            }
        }
        self.driver.flush().map_err(bus)?;
        self.on_glass = Some(frame.clone());
        Ok(())
    }

    fn set_level(&mut self, level: Level) -> Result<(), PanelError> {
        match level {
            Level::Off => self.driver.set_display_on(false).map_err(bus),
            Level::Dim | Level::Bright => {
                let brightness = if level == Level::Dim {
                    Brightness::DIMMEST
                } else {
                    Brightness::BRIGHTEST
                };
                self.driver.set_brightness(brightness).map_err(bus)?;
                self.driver.set_display_on(true).map_err(bus)
            }
        }
    }
}

/// Opens the OLED on a Linux I2C device (`/dev/i2c-1` on a Pi with `i2c_arm` on).
pub fn open_i2c(
    device: &std::path::Path,
    address: u8,
    rotation: Rotation,
) -> Result<Oled<linux_embedded_hal::I2cdev>, PanelError> {
    let dev = linux_embedded_hal::I2cdev::new(device)
        .map_err(|e| PanelError(format!("cannot open {}: {e}", device.display())))?;
    Ok(Oled::new(dev, address, rotation))
}

/// Frames written as PNG files (development and docs): `frame-NNN.png` numbered
/// round a ring of [`PNG_RING`] files, and `current.png` replaced atomically.
pub struct PngDir {
    dir: PathBuf,
    count: u64,
    last: Frame,
    level: Level,
}

pub const PNG_RING: u64 = 1000;

impl PngDir {
    pub fn new(dir: PathBuf) -> PngDir {
        PngDir {
            dir,
            count: 0,
            last: Frame::default(),
            level: Level::Bright,
        }
    }

    fn write(&mut self) -> Result<(), PanelError> {
        let frame = if self.level == Level::Off {
            Frame::default()
        } else {
            self.last.clone()
        };
        let png = frame.to_png(1);
        let io =
            |e: std::io::Error| PanelError(format!("cannot write {}: {e}", self.dir.display()));
        std::fs::write(
            self.dir
                .join(format!("frame-{:03}.png", self.count % PNG_RING)),
            &png,
        )
        .map_err(io)?;
        let tmp = self.dir.join(".current.png");
        std::fs::write(&tmp, &png).map_err(io)?;
        std::fs::rename(&tmp, self.dir.join("current.png")).map_err(io)?;
        self.count += 1;
        Ok(())
    }
}

impl Panel for PngDir {
    fn init(&mut self) -> Result<(), PanelError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PanelError(format!("cannot create {}: {e}", self.dir.display())))
    }

    fn show(&mut self, frame: &Frame) -> Result<(), PanelError> {
        self.last = frame.clone();
        self.write()
    }

    fn set_level(&mut self, level: Level) -> Result<(), PanelError> {
        let was_off = self.level == Level::Off;
        self.level = level;
        if was_off != (level == Level::Off) {
            self.write()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_specs_parse() {
        assert_eq!(DisplaySpec::parse("none").unwrap(), DisplaySpec::None);
        assert_eq!(
            DisplaySpec::parse("i2c:/dev/i2c-1@0x3c").unwrap(),
            DisplaySpec::I2c {
                device: "/dev/i2c-1".into(),
                address: 0x3c
            }
        );
        assert_eq!(
            DisplaySpec::parse("i2c:/dev/i2c-3@61").unwrap(),
            DisplaySpec::I2c {
                device: "/dev/i2c-3".into(),
                address: 61
            }
        );
        assert_eq!(
            DisplaySpec::parse("i2c:/dev/i2c-1").unwrap(),
            DisplaySpec::I2c {
                device: "/dev/i2c-1".into(),
                address: DEFAULT_ADDRESS
            }
        );
        assert!(DisplaySpec::parse("png:/tmp/x").is_ok());
        for bad in [
            "png:",
            "i2c:/dev/i2c-1@0x99",
            "i2c:dev@0x3c",
            "hdmi",
            "i2c:/dev/x@zz",
        ] {
            assert!(DisplaySpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_missing_i2c_device_is_an_error_not_a_panic() {
        let e = open_i2c(
            std::path::Path::new("/dev/no-such-i2c"),
            0x3c,
            Rotation::Normal,
        );
        assert!(e.err().unwrap().0.contains("/dev/no-such-i2c"));
    }
}
