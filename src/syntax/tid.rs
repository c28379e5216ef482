//! TIDs (timestamp identifiers, `specs/tid`) and a monotonic generator.
//!
//! A TID is a 64-bit integer — top bit zero, 53 bits of microseconds since the Unix
//! epoch, 10 bits of clock identifier — written as 13 characters of base32-sortable
//! (`234567abcdefghijklmnopqrstuvwxyz`), so string order is time order. atbox uses TIDs
//! for record keys and for commit `rev`s, which must strictly increase per repo.

use super::{string_newtype, SyntaxError};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A validated TID string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tid(String);
string_newtype!(Tid, validate_tid);

fn validate_tid(s: &str) -> Result<(), SyntaxError> {
    let err = |reason| Err(SyntaxError::new("TID", s, reason));
    if s.len() != 13 {
        return err("must be exactly 13 characters");
    }
    if !s.bytes().all(|b| ALPHABET.contains(&b)) {
        return err("must use the base32-sortable alphabet 234567a-z");
    }
    // The first character carries the top bit, which must be zero.
    if !b"234567abcdefghij".contains(&s.as_bytes()[0]) {
        return err("the high bit must be zero (first character 2-7 or a-j)");
    }
    Ok(())
}

impl Tid {
    /// Builds a TID from microseconds since the epoch and a 10-bit clock id.
    pub fn from_parts(micros: u64, clock_id: u16) -> Tid {
        let value = ((micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
        let mut out = [0u8; 13];
        for (i, slot) in out.iter_mut().enumerate() {
            let shift = 5 * (12 - i);
            *slot = ALPHABET[((value >> shift) & 31) as usize];
        }
        Tid(String::from_utf8(out.to_vec()).expect("alphabet is ASCII"))
    }

    /// The 64-bit integer this TID encodes.
    pub fn to_u64(&self) -> u64 {
        self.0.bytes().fold(0u64, |acc, b| {
            let digit = ALPHABET.iter().position(|&a| a == b).expect("validated") as u64;
            (acc << 5) | digit
        })
    }

    /// Microseconds since the Unix epoch.
    pub fn timestamp_micros(&self) -> u64 {
        self.to_u64() >> 10
    }
}

/// Hands out strictly increasing TIDs, even when the wall clock stalls or steps back.
///
/// One generator serves a whole process; the clock id is random per process so two
/// atbox processes (a server and an admin CLI) do not collide within a microsecond.
pub struct TidGenerator {
    clock_id: u16,
    last_micros: Mutex<u64>,
}

impl TidGenerator {
    pub fn new() -> Self {
        TidGenerator {
            clock_id: rand::random::<u16>() & 0x3ff,
            last_micros: Mutex::new(0),
        }
    }

    pub fn with_clock_id(clock_id: u16) -> Self {
        TidGenerator {
            clock_id: clock_id & 0x3ff,
            last_micros: Mutex::new(0),
        }
    }

    /// The next TID, strictly greater than every earlier one from this generator.
    pub fn next_tid(&self) -> Tid {
        self.next_after(None)
    }

    /// The next TID, also strictly greater than `floor` (e.g. a repo's current rev, which
    /// may have been written by an earlier process or on a machine whose clock ran ahead).
    pub fn next_after(&self, floor: Option<&Tid>) -> Tid {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut last = self.last_micros.lock().unwrap_or_else(|p| p.into_inner());
        let mut micros = now.max(*last + 1);
        if let Some(floor) = floor {
            micros = micros.max(floor.timestamp_micros() + 1);
        }
        *last = micros;
        Tid::from_parts(micros, self.clock_id)
    }
}

impl Default for TidGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_parts_and_sorts_by_time() {
        let a = Tid::from_parts(1_700_000_000_000_000, 7);
        let b = Tid::from_parts(1_700_000_000_000_001, 0);
        assert!(Tid::new(a.as_str()).is_ok());
        assert_eq!(a.timestamp_micros(), 1_700_000_000_000_000);
        assert_eq!(a.to_u64() & 0x3ff, 7);
        assert!(a < b);
    }

    #[test]
    fn generator_is_strictly_monotonic_and_respects_floor() {
        let g = TidGenerator::with_clock_id(1);
        let mut prev = g.next_tid();
        for _ in 0..10_000 {
            let next = g.next_tid();
            assert!(next > prev, "{next} must follow {prev}");
            prev = next;
        }
        let future = Tid::from_parts(prev.timestamp_micros() + 60_000_000, 3);
        assert!(g.next_after(Some(&future)) > future);
    }
}
