//! XRPC errors (`specs/xrpc#error-responses`): every failure leaves atbox as
//! `{"error": "<Name>", "message": "<what happened and what to do>"}` with the status
//! the lexicon and the XRPC spec give. A client mistake is never a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An XRPC error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XrpcError {
    pub status: StatusCode,
    pub error: String,
    pub message: String,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error: error.to_owned(),
            message: message.into(),
        }
    }
    /// 400 with a lexicon-declared error name.
    pub fn named(error: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, message)
    }
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::named("InvalidRequest", message)
    }
    pub fn auth_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthRequired", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
    }
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "RateLimitExceeded", message)
    }
    pub fn not_implemented(nsid: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            "MethodNotImplemented",
            format!("{nsid} is not implemented by this server"),
        )
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "UpstreamFailure", message)
    }
}

impl std::fmt::Display for XrpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.error,
            self.status.as_u16(),
            self.message
        )
    }
}

impl std::error::Error for XrpcError {}

impl IntoResponse for XrpcError {
    fn into_response(self) -> Response {
        if self.status == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.error, "{}", self.message);
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.error, "message": self.message })),
        )
            .into_response()
    }
}

impl From<crate::storage::StorageError> for XrpcError {
    fn from(e: crate::storage::StorageError) -> Self {
        XrpcError::internal(e.to_string())
    }
}

impl From<crate::syntax::SyntaxError> for XrpcError {
    fn from(e: crate::syntax::SyntaxError) -> Self {
        XrpcError::invalid_request(e.to_string())
    }
}

impl From<crate::data::DataError> for XrpcError {
    fn from(e: crate::data::DataError) -> Self {
        XrpcError::invalid_request(e.to_string())
    }
}

impl From<crate::repo::RepoError> for XrpcError {
    fn from(e: crate::repo::RepoError) -> Self {
        XrpcError::internal(format!("repository: {e}"))
    }
}

impl From<crate::repo::writes::WriteError> for XrpcError {
    fn from(e: crate::repo::writes::WriteError) -> Self {
        use crate::repo::writes::WriteError;
        match e {
            WriteError::SwapMismatch { .. } => XrpcError::named("InvalidSwap", e.to_string()),
            WriteError::AlreadyExists(_) | WriteError::NotFound(_) => {
                XrpcError::invalid_request(e.to_string())
            }
            WriteError::Repo(r) => r.into(),
        }
    }
}

pub type XrpcResult<T> = Result<T, XrpcError>;
