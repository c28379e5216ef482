//! `com.atproto.admin.*` handlers (the method table declares them admin-only: HTTP
//! basic auth with the admin password).

use super::{empty, json};
use crate::error::{XrpcError, XrpcResult};
use crate::pds::admin;
use crate::xrpc::call::Call;
use axum::response::Response;
use serde::Deserialize;
use serde_json::json as j;

pub(crate) async fn get_account_info(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    json(admin::account_info(&c.ctx, p.required("did")?).await?)
}

pub(crate) async fn get_account_infos(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let dids = p.all("dids");
    if dids.is_empty() {
        return Err(XrpcError::invalid_request(
            "Error: Params must have the property \"dids\"",
        ));
    }
    json(j!({ "infos": admin::account_infos(&c.ctx, &dids).await? }))
}

pub(crate) async fn get_subject_status(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let did = p.get("did").ok_or_else(|| {
        XrpcError::invalid_request("only repo subjects (did=...) are supported on this server")
    })?;
    json(admin::subject_status(&c.ctx, did).await?)
}

pub(crate) async fn get_invite_codes(c: Call) -> XrpcResult<Response> {
    json(admin::invite_codes(&c.ctx).await?)
}

#[derive(Deserialize)]
struct DidPassword {
    did: String,
    password: String,
}

pub(crate) async fn update_account_password(c: Call) -> XrpcResult<Response> {
    let input: DidPassword = c.json()?;
    admin::update_password(&c.ctx, &input.did, &input.password).await?;
    empty()
}

#[derive(Deserialize)]
struct AccountEmail {
    account: String,
    email: String,
}

pub(crate) async fn update_account_email(c: Call) -> XrpcResult<Response> {
    let input: AccountEmail = c.json()?;
    admin::update_email(&c.ctx, &input.account, &input.email).await?;
    empty()
}

#[derive(Deserialize)]
struct DidHandle {
    did: String,
    handle: String,
}

pub(crate) async fn update_account_handle(c: Call) -> XrpcResult<Response> {
    let input: DidHandle = c.json()?;
    admin::update_handle(&c.ctx, &input.did, &input.handle).await?;
    empty()
}

#[derive(Deserialize)]
struct DidOnly {
    did: String,
}

pub(crate) async fn delete_account(c: Call) -> XrpcResult<Response> {
    let input: DidOnly = c.json()?;
    admin::delete_account(&c.ctx, &input.did).await?;
    empty()
}

pub(crate) async fn update_subject_status(c: Call) -> XrpcResult<Response> {
    let input = c.object()?;
    let subject = input
        .get("subject")
        .ok_or_else(|| XrpcError::invalid_request("Input must have the property \"subject\""))?;
    json(admin::update_subject_status(&c.ctx, subject, input.get("takedown")).await?)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DisableInvites {
    codes: Vec<String>,
    accounts: Vec<String>,
}

pub(crate) async fn disable_invite_codes(c: Call) -> XrpcResult<Response> {
    let input: DisableInvites = c.json()?;
    admin::disable_invite_codes(&c.ctx, input.codes, input.accounts).await?;
    empty()
}
