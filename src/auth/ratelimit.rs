//! A small in-memory sliding-window limiter, for login attempts per client address and
//! per account identifier. Memory stays bounded: idle keys are dropped on each check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Allows at most `limit` events per key within `window`.
pub struct RateLimiter {
    limit: usize,
    window: Duration,
    events: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: usize, window: Duration) -> Self {
        RateLimiter {
            limit,
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt for `key`; `false` if it is over the limit.
    pub fn allow(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() > 10_000 {
            events.retain(|_, v| {
                v.last()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let list = events.entry(key.to_owned()).or_default();
        list.retain(|t| now.duration_since(*t) < self.window);
        if list.len() >= self.limit {
            return false;
        }
        list.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn limits_per_key() {
        let l = super::RateLimiter::new(3, std::time::Duration::from_secs(60));
        assert!((0..3).all(|_| l.allow("a")));
        assert!(!l.allow("a"));
        assert!(l.allow("b"));
    }
}
