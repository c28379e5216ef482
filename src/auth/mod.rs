//! Authentication: password hashing, session tokens, server secrets, and the rate
//! limiter for login attempts.

pub mod credentials;
pub mod dpop;
pub mod methods;
pub mod oauth;
pub mod pairing;
pub mod password;
pub mod ratelimit;
pub mod scopes;
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
    /// For an OAuth access token: what its scope grants (every operation that acts for
    /// the account asks it, through [`Session::require`]).
    pub oauth: Option<std::sync::Arc<scopes::Permissions>>,
}

impl Session {
    /// Whether the session may change account settings (not an app password).
    pub fn is_full(&self) -> bool {
        self.scope == Scope::Access
    }

    /// A session from a login or app password (not OAuth).
    pub fn new(did: String, scope: Scope) -> Session {
        Session {
            did,
            scope,
            oauth: None,
        }
    }

    /// For OAuth sessions, refuses what the token's scope does not grant (`allowed`
    /// asks; `needed` names the scope that would, for the error). Other sessions pass.
    pub fn require(
        &self,
        allowed: impl FnOnce(&scopes::Permissions) -> bool,
        needed: impl FnOnce() -> String,
    ) -> XrpcResult<()> {
        match &self.oauth {
            Some(p) if !allowed(p) => Err(XrpcError::new(
                axum::http::StatusCode::FORBIDDEN,
                "ScopeMissingError",
                format!("Missing required scope \"{}\"", needed()),
            )),
            _ => Ok(()),
        }
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
