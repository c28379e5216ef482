//! An emulated SSD1306 128×64 module on an I2C bus, for testing the display path
//! without hardware.
//!
//! It implements `embedded_hal::i2c::I2c`, so atbox's real `Oled` (and under it the
//! real `ssd1306` driver) talks to it exactly as to `/dev/i2c-1`. It decodes the
//! controller's command/data stream as the datasheet describes — control bytes (Co,
//! D/C#), horizontal/vertical/page addressing with column and page windows, segment
//! remap, COM scan direction, start line and display offset, multiplex ratio, COM pin
//! configuration, contrast, invert, entire-display-on, display on/off and the charge
//! pump — into GDDRAM, and [`EmulatedPanel::glass`] returns what the glass would light.
//!
//! The glass is modelled as the common 0.96" modules are wired (SEG0 on the right,
//! COM0 at the bottom, COM pins in the alternative configuration), which is why the
//! driver's default orientation (segment remap on, COM scan reversed) shows RAM column
//! 0 / row 0 at the top left. Settings that would garble the picture on such a module
//! (sequential COM pins, a short multiplex ratio, scrolling) are recorded in
//! [`EmulatedPanel::problems`] for the tests to assert on. Faults (a missing device,
//! NACKs) can be injected.

use atbox::device::frame::{Frame, HEIGHT, WIDTH};
use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Horizontal,
    Vertical,
    Page,
}

/// The controller's state.
pub struct State {
    pub address: u8,
    pub ram: [[u8; 128]; 8],
    pub addressing: Addressing,
    col_window: (u8, u8),
    page_window: (u8, u8),
    col: u8,
    page: u8,
    pub display_on: bool,
    pub charge_pump: bool,
    pub invert: bool,
    pub entire_on: bool,
    pub contrast: u8,
    pub seg_remap: bool,
    pub com_reverse: bool,
    pub start_line: u8,
    pub display_offset: u8,
    pub multiplex: u8,
    pub com_pins: u8,
    /// Command bytes received but not yet complete (commands take arguments).
    pending: Vec<u8>,
    pub problems: Vec<String>,
    /// When set, every transaction fails (device unplugged or dead).
    pub unplugged: bool,
    /// Transactions that will fail before the bus works again.
    pub fail_next: u32,
    pub transactions: u64,
    pub data_bytes: u64,
}

/// A handle to the emulated module; clones share it (the test keeps one, the driver
/// owns another).
#[derive(Clone)]
pub struct EmulatedPanel(pub Rc<RefCell<State>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusError(pub ErrorKind);

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl ErrorType for EmulatedPanel {
    type Error = BusError;
}

impl EmulatedPanel {
    /// A module at `address` as it is at power-on (display off, charge pump off,
    /// page addressing, RAM content undefined — here a pattern, so an unwritten area
    /// shows).
    pub fn new(address: u8) -> EmulatedPanel {
        EmulatedPanel(Rc::new(RefCell::new(State {
            address,
            ram: [[0xA5; 128]; 8],
            addressing: Addressing::Page,
            col_window: (0, 127),
            page_window: (0, 7),
            col: 0,
            page: 0,
            display_on: false,
            charge_pump: false,
            invert: false,
            entire_on: false,
            contrast: 0x7f,
            seg_remap: false,
            com_reverse: false,
            start_line: 0,
            display_offset: 0,
            multiplex: 63,
            com_pins: 0x12,
            pending: Vec::new(),
            problems: Vec::new(),
            unplugged: false,
            fail_next: 0,
            transactions: 0,
            data_bytes: 0,
        })))
    }

    pub fn state(&self) -> std::cell::Ref<'_, State> {
        self.0.borrow()
    }

    pub fn set_unplugged(&self, unplugged: bool) {
        self.0.borrow_mut().unplugged = unplugged;
    }

    pub fn fail_next(&self, n: u32) {
        self.0.borrow_mut().fail_next = n;
    }

    pub fn problems(&self) -> Vec<String> {
        self.0.borrow().problems.clone()
    }

    /// What the glass lights, as seen by someone looking at the module the right way
    /// up.
    pub fn glass(&self) -> Frame {
        self.0.borrow().glass()
    }
}

impl State {
    fn glass(&self) -> Frame {
        let mut f = Frame::default();
        let powered = self.display_on && self.charge_pump;
        for y in 0..HEIGHT {
            // Glass row y is COM(63 - y); the scan direction decides which step of
            // the scan that is, and start line and offset which RAM row it shows.
            let scan = if self.com_reverse { y } else { HEIGHT - 1 - y };
            if scan > u32::from(self.multiplex) {
                continue;
            }
            let row = (scan + u32::from(self.start_line) + u32::from(self.display_offset)) % 64;
            for x in 0..WIDTH {
                let column = if self.seg_remap { x } else { WIDTH - 1 - x };
                let bit = self.ram[(row / 8) as usize][column as usize] >> (row % 8) & 1 == 1;
                let lit = if self.entire_on {
                    true
                } else {
                    bit ^ self.invert
                };
                f.set(x, y, powered && lit);
            }
        }
        f
    }

    fn write_data(&mut self, byte: u8) {
        self.data_bytes += 1;
        self.ram[self.page as usize][self.col as usize] = byte;
        let (c0, c1) = self.col_window;
        let (p0, p1) = self.page_window;
        match self.addressing {
            Addressing::Horizontal => {
                if self.col >= c1 {
                    self.col = c0;
                    self.page = if self.page >= p1 { p0 } else { self.page + 1 };
                } else {
                    self.col += 1;
                }
            }
            Addressing::Vertical => {
                if self.page >= p1 {
                    self.page = p0;
                    self.col = if self.col >= c1 { c0 } else { self.col + 1 };
                } else {
                    self.page += 1;
                }
            }
            // Page mode: the column wraps within the page.
            Addressing::Page => self.col = if self.col >= 127 { 0 } else { self.col + 1 },
        }
    }

    /// Arguments each command takes after its first byte.
    fn arg_count(first: u8) -> usize {
        match first {
            0x81 | 0x8D | 0x20 | 0xA8 | 0xD3 | 0xD5 | 0xD9 | 0xDA | 0xDB => 1,
            0x21 | 0x22 | 0xA3 => 2,
            0x29 | 0x2A => 5,
            0x26 | 0x27 => 6,
            _ => 0,
        }
    }

    fn command_byte(&mut self, byte: u8) {
        self.pending.push(byte);
        if self.pending.len() <= State::arg_count(self.pending[0]) {
            return;
        }
        let cmd = std::mem::take(&mut self.pending);
        let arg = |i: usize| cmd[i];
        match cmd[0] {
            0xAE => self.display_on = false,
            0xAF => self.display_on = true,
            0x81 => self.contrast = arg(1),
            0x8D => self.charge_pump = arg(1) & 0x04 != 0,
            0xA4 => self.entire_on = false,
            0xA5 => self.entire_on = true,
            0xA6 => self.invert = false,
            0xA7 => self.invert = true,
            0xA0 => self.seg_remap = false,
            0xA1 => self.seg_remap = true,
            0xC0 => self.com_reverse = false,
            0xC8 => self.com_reverse = true,
            0x20 => {
                self.addressing = match arg(1) & 0x3 {
                    0 => Addressing::Horizontal,
                    1 => Addressing::Vertical,
                    2 => Addressing::Page,
                    _ => {
                        self.problems.push("invalid addressing mode 3".into());
                        self.addressing
                    }
                }
            }
            0x21 => {
                self.col_window = (arg(1) & 0x7f, arg(2) & 0x7f);
                self.col = self.col_window.0;
            }
            0x22 => {
                self.page_window = (arg(1) & 0x7, arg(2) & 0x7);
                self.page = self.page_window.0;
            }
            0xB0..=0xB7 => self.page = cmd[0] & 0x7,
            0x00..=0x0F => self.col = (self.col & 0xF0) | (cmd[0] & 0x0F),
            0x10..=0x1F => self.col = ((cmd[0] & 0x07) << 4) | (self.col & 0x0F),
            0x40..=0x7F => self.start_line = cmd[0] & 0x3F,
            0xA8 => {
                self.multiplex = arg(1) & 0x3F;
                if self.multiplex != 63 {
                    self.problems.push(format!(
                        "multiplex ratio {} hides rows of a 64-row panel",
                        self.multiplex + 1
                    ));
                }
            }
            0xD3 => self.display_offset = arg(1) & 0x3F,
            0xDA => {
                self.com_pins = arg(1);
                if arg(1) & 0x30 != 0x10 {
                    self.problems.push(format!(
                        "COM pins {:#04x}: a 128x64 module needs the alternative configuration (0x12), rows would interleave",
                        arg(1)
                    ));
                }
            }
            0x2F => self.problems.push("scrolling activated".into()),
            0xD5 | 0xD9 | 0xDB | 0x2E | 0xE3 | 0x26 | 0x27 | 0x29 | 0x2A | 0xA3 => {}
            other => self.problems.push(format!("unknown command {other:#04x}")),
        }
    }

    /// One I2C write: control byte(s), then commands or data.
    fn write(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let control = bytes[i];
            let continuation = control & 0x80 != 0;
            let data = control & 0x40 != 0;
            if control & 0x3F != 0 {
                self.problems
                    .push(format!("control byte {control:#04x} has reserved bits set"));
            }
            i += 1;
            let end = if continuation {
                (i + 1).min(bytes.len())
            } else {
                bytes.len()
            };
            for &b in &bytes[i..end] {
                if data {
                    self.write_data(b);
                } else {
                    self.command_byte(b);
                }
            }
            i = end;
        }
    }
}

impl I2c for EmulatedPanel {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        let mut s = self.0.borrow_mut();
        s.transactions += 1;
        if s.unplugged || address != s.address {
            return Err(BusError(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address,
            )));
        }
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Err(BusError(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Data,
            )));
        }
        for op in operations {
            match op {
                Operation::Write(bytes) => s.write(bytes),
                // The I2C modules are write-only.
                Operation::Read(_) => return Err(BusError(ErrorKind::Bus)),
            }
        }
        Ok(())
    }
}
