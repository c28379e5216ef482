//! Password hashing with Argon2id, sized for a Raspberry Pi: 19 MiB and two passes
//! (OWASP's recommended minimum) take roughly 100 ms on a Pi 4 — slow enough to make
//! guessing expensive, fast enough that logging in does not stall the box.
//!
//! The 19 MiB are the box's largest single allocation, so at most [`AT_ONCE`] hashes
//! run at a time (the rest wait their turn): eight sign-ins at once would otherwise
//! take 152 MiB of a 512 MB Pi, for no more throughput than its cores give.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Condvar, Mutex};

/// How many hashes may run at once.
pub const AT_ONCE: usize = 2;

/// Hashes running now, and the turnstile the others wait at.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// Runs `f` (one hash) when fewer than [`AT_ONCE`] are running.
fn in_turn<T>(f: impl FnOnce() -> T) -> T {
    struct Turn;
    impl Drop for Turn {
        fn drop(&mut self) {
            let (count, freed) = &RUNNING;
            *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            freed.notify_one();
        }
    }
    let (count, freed) = &RUNNING;
    let mut running = count.lock().unwrap_or_else(|p| p.into_inner());
    while *running >= AT_ONCE {
        running = freed.wait(running).unwrap_or_else(|p| p.into_inner());
    }
    *running += 1;
    drop(running);
    let _turn = Turn;
    f()
}

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=...`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    in_turn(|| {
        hasher()
            .hash_password(password.as_bytes(), &salt)
            .expect("hashing into memory")
            .to_string()
    })
}

/// Checks a password against a stored PHC string (parameters are read from it).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => in_turn(|| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        }),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_and_differ() {
        let a = super::hash("hunter2");
        let b = super::hash("hunter2");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(super::verify("hunter2", &a));
        assert!(!super::verify("hunter3", &a));
        assert!(!super::verify("hunter2", "garbage"));
    }

    /// Six hashes asked for at once run at most `AT_ONCE` at a time, and all finish.
    #[test]
    fn no_more_than_two_hashes_run_at_once() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let most = AtomicUsize::new(0);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let now = *super::RUNNING.0.lock().unwrap();
                    most.fetch_max(now, Ordering::Relaxed);
                }
            });
            let hashers: Vec<_> = (0..6)
                .map(|i| s.spawn(move || super::hash(&format!("password {i}"))))
                .collect();
            for (i, h) in hashers.into_iter().enumerate() {
                assert!(super::verify(&format!("password {i}"), &h.join().unwrap()));
            }
            done.store(true, Ordering::Relaxed);
        });
        let most = most.into_inner();
        assert!((1..=super::AT_ONCE).contains(&most), "{most} ran at once");
    }
}
