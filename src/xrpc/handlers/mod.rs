//! The handlers, one per method, by namespace (the method table, `super::methods`, says
//! which serves which NSID and who may call it), and the helpers they share for bodies
//! and responses. Every handler has one shape: a verified [`super::call::Call`] in, an
//! XRPC response out; what it does is a `crate::pds` operation.

pub mod admin;
pub mod repo;
pub mod server;
pub mod sync;

use crate::error::{XrpcError, XrpcResult};
use axum::body::Body;
use axum::response::{IntoResponse, Response};

/// How long a whole buffered body may take to arrive (each chunk is also bounded by
/// the connection loop's idle timeout): a body dribbled in is not held for ever.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a body of at most `limit` bytes within [`BODY_DEADLINE`]. Past the limit the
/// rest is read and dropped (up to a bound) before answering 413, so that clients still
/// sending see the error rather than a reset connection.
pub async fn read_limited(body: Body, limit: usize) -> XrpcResult<Vec<u8>> {
    tokio::time::timeout(BODY_DEADLINE, read_all(body, limit))
        .await
        .map_err(|_| {
            XrpcError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "the request body took too long to arrive",
            )
        })?
}

async fn read_all(body: Body, limit: usize) -> XrpcResult<Vec<u8>> {
    use futures_util::StreamExt;
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            XrpcError::invalid_request(format!("could not read the request body: {e}"))
        })?;
        total += chunk.len();
        if total <= limit {
            out.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > limit {
        return Err(XrpcError::too_large(format!(
            "request body is larger than {limit} bytes"
        )));
    }
    Ok(out)
}

/// A JSON output: a pds operation's typed result, or a value built here.
pub(super) fn json<T: serde::Serialize>(output: T) -> XrpcResult<Response> {
    Ok(axum::Json(output).into_response())
}

/// A successful procedure with no output.
fn empty() -> XrpcResult<Response> {
    Ok(axum::http::StatusCode::OK.into_response())
}

fn car(bytes: Vec<u8>) -> XrpcResult<Response> {
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/vnd.ipld.car")],
        bytes,
    )
        .into_response())
}
