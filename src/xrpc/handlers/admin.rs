//! `com.atproto.admin.*` handlers: HTTP basic auth with the admin password.

use super::{body, body_object, empty, json};
use crate::pds::{admin, Ctx};
use crate::xrpc::auth;
use crate::xrpc::error::{XrpcError, XrpcResult};
use crate::xrpc::params::Params;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json as j;

pub async fn get_account_info(ctx: &Ctx, h: &HeaderMap, p: &Params) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    json(admin::account_info(ctx, p.required("did")?).await?)
}

pub async fn get_account_infos(ctx: &Ctx, h: &HeaderMap, p: &Params) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let dids = p.all("dids");
    if dids.is_empty() {
        return Err(XrpcError::invalid_request(
            "Error: Params must have the property \"dids\"",
        ));
    }
    json(j!({ "infos": admin::account_infos(ctx, &dids).await? }))
}

pub async fn get_subject_status(ctx: &Ctx, h: &HeaderMap, p: &Params) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let did = p.get("did").ok_or_else(|| {
        XrpcError::invalid_request("only repo subjects (did=...) are supported on this server")
    })?;
    json(admin::subject_status(ctx, did).await?)
}

pub async fn get_invite_codes(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    json(admin::invite_codes(ctx).await?)
}

#[derive(Deserialize)]
struct DidPassword {
    did: String,
    password: String,
}

pub async fn update_account_password(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: DidPassword = body(b)?;
    admin::update_password(ctx, &input.did, &input.password).await?;
    empty()
}

#[derive(Deserialize)]
struct AccountEmail {
    account: String,
    email: String,
}

pub async fn update_account_email(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: AccountEmail = body(b)?;
    admin::update_email(ctx, &input.account, &input.email).await?;
    empty()
}

#[derive(Deserialize)]
struct DidHandle {
    did: String,
    handle: String,
}

pub async fn update_account_handle(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: DidHandle = body(b)?;
    admin::update_handle(ctx, &input.did, &input.handle).await?;
    empty()
}

#[derive(Deserialize)]
struct DidOnly {
    did: String,
}

pub async fn delete_account(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: DidOnly = body(b)?;
    admin::delete_account(ctx, &input.did).await?;
    empty()
}

pub async fn update_subject_status(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input = body_object(b)?;
    let subject = input
        .get("subject")
        .ok_or_else(|| XrpcError::invalid_request("Input must have the property \"subject\""))?;
    json(admin::update_subject_status(ctx, subject, input.get("takedown")).await?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisableInvites {
    codes: Vec<String>,
    accounts: Vec<String>,
}

pub async fn disable_invite_codes(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: DisableInvites = body(b)?;
    admin::disable_invite_codes(ctx, input.codes, input.accounts).await?;
    empty()
}
