//! The appliance's face: the OLED status display and mDNS discovery.
//!
//! The PDS publishes a [`Snapshot`] of its state (built by `crate::pds::status`) on a
//! watch channel; the display thread ([`runner`]) turns snapshots into [`screens`],
//! draws them into a [`Frame`] and hands that to a [`panel`] (the SSD1306 over I2C, or
//! PNG files). Nothing here touches storage, and a display that fails never affects
//! the PDS. [`mdns`] advertises `atbox.local` and the PDS service on the LAN;
//! [`sysinfo`] reads the machine facts (temperature, power, clock, addresses, disk).
//!
//! Hardware sits behind `embedded_hal::i2c::I2c`, so the tests run the real driver
//! against an emulated panel (`tests/it/display.rs`).

pub mod frame;
pub mod mdns;
pub mod panel;
pub mod runner;
pub mod screens;
pub mod snapshot;
pub mod sysinfo;

pub use frame::Frame;
pub use snapshot::Snapshot;
