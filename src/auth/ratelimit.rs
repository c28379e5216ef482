//! Rate limits, as the reference PDS sets them: GCRA buckets from the `governor` crate,
//! keyed by client address, account or identifier.
//!
//! Memory is bounded whatever the keys: a key is hashed to 64 bits with a per-process
//! random key before it is stored (a 2 MiB identifier costs 8 bytes, and nobody can aim
//! collisions), idle buckets are dropped by [`Limits::sweep`], and a map past
//! [`MAX_KEYS`] is swept at once.

use crate::error::XrpcError;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Buckets kept before an immediate sweep of idle ones.
pub const MAX_KEYS: usize = 100_000;

/// One limit: `points` requests per `period`, per key.
pub struct Limit {
    points: u32,
    period: Duration,
    buckets: DefaultKeyedRateLimiter<u64>,
    hasher: std::collections::hash_map::RandomState,
}

impl Limit {
    pub fn new(points: u32, period: Duration) -> Limit {
        let burst = NonZeroU32::new(points.max(1)).expect("at least one");
        let quota = Quota::with_period(period / burst.get())
            .expect("a period longer than zero")
            .allow_burst(burst);
        Limit {
            points: burst.get(),
            period,
            buckets: DefaultKeyedRateLimiter::keyed(quota),
            hasher: Default::default(),
        }
    }

    fn key(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Counts a request for `key`; the 429 to answer if it is over the limit.
    pub fn check(&self, key: &str) -> Result<(), XrpcError> {
        self.wait(key).map_err(|wait| self.exceeded(wait))
    }

    /// Counts a request for `key`; how long until the next is allowed if it is over.
    fn wait(&self, key: &str) -> Result<(), Duration> {
        if self.buckets.len() >= MAX_KEYS {
            self.sweep();
        }
        self.buckets
            .check_key(&self.key(key))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The 429 of this limit, with the reference's `RateLimit-*` headers.
    fn exceeded(&self, wait: Duration) -> XrpcError {
        let reset = crate::storage::unix_now() + wait.as_secs().max(1) as i64;
        XrpcError::rate_limited("Rate Limit Exceeded").with_headers(vec![
            ("ratelimit-limit", self.points.to_string()),
            ("ratelimit-remaining", "0".to_owned()),
            ("ratelimit-reset", reset.to_string()),
            (
                "ratelimit-policy",
                format!("{};w={}", self.points, self.period.as_secs()),
            ),
            ("retry-after", wait.as_secs().max(1).to_string()),
        ])
    }

    /// Drops buckets that are back to full.
    pub fn sweep(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }

    /// Buckets held (for tests and `atbox status`).
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A limit on failures across every client, that shuts the door for everyone once it
/// is spent (the admin password, the pairing code): guessing then stays below a fixed
/// number of tries per day however many addresses an attacker has. Checked before a
/// secret is compared, counted only when the guess was wrong.
pub struct FailureBudget {
    limit: Limit,
    /// Until when (unix seconds) every attempt is refused.
    closed_until: AtomicI64,
}

impl FailureBudget {
    /// At most `points` wrong guesses in a row reach a comparison, then about
    /// `points - 1` per `period` (the failure that spends the budget closes the door).
    pub fn new(points: u32, period: Duration) -> FailureBudget {
        FailureBudget {
            limit: Limit::new(points.saturating_sub(1).max(1), period),
            closed_until: AtomicI64::new(0),
        }
    }

    /// Refuses an attempt while the budget is spent.
    pub fn check_open(&self) -> Result<(), XrpcError> {
        let wait = self.closed_until.load(Ordering::Relaxed) - crate::storage::unix_now();
        if wait > 0 {
            return Err(self.limit.exceeded(Duration::from_secs(wait as u64)));
        }
        Ok(())
    }

    /// Counts a wrong guess; once the budget is spent, closes the door until it refills.
    pub fn failed(&self) {
        if let Err(wait) = self.limit.wait("all") {
            let wait = wait.as_secs().max(1) as i64;
            self.closed_until
                .store(crate::storage::unix_now() + wait, Ordering::Relaxed);
        }
    }
}

/// The limits atbox enforces, with the reference PDS's numbers where it has them.
pub struct Limits {
    /// Every XRPC request, per client address (reference: 3,000 per 5 minutes).
    pub global: Limit,
    /// createSession, per identifier and address: 30 per 5 minutes and 300 per day.
    pub login_short: Limit,
    pub login_day: Limit,
    /// createAccount per address (reference: 100 per 5 minutes).
    pub create_account: Limit,
    /// Methods that take a password or a token in their body (deleteAccount,
    /// resetPassword), per address (reference: 50 per 5 minutes).
    pub secret: Limit,
    /// requestPasswordReset per address (reference: 15 per hour).
    pub reset_request: Limit,
    /// Admin basic auth, per address; and wrong admin passwords from anyone.
    pub admin: Limit,
    pub admin_failures: FailureBudget,
    /// The setup page's outbound checks (`/setup/doctor`), per address.
    pub doctor: Limit,
}

impl Default for Limits {
    fn default() -> Limits {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Limits {
            global: Limit::new(3000, minutes(5)),
            login_short: Limit::new(30, minutes(5)),
            login_day: Limit::new(300, minutes(24 * 60)),
            create_account: Limit::new(100, minutes(5)),
            secret: Limit::new(50, minutes(5)),
            reset_request: Limit::new(15, minutes(60)),
            admin: Limit::new(100, minutes(5)),
            admin_failures: FailureBudget::new(100, minutes(24 * 60)),
            doctor: Limit::new(10, minutes(5)),
        }
    }
}

/// The per-address limit a method declares in the XRPC method table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLimit {
    CreateAccount,
    /// Methods that take a password or a code in their body.
    Secret,
    ResetRequest,
}

impl Limits {
    pub fn for_method(&self, which: MethodLimit) -> &Limit {
        match which {
            MethodLimit::CreateAccount => &self.create_account,
            MethodLimit::Secret => &self.secret,
            MethodLimit::ResetRequest => &self.reset_request,
        }
    }

    /// Drops idle buckets everywhere (run every few minutes).
    pub fn sweep(&self) {
        for limit in [
            &self.global,
            &self.login_short,
            &self.login_day,
            &self.create_account,
            &self.secret,
            &self.reset_request,
            &self.admin,
            &self.doctor,
        ] {
            limit.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_with_the_reference_headers() {
        let l = Limit::new(3, Duration::from_secs(60));
        assert!((0..3).all(|_| l.check("a").is_ok()));
        let refused = l.check("a").unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.error, "RateLimitExceeded");
        let names: Vec<&str> = refused.headers.iter().map(|(n, _)| *n).collect();
        assert!(names.contains(&"ratelimit-policy"), "{names:?}");
        assert!(l.check("b").is_ok());
    }

    /// Security review H4: keys are hashed, so a 2 MiB identifier costs a bucket of
    /// fixed size, and the map never holds more than MAX_KEYS buckets for long.
    #[test]
    fn h4_limiter_memory_is_bounded_whatever_the_keys() {
        let l = Limit::new(30, Duration::from_secs(300));
        let huge = "a".repeat(2 * 1024 * 1024);
        for i in 0..300 {
            let _ = l.check(&format!("{huge}-{i}"));
        }
        assert_eq!(l.len(), 300, "one 8-byte key per identifier, not its text");
    }

    #[test]
    fn a_spent_failure_budget_closes_the_door_for_everyone() {
        let b = FailureBudget::new(3, Duration::from_secs(3600));
        assert!(b.check_open().is_ok());
        b.failed();
        b.failed();
        assert!(b.check_open().is_ok());
        b.failed();
        assert_eq!(b.check_open().unwrap_err().status.as_u16(), 429);
    }
}
