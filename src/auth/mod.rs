//! Authentication: password hashing, session tokens, server secrets, and the rate
//! limiter for login attempts.

pub mod credentials;
pub mod methods;
pub mod pairing;
pub mod password;
pub mod ratelimit;
pub mod secrets;
pub mod service_jwt;
pub mod tokens;

use crate::error::{XrpcError, XrpcResult};
use tokens::Scope;

/// A verified access session.
#[derive(Debug, Clone)]
pub struct Session {
    pub did: String,
    pub scope: Scope,
}

impl Session {
    /// Whether the session may change account settings (not an app password).
    pub fn is_full(&self) -> bool {
        self.scope == Scope::Access
    }

    /// Refuses app-password sessions (account settings need the real password).
    pub fn require_full(&self) -> XrpcResult<()> {
        if self.is_full() {
            Ok(())
        } else {
            Err(XrpcError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "InvalidToken",
                "an app password cannot do this; log in with the account password",
            ))
        }
    }
}
