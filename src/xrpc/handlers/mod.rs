//! The XRPC method tables: which handler serves which NSID, and the helpers they share
//! for bodies and responses.

mod admin;
mod repo;
mod server;
mod sync;

use super::error::{XrpcError, XrpcResult};
use super::params::Params;
use super::MAX_JSON_BODY;
use crate::pds::Ctx;
use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Serves a query (GET).
pub async fn query(ctx: &Ctx, nsid: &str, req: Request<Body>) -> XrpcResult<Response> {
    let params = Params::parse(req.uri().query());
    let headers = req.headers().clone();
    let h = &headers;
    let p = &params;
    match nsid {
        "com.atproto.server.describeServer" => json(crate::pds::accounts::describe_server(ctx)),
        "com.atproto.server.getSession" => server::get_session(ctx, h).await,
        "com.atproto.server.listAppPasswords" => server::list_app_passwords(ctx, h).await,
        "com.atproto.server.getAccountInviteCodes" => server::account_invites(ctx, h).await,
        "com.atproto.server.getServiceAuth" => server::service_auth(ctx, h, p).await,
        "com.atproto.server.checkAccountStatus" => server::check_account_status(ctx, h).await,
        "com.atproto.identity.resolveHandle" => server::resolve_handle(ctx, p).await,
        "com.atproto.identity.getRecommendedDidCredentials" => {
            server::recommended_credentials(ctx, h).await
        }
        "com.atproto.repo.getRecord" => repo::get_record(ctx, p).await,
        "com.atproto.repo.listRecords" => repo::list_records(ctx, p).await,
        "com.atproto.repo.describeRepo" => repo::describe_repo(ctx, p).await,
        "com.atproto.repo.listMissingBlobs" => repo::list_missing_blobs(ctx, h, p).await,
        "com.atproto.sync.getRepo" => sync::get_repo(ctx, p).await,
        "com.atproto.sync.getLatestCommit" => sync::latest_commit(ctx, p).await,
        "com.atproto.sync.getHead" => sync::head(ctx, p).await,
        "com.atproto.sync.getCheckout" => sync::checkout(ctx, p).await,
        "com.atproto.sync.getRecord" => sync::get_record(ctx, p).await,
        "com.atproto.sync.getBlocks" => sync::get_blocks(ctx, p).await,
        "com.atproto.sync.getBlob" => sync::get_blob(ctx, h, p).await,
        "com.atproto.sync.listBlobs" => sync::list_blobs(ctx, p).await,
        "com.atproto.sync.listRepos" => sync::list_repos(ctx, p).await,
        "com.atproto.sync.getRepoStatus" => sync::repo_status(ctx, p).await,
        "app.bsky.actor.getPreferences" => server::get_preferences(ctx, h).await,
        "com.atproto.identity.resolveDid" => server::resolve_did(ctx, p).await,
        "com.atproto.identity.resolveIdentity" => server::resolve_identity(ctx, p).await,
        "com.atproto.temp.checkSignupQueue" => server::check_signup_queue(ctx, h).await,
        "com.atproto.temp.checkHandleAvailability" => {
            server::check_handle_availability(ctx, p).await
        }
        "com.atproto.admin.getAccountInfo" => admin::get_account_info(ctx, h, p).await,
        "com.atproto.admin.getAccountInfos" => admin::get_account_infos(ctx, h, p).await,
        "com.atproto.admin.getSubjectStatus" => admin::get_subject_status(ctx, h, p).await,
        "com.atproto.admin.getInviteCodes" => admin::get_invite_codes(ctx, h).await,
        _ => Err(XrpcError::not_implemented(nsid)),
    }
}

/// Serves a procedure (POST).
pub async fn procedure(
    ctx: &Ctx,
    nsid: &str,
    client_ip: &str,
    req: Request<Body>,
) -> XrpcResult<Response> {
    let headers = req.headers().clone();
    let h = &headers;
    // Streaming bodies first; every other procedure takes (at most) a JSON object.
    match nsid {
        "com.atproto.repo.uploadBlob" => return repo::upload_blob(ctx, h, req.into_body()).await,
        "com.atproto.repo.importRepo" => return repo::import_repo(ctx, h, req.into_body()).await,
        _ => {}
    }
    let body = read_limited(req.into_body(), MAX_JSON_BODY).await?;
    let b = &body[..];
    match nsid {
        "com.atproto.server.createAccount" => server::create_account(ctx, h, b).await,
        "com.atproto.server.createSession" => server::create_session(ctx, client_ip, b).await,
        "com.atproto.server.refreshSession" => server::refresh_session(ctx, h).await,
        "com.atproto.server.deleteSession" => server::delete_session(ctx, h).await,
        "com.atproto.server.createAppPassword" => server::create_app_password(ctx, h, b).await,
        "com.atproto.server.revokeAppPassword" => server::revoke_app_password(ctx, h, b).await,
        "com.atproto.server.createInviteCode" => server::create_invite_code(ctx, h, b).await,
        "com.atproto.server.createInviteCodes" => server::create_invite_codes(ctx, h, b).await,
        "com.atproto.server.activateAccount" => server::set_active(ctx, h, true).await,
        "com.atproto.server.deactivateAccount" => server::set_active(ctx, h, false).await,
        "com.atproto.server.requestAccountDelete" => server::request_account_delete(ctx, h).await,
        "com.atproto.server.deleteAccount" => server::delete_account(ctx, b).await,
        "com.atproto.server.requestPasswordReset" => server::request_password_reset(ctx, b).await,
        "com.atproto.server.resetPassword" => server::reset_password(ctx, b).await,
        "com.atproto.identity.updateHandle" => server::update_handle(ctx, h, b).await,
        "com.atproto.identity.requestPlcOperationSignature" => {
            server::request_plc_signature(ctx, h).await
        }
        "com.atproto.identity.signPlcOperation" => server::sign_plc_operation(ctx, h, b).await,
        "com.atproto.identity.submitPlcOperation" => server::submit_plc_operation(ctx, h, b).await,
        "com.atproto.repo.createRecord" => repo::create_record(ctx, h, b).await,
        "com.atproto.repo.putRecord" => repo::put_record(ctx, h, b).await,
        "com.atproto.repo.deleteRecord" => repo::delete_record(ctx, h, b).await,
        "com.atproto.repo.applyWrites" => repo::apply_writes(ctx, h, b).await,
        "app.bsky.actor.putPreferences" => server::put_preferences(ctx, h, b).await,
        "com.atproto.identity.refreshIdentity" => server::refresh_identity(ctx, b).await,
        "com.atproto.admin.updateAccountPassword" => {
            admin::update_account_password(ctx, h, b).await
        }
        "com.atproto.admin.updateAccountEmail" => admin::update_account_email(ctx, h, b).await,
        "com.atproto.admin.updateAccountHandle" => admin::update_account_handle(ctx, h, b).await,
        "com.atproto.admin.deleteAccount" => admin::delete_account(ctx, h, b).await,
        "com.atproto.admin.updateSubjectStatus" => admin::update_subject_status(ctx, h, b).await,
        "com.atproto.admin.disableInviteCodes" => admin::disable_invite_codes(ctx, h, b).await,
        "com.atproto.server.requestEmailConfirmation" => {
            server::request_email_confirmation(ctx, h).await
        }
        "com.atproto.server.confirmEmail" => server::confirm_email(ctx, h, b).await,
        "com.atproto.server.requestEmailUpdate" => server::request_email_update(ctx, h).await,
        "com.atproto.server.updateEmail" => server::update_email(ctx, h, b).await,
        _ => Err(XrpcError::not_implemented(nsid)),
    }
}

/// Reads a body of at most `limit` bytes. Past the limit the rest is read and dropped
/// (up to a bound) before answering 413, so that clients still sending see the error
/// rather than a reset connection.
pub async fn read_limited(body: Body, limit: usize) -> XrpcResult<Vec<u8>> {
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

/// Parses a JSON request body into `T`.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> XrpcResult<T> {
    if bytes.is_empty() {
        return Err(XrpcError::invalid_request("Request body is required"));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| XrpcError::invalid_request(format!("Invalid request body: {e}")))
}

/// A JSON object body, as a value (for inputs with nullable-vs-absent fields).
fn body_object(bytes: &[u8]) -> XrpcResult<serde_json::Map<String, Value>> {
    match body::<Value>(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(XrpcError::invalid_request(
            "Request body must be a JSON object",
        )),
    }
}

fn json(v: Value) -> XrpcResult<Response> {
    Ok(axum::Json(v).into_response())
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

/// The session of a request whose handler needs one.
fn session(ctx: &Ctx, headers: &HeaderMap) -> XrpcResult<super::auth::Session> {
    super::auth::access(ctx, headers)
}
