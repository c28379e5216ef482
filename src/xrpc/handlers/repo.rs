//! `com.atproto.repo.*` handlers.

use super::json;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::records::{self, WriteAction, WriteOutcome, WriteRequest};
use crate::pds::{blobs, import, sync};
use crate::xrpc::call::Call;
use axum::http::header;
use axum::response::Response;
use serde_json::{json as j, Map, Value};

/// Largest repo CAR importRepo accepts.
const MAX_IMPORT: usize = 256 * 1024 * 1024;

fn string(input: &Map<String, Value>, name: &str) -> XrpcResult<Option<String>> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(XrpcError::invalid_request(format!(
            "{name} must be a string"
        ))),
    }
}

fn required(input: &Map<String, Value>, name: &str) -> XrpcResult<String> {
    string(input, name)?.ok_or_else(|| {
        XrpcError::invalid_request(format!("Input must have the property \"{name}\""))
    })
}

fn validate_flag(input: &Map<String, Value>) -> XrpcResult<Option<bool>> {
    match input.get("validate") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(XrpcError::invalid_request("validate must be a boolean")),
    }
}

/// `swapRecord`: absent (no check), null (must not exist) or a CID.
fn swap_record(input: &Map<String, Value>) -> XrpcResult<Option<Option<String>>> {
    match input.get("swapRecord") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(XrpcError::invalid_request(
            "swapRecord must be a CID string or null",
        )),
    }
}

fn single_result(outcome: &WriteOutcome) -> XrpcResult<Value> {
    let result = outcome
        .results
        .first()
        .ok_or_else(|| XrpcError::internal("a write produced no result"))?;
    let mut out = j!({ "uri": result.uri, "cid": result.cid.map(|c| c.to_string()) });
    // No commit when the record was written exactly as it already was.
    if let Some(commit) = &outcome.commit {
        out["commit"] = j!(records::commit_meta(commit));
    }
    if let Some(v) = result.validation {
        out["validationStatus"] = j!(v.as_str());
    }
    Ok(out)
}

async fn write_one(c: Call, action: WriteAction) -> XrpcResult<Response> {
    let input = c.object()?;
    let request = WriteRequest {
        action,
        collection: required(&input, "collection")?,
        rkey: string(&input, "rkey")?,
        record: match action {
            WriteAction::Delete => None,
            _ => Some(input.get("record").cloned().ok_or_else(|| {
                XrpcError::invalid_request("Input must have the property \"record\"")
            })?),
        },
        swap_record: swap_record(&input)?,
    };
    if action == WriteAction::Update && request.rkey.is_none() {
        return Err(XrpcError::invalid_request(
            "Input must have the property \"rkey\"",
        ));
    }
    let outcome = records::write(
        &c.ctx,
        c.session()?,
        &required(&input, "repo")?,
        vec![request],
        validate_flag(&input)?,
        string(&input, "swapCommit")?,
    )
    .await?;
    match action {
        WriteAction::Delete => json(match &outcome.commit {
            Some(c) => j!({ "commit": records::commit_meta(c) }),
            None => j!({}),
        }),
        _ => json(single_result(&outcome)?),
    }
}

pub(crate) async fn create_record(c: Call) -> XrpcResult<Response> {
    write_one(c, WriteAction::Create).await
}

pub(crate) async fn put_record(c: Call) -> XrpcResult<Response> {
    write_one(c, WriteAction::Update).await
}

pub(crate) async fn delete_record(c: Call) -> XrpcResult<Response> {
    write_one(c, WriteAction::Delete).await
}

pub(crate) async fn apply_writes(c: Call) -> XrpcResult<Response> {
    let input = c.object()?;
    let Some(Value::Array(writes)) = input.get("writes") else {
        return Err(XrpcError::invalid_request(
            "Input must have the property \"writes\" (an array)",
        ));
    };
    let mut requests = Vec::with_capacity(writes.len());
    for w in writes {
        let Value::Object(w) = w else {
            return Err(XrpcError::invalid_request("each write must be an object"));
        };
        let action = match w.get("$type").and_then(Value::as_str) {
            Some("com.atproto.repo.applyWrites#create") => WriteAction::Create,
            Some("com.atproto.repo.applyWrites#update") => WriteAction::Update,
            Some("com.atproto.repo.applyWrites#delete") => WriteAction::Delete,
            other => {
                return Err(XrpcError::invalid_request(format!(
                    "unknown write type {other:?}"
                )))
            }
        };
        if action != WriteAction::Create && string(w, "rkey")?.is_none() {
            return Err(XrpcError::invalid_request(
                "updates and deletes need an rkey",
            ));
        }
        requests.push(WriteRequest {
            action,
            collection: required(w, "collection")?,
            rkey: string(w, "rkey")?,
            record: match action {
                WriteAction::Delete => None,
                _ => Some(w.get("value").cloned().ok_or_else(|| {
                    XrpcError::invalid_request("creates and updates need a value")
                })?),
            },
            swap_record: None,
        });
    }
    let outcome = records::write(
        &c.ctx,
        c.session()?,
        &required(&input, "repo")?,
        requests,
        validate_flag(&input)?,
        string(&input, "swapCommit")?,
    )
    .await?;
    let results: Vec<Value> = outcome
        .results
        .iter()
        .map(|result| {
            let uri = &result.uri;
            let mut r = match result.action {
                WriteAction::Create => {
                    j!({ "$type": "com.atproto.repo.applyWrites#createResult", "uri": uri })
                }
                WriteAction::Update => {
                    j!({ "$type": "com.atproto.repo.applyWrites#updateResult", "uri": uri })
                }
                WriteAction::Delete => j!({ "$type": "com.atproto.repo.applyWrites#deleteResult" }),
            };
            if let Some(c) = result.cid {
                r["cid"] = j!(c.to_string());
            }
            if let Some(v) = result.validation {
                r["validationStatus"] = j!(v.as_str());
            }
            r
        })
        .collect();
    let mut out = j!({ "results": results });
    if let Some(c) = &outcome.commit {
        out["commit"] = j!(records::commit_meta(c));
    }
    json(out)
}

pub(crate) async fn get_record(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    json(
        records::get_record(
            &c.ctx,
            p.required("repo")?,
            p.required("collection")?,
            p.required("rkey")?,
            p.get("cid"),
        )
        .await?,
    )
}

pub(crate) async fn list_records(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let limit = p.int("limit", 50, 1, 100)? as usize;
    let reverse = p.bool("reverse")?.unwrap_or(false);
    json(
        records::list_records(
            &c.ctx,
            p.required("repo")?,
            p.required("collection")?,
            limit,
            p.get("cursor").map(str::to_owned),
            reverse,
        )
        .await?,
    )
}

pub(crate) async fn describe_repo(c: Call) -> XrpcResult<Response> {
    json(records::describe_repo(&c.ctx, c.params.required("repo")?).await?)
}

pub(crate) async fn list_missing_blobs(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let limit = p.int("limit", 500, 1, 1000)? as usize;
    let cursor = p.get("cursor").map(str::to_owned);
    json(sync::missing_blobs(&c.ctx, &c.session()?.did, limit, cursor).await?)
}

pub(crate) async fn upload_blob(mut c: Call) -> XrpcResult<Response> {
    let body = c.take_stream()?;
    let content_type = c
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    json(blobs::upload(&c.ctx, c.session()?, body.into_data_stream(), content_type).await?)
}

/// The CAR is refused at once if it says it is too large, else streamed into an
/// unnamed temporary file under the data directory (never held in memory while it
/// arrives), then imported.
pub(crate) async fn import_repo(mut c: Call) -> XrpcResult<Response> {
    let too_large = || XrpcError::too_large(format!("a repo CAR is at most {MAX_IMPORT} bytes"));
    let declared = c
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_IMPORT as u64) {
        return Err(too_large());
    }
    let body = c.take_stream()?;
    let file = super::spool(body, &c.ctx.config.data_dir, MAX_IMPORT).await?;
    import::import_repo(&c.ctx, c.session()?, file).await?;
    super::empty()
}
