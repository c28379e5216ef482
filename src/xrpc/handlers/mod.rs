//! The handlers, one per method, by namespace (the method table, `super::methods`, says
//! which serves which NSID and who may call it), and the helpers they share for bodies
//! and responses. Every handler has one shape: a verified [`super::call::Call`] in, an
//! XRPC response out; what it does is a `crate::pds` operation.

pub(crate) mod admin;
pub(crate) mod repo;
pub(crate) mod server;
pub(crate) mod sync;

use crate::error::{XrpcError, XrpcResult};
use axum::body::Body;
use axum::response::{IntoResponse, Response};

/// How long a whole buffered body may take to arrive (each chunk is also bounded by
/// the connection loop's idle timeout): a body dribbled in is not held for ever.
const BODY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a body of at most `limit` bytes within [`BODY_DEADLINE`]. Past the limit the
/// rest is read and dropped (up to a bound) before answering 413, so that clients still
/// sending see the error rather than a reset connection.
pub(crate) async fn read_limited(body: Body, limit: usize) -> XrpcResult<Vec<u8>> {
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

/// Streams a body into an unnamed temporary file in `dir` (at most `limit` bytes, each
/// chunk within the connection's idle timeout), and hands the file back rewound.
pub(crate) async fn spool(
    body: Body,
    dir: &std::path::Path,
    limit: usize,
) -> XrpcResult<std::fs::File> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| XrpcError::from(crate::storage::StorageError::from(e));
    let std_file = tempfile::tempfile_in(dir).map_err(io)?;
    let mut file = tokio::fs::File::from_std(std_file);
    let mut stream = body.into_data_stream();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            XrpcError::invalid_request(format!("could not read the request body: {e}"))
        })?;
        total += chunk.len();
        if total > limit {
            return Err(XrpcError::too_large(format!(
                "request body is larger than {limit} bytes"
            )));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    let mut file = file.into_std().await;
    std::io::Seek::rewind(&mut file).map_err(io)?;
    Ok(file)
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
