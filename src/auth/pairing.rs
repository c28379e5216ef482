//! The pairing code: proof of physical presence for claiming an unclaimed box.
//!
//! While no account exists, the OLED shows a short random code; the LAN setup page
//! asks for it before it lets anyone create the first account, so a stranger on the
//! same network (or a web page in a visitor's browser) cannot claim the box. The code
//! lives only in memory, is compared in constant time, and is replaced after a few
//! wrong guesses, which bounds an attacker to [`MAX_FAILURES`] tries per code shown.

use rand::Rng;
use std::sync::Mutex;

/// Wrong attempts before the code changes.
pub const MAX_FAILURES: u32 = 5;
/// Digits only: easy to read off a small screen and to type on a phone.
const DIGITS: usize = 6;

pub struct PairingCode {
    inner: Mutex<State>,
}

struct State {
    code: String,
    failures: u32,
}

fn fresh() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..DIGITS)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

impl Default for PairingCode {
    fn default() -> Self {
        PairingCode {
            inner: Mutex::new(State {
                code: fresh(),
                failures: 0,
            }),
        }
    }
}

impl PairingCode {
    /// The code to show on the screen.
    pub fn current(&self) -> String {
        self.inner.lock().expect("pairing lock").code.clone()
    }

    /// Checks a guess. A right guess replaces the code (it is single-use); the
    /// [`MAX_FAILURES`]th wrong one does too.
    pub fn verify(&self, guess: &str) -> bool {
        let mut state = self.inner.lock().expect("pairing lock");
        let guess: String = guess.chars().filter(|c| !c.is_whitespace()).collect();
        let ok = guess.len() == state.code.len()
            && guess
                .bytes()
                .zip(state.code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if ok {
            state.code = fresh();
            state.failures = 0;
        } else {
            state.failures += 1;
            if state.failures >= MAX_FAILURES {
                state.code = fresh();
                state.failures = 0;
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_code_once_wrong_codes_rotate() {
        let p = PairingCode::default();
        let code = p.current();
        assert_eq!(code.len(), DIGITS);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(p.verify(&spaced), "spaces as shown on screen are fine");
        assert!(!p.verify(&code), "single use");
        let second = p.current();
        for _ in 0..MAX_FAILURES {
            assert!(!p.verify("not it"));
        }
        assert_ne!(p.current(), second, "rotated after {MAX_FAILURES} failures");
    }
}
