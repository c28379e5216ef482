//! Authentication: password hashing, session tokens, server secrets, and the rate
//! limiter for login attempts.

pub mod password;
pub mod ratelimit;
pub mod secrets;
pub mod tokens;
