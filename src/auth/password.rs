//! Password hashing with Argon2id, sized for a Raspberry Pi: 19 MiB and two passes
//! (OWASP's recommended minimum) take roughly 100 ms on a Pi 4 — slow enough to make
//! guessing expensive, fast enough that logging in does not stall the box.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=...`).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("hashing into memory")
        .to_string()
}

/// Checks a password against a stored PHC string (parameters are read from it).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
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
}
