//! Facts about the machine, read from the kernel (`/sys`, `statvfs`, `adjtimex`,
//! `getifaddrs`) rather than from tools like `vcgencmd`, which the image does not ship.
//!
//! Every reading is optional: off a Raspberry Pi (or in a container) a file may be
//! missing, and the screen then simply leaves that fact out.

use super::snapshot::PowerFlags;
use std::net::IpAddr;
use std::path::Path;

/// `(free, total)` bytes of the filesystem holding `path`.
#[allow(clippy::unnecessary_cast)] // statvfs field widths differ between targets
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: statvfs fills the struct we own from a valid C string.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: initialised by the successful call above.
    let st = unsafe { st.assume_init() };
    Some((
        st.f_bavail as u64 * st.f_frsize as u64,
        st.f_blocks as u64 * st.f_frsize as u64,
    ))
}

/// The SoC temperature in °C (first thermal zone, which is the CPU on a Pi).
pub fn cpu_temperature() -> Option<f32> {
    let milli: f32 = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(milli / 1000.0)
}

/// Under-voltage and throttling. Raspberry Pi kernels expose the firmware's flags as
/// `get_throttled` (bit 0 under-voltage now, bit 2 throttled now); Debian's kernel has
/// the `rpi_volt` hwmon device with an under-voltage alarm instead.
pub fn power_flags() -> PowerFlags {
    let mut flags = PowerFlags::default();
    if let Some(bits) =
        std::fs::read_to_string("/sys/devices/platform/soc/soc:firmware/get_throttled")
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
    {
        flags.under_voltage = bits & 0x1 != 0;
        flags.throttled = bits & 0x4 != 0;
    }
    if let Ok(entries) = std::fs::read_dir("/sys/class/hwmon") {
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = std::fs::read_to_string(dir.join("name")).unwrap_or_default();
            if name.trim() == "rpi_volt" {
                let alarm =
                    std::fs::read_to_string(dir.join("in0_lcrit_alarm")).unwrap_or_default();
                flags.under_voltage |= alarm.trim() == "1";
            }
        }
    }
    flags
}

/// Whether the kernel's clock is synchronised (NTP discipline, as set by
/// systemd-timesyncd); `None` if the kernel will not say.
pub fn clock_synced() -> Option<bool> {
    // SAFETY: a zeroed timex with modes = 0 only reads the kernel's state.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    match state {
        -1 => None,
        libc::TIME_ERROR => Some(false),
        _ => Some(true),
    }
}

/// The machine's non-loopback addresses, IPv4 first, link-local IPv6 left out (useless
/// to type into a browser).
pub fn lan_addresses() -> Vec<IpAddr> {
    let mut addrs: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.is_loopback())
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    addrs.sort_by_key(|a| (a.is_ipv6(), *a));
    addrs.dedup();
    addrs
}

/// Bytes this process has caused to be written to storage so far.
pub fn write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("write_bytes:")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_do_not_fail_off_a_pi() {
        // Whatever this machine has, the readers answer without panicking.
        let _ = super::cpu_temperature();
        let _ = super::power_flags();
        let _ = super::clock_synced();
        let addrs = super::lan_addresses();
        assert!(addrs.iter().all(|a| !a.is_loopback()));
        assert!(super::disk_space(std::path::Path::new("/")).is_some());
    }
}
