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
    /// Headers the answer carries (a rate limit's `RateLimit-*`).
    pub headers: Vec<(&'static str, String)>,
}

impl XrpcError {
    pub fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        XrpcError {
            status,
            error: error.to_owned(),
            message: message.into(),
            headers: Vec::new(),
        }
    }
    /// The same error, answered with these headers too.
    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers = headers;
        self
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
    /// 507: the box's disk is full. Nothing was stored; reads still work.
    pub fn storage_full(detail: &str) -> Self {
        Self::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "InsufficientStorage",
            format!(
                "the box's storage is full ({detail}): nothing was saved. Free space on its \
                 SD card (or move to a larger one), then try again"
            ),
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
        if self.status == StatusCode::INTERNAL_SERVER_ERROR
            || self.status == StatusCode::INSUFFICIENT_STORAGE
        {
            tracing::error!(error = %self.error, "{}", self.message);
        }
        let mut response = (
            self.status,
            Json(serde_json::json!({ "error": self.error, "message": self.message })),
        )
            .into_response();
        for (name, value) in self.headers {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<crate::storage::StorageError> for XrpcError {
    fn from(e: crate::storage::StorageError) -> Self {
        match e {
            crate::storage::StorageError::Full(detail) => XrpcError::storage_full(&detail),
            e => XrpcError::internal(e.to_string()),
        }
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

#[cfg(test)]
mod tests {
    use super::XrpcError;
    use crate::storage::StorageError;
    use axum::http::StatusCode;

    /// A full SD card is the owner's to fix, not a server bug: it must reach the client
    /// as 507 with a message saying what to do, from SQLite and from blob files alike.
    #[test]
    fn a_full_disk_keeps_its_kind_up_to_the_client() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB); PRAGMA max_page_count = 8;")
            .unwrap();
        let full = (0..64)
            .find_map(|_| {
                conn.execute("INSERT INTO t VALUES (zeroblob(4096))", [])
                    .err()
            })
            .expect("the page limit is reached");
        let stored = StorageError::from(full);
        assert!(matches!(stored, StorageError::Full(_)), "{stored:?}");
        let answer = XrpcError::from(stored);
        assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE);
        assert!(answer.message.contains("Free space"), "{}", answer.message);

        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let answer = XrpcError::from(StorageError::from(enospc));
        assert_eq!(answer.status, StatusCode::INSUFFICIENT_STORAGE);
        // Anything else stays an internal error.
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            XrpcError::from(StorageError::from(other)).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
