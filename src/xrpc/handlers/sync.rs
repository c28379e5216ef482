//! `com.atproto.sync.*` handlers.

use super::{car, json};
use crate::error::{XrpcError, XrpcResult};
use crate::pds::sync;
use crate::xrpc::call::Call;
use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub(crate) async fn get_repo(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    car_stream(
        sync::get_repo(
            &c.ctx,
            p.required("did")?,
            p.get("since").map(str::to_owned),
        )
        .await?,
    )
}

pub(crate) async fn latest_commit(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    json(sync::latest_commit(&c.ctx, p.required("did")?).await?)
}

/// com.atproto.sync.getHead, deprecated for getLatestCommit (older relays still ask).
pub(crate) async fn head(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let latest = sync::latest_commit(&c.ctx, p.required("did")?).await?;
    json(serde_json::json!({ "root": latest.cid }))
}

/// com.atproto.sync.getCheckout, deprecated for getRepo: the whole repo as a CAR.
pub(crate) async fn checkout(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    car_stream(sync::get_repo(&c.ctx, p.required("did")?, None).await?)
}

/// A CAR streamed as it is read from storage.
fn car_stream(stream: sync::CarStream) -> XrpcResult<Response> {
    Ok((
        [(header::CONTENT_TYPE, "application/vnd.ipld.car")],
        Body::from_stream(stream),
    )
        .into_response())
}

pub(crate) async fn get_record(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    car(sync::record_proof(
        &c.ctx,
        p.required("did")?,
        p.required("collection")?,
        p.required("rkey")?,
    )
    .await?)
}

pub(crate) async fn get_blocks(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let cids = p.all("cids");
    if cids.is_empty() {
        return Err(XrpcError::invalid_request(
            "Error: Params must have the property \"cids\"",
        ));
    }
    car(sync::get_blocks(&c.ctx, p.required("did")?, &cids).await?)
}

pub(crate) async fn list_blobs(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let limit = p.int("limit", 500, 1, 1000)? as usize;
    json(
        sync::list_blobs(
            &c.ctx,
            p.required("did")?,
            p.get("since").map(str::to_owned),
            limit,
            p.get("cursor").map(str::to_owned),
        )
        .await?,
    )
}

pub(crate) async fn list_repos(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let limit = p.int("limit", 500, 1, 1000)? as usize;
    json(sync::list_repos(&c.ctx, limit, p.get("cursor").map(str::to_owned)).await?)
}

pub(crate) async fn repo_status(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    json(sync::repo_status(&c.ctx, p.required("did")?).await?)
}

/// A single `bytes=start-end` range within `size`, per RFC 9110 (suffix ranges too).
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, size.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.min(size.checked_sub(1)?),
        ),
    };
    (start <= end && end < size).then_some((start, end))
}

/// com.atproto.sync.getBlob: the bytes, with their type, served so a browser will not
/// run them (nosniff, a sandboxing CSP), with HTTP range support for video.
pub(crate) async fn get_blob(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let (path, mime, size) = sync::blob(&c.ctx, p.required("did")?, p.required("cid")?).await?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| XrpcError::named("BlobNotFound", "Blob not found"))?;
    let range = c.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len) = match range {
        None => (StatusCode::OK, 0, size),
        Some(r) => match parse_range(r, size) {
            Some((s, e)) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1),
            None => {
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(header::CONTENT_RANGE, format!("bytes */{size}"))],
                )
                    .into_response());
            }
        },
    };
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| XrpcError::internal(e.to_string()))?;
    let stream = tokio_util_stream(file.take(len));
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = status;
    let headers = res.headers_mut();
    let value = |s: &str| {
        HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("application/octet-stream"))
    };
    headers.insert(header::CONTENT_TYPE, value(&mime));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        headers.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{}/{size}", start + len - 1)),
        );
    }
    Ok(res)
}

/// Reads an async reader as a stream of chunks.
fn tokio_util_stream<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    reader: R,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100), Some((50, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
