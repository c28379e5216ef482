//! The pairing code: proof of physical presence for claiming an unclaimed box.
//!
//! While no account exists, the OLED shows a short random code; the LAN setup page
//! asks for it before it lets anyone create the first account, so a stranger on the
//! same network (or a web page in a visitor's browser) cannot claim the box. The code
//! lives only in memory, is compared in constant time, and is replaced only when used:
//! wrong guesses do not change it (so strangers cannot keep it changing under the
//! owner); what bounds guessing is a budget of wrong codes shared by every client
//! (`AppState::pairing_failures`), as well as one per address.

use rand::Rng;
use std::sync::Mutex;

/// Digits only: easy to read off a small screen and to type on a phone.
const DIGITS: usize = 6;

pub struct PairingCode {
    inner: Mutex<State>,
}

struct State {
    code: String,
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
            inner: Mutex::new(State { code: fresh() }),
        }
    }
}

impl PairingCode {
    /// The code to show on the screen.
    pub fn current(&self) -> String {
        self.lock().code.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks a guess. A right guess replaces the code (it is single-use).
    pub fn verify(&self, guess: &str) -> bool {
        let mut state = self.lock();
        let guess: String = guess.chars().filter(|c| !c.is_whitespace()).collect();
        let ok = guess.len() == state.code.len()
            && guess
                .bytes()
                .zip(state.code.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if ok {
            state.code = fresh();
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_code_once_wrong_codes_change_nothing() {
        let p = PairingCode::default();
        let code = p.current();
        assert_eq!(code.len(), DIGITS);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert!(p.verify(&spaced), "spaces as shown on screen are fine");
        assert!(!p.verify(&code), "single use");
        let second = p.current();
        for _ in 0..50 {
            assert!(!p.verify("not it"));
        }
        assert_eq!(
            p.current(),
            second,
            "strangers' guesses never change the code"
        );
    }
}
