//! `com.atproto.server.*` and `com.atproto.identity.*` handlers, and preferences.

use super::{body, body_object, empty, json, session};
use crate::pds::{accounts, sessions, Ctx};
use crate::xrpc::auth;
use crate::xrpc::error::{XrpcError, XrpcResult};
use crate::xrpc::params::Params;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

pub async fn create_account(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    json(accounts::create_account(ctx, body(b)?, auth::bearer(h)).await?)
}

#[derive(Deserialize)]
struct Login {
    identifier: String,
    password: String,
}

pub async fn create_session(ctx: &Ctx, ip: &str, b: &[u8]) -> XrpcResult<Response> {
    let input: Login = body(b)?;
    json(sessions::create_session(ctx, ip, &input.identifier, &input.password).await?)
}

pub async fn get_session(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(sessions::get_session(ctx, &session(ctx, h)?).await?)
}

pub async fn refresh_session(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    let claims = auth::refresh(ctx, h)?;
    json(
        sessions::refresh_session(ctx, &claims.sub, claims.jti.as_deref().unwrap_or_default())
            .await?,
    )
}

pub async fn delete_session(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    let claims = auth::refresh(ctx, h)?;
    sessions::delete_session(ctx, claims.jti.as_deref().unwrap_or_default()).await?;
    empty()
}

#[derive(Deserialize)]
struct NewAppPassword {
    name: String,
    #[serde(default)]
    privileged: bool,
}

pub async fn create_app_password(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let input: NewAppPassword = body(b)?;
    json(sessions::create_app_password(ctx, &s, &input.name, input.privileged).await?)
}

pub async fn list_app_passwords(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(sessions::list_app_passwords(ctx, &session(ctx, h)?).await?)
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

pub async fn revoke_app_password(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let input: Named = body(b)?;
    sessions::revoke_app_password(ctx, &s, &input.name).await?;
    empty()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InviteInput {
    use_count: i64,
    for_account: Option<String>,
}

pub async fn create_invite_code(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: InviteInput = body(b)?;
    let codes = accounts::create_invites(
        ctx,
        1,
        input.use_count,
        input.for_account.as_deref().unwrap_or("admin"),
    )
    .await?;
    json(j!({ "code": codes[0] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InvitesInput {
    code_count: usize,
    use_count: i64,
    #[serde(default)]
    for_accounts: Vec<String>,
}

pub async fn create_invite_codes(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    auth::admin(ctx, h)?;
    let input: InvitesInput = body(b)?;
    let accounts_for = if input.for_accounts.is_empty() {
        vec!["admin".to_owned()]
    } else {
        input.for_accounts
    };
    let mut out = Vec::new();
    for account in accounts_for {
        let codes =
            accounts::create_invites(ctx, input.code_count, input.use_count, &account).await?;
        out.push(j!({ "account": account, "codes": codes }));
    }
    json(j!({ "codes": out }))
}

pub async fn account_invites(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(accounts::account_invites(ctx, &session(ctx, h)?).await?)
}

pub async fn service_auth(ctx: &Ctx, h: &HeaderMap, p: &Params) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let exp = p
        .get("exp")
        .map(|e| {
            e.parse::<i64>()
                .map_err(|_| XrpcError::invalid_request("exp must be an integer"))
        })
        .transpose()?;
    json(sessions::get_service_auth(ctx, &s, p.required("aud")?, exp, p.get("lxm")).await?)
}

pub async fn check_account_status(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(accounts::check_account_status(ctx, &session(ctx, h)?).await?)
}

pub async fn set_active(ctx: &Ctx, h: &HeaderMap, active: bool) -> XrpcResult<Response> {
    accounts::set_active(ctx, &session(ctx, h)?, active).await?;
    empty()
}

pub async fn request_account_delete(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    s.require_full()?;
    accounts::request_token(ctx, &s.did, "delete_account").await?;
    empty()
}

#[derive(Deserialize)]
struct DeleteInput {
    did: String,
    password: String,
    token: String,
}

pub async fn delete_account(ctx: &Ctx, b: &[u8]) -> XrpcResult<Response> {
    let input: DeleteInput = body(b)?;
    accounts::delete_account(ctx, &input.did, &input.password, &input.token).await?;
    empty()
}

#[derive(Deserialize)]
struct EmailInput {
    email: String,
}

pub async fn request_password_reset(ctx: &Ctx, b: &[u8]) -> XrpcResult<Response> {
    let input: EmailInput = body(b)?;
    accounts::request_password_reset(ctx, &input.email).await?;
    empty()
}

#[derive(Deserialize)]
struct ResetInput {
    token: String,
    password: String,
}

pub async fn reset_password(ctx: &Ctx, b: &[u8]) -> XrpcResult<Response> {
    let input: ResetInput = body(b)?;
    accounts::reset_password(ctx, &input.token, &input.password).await?;
    empty()
}

pub async fn resolve_handle(ctx: &Ctx, p: &Params) -> XrpcResult<Response> {
    json(accounts::resolve_handle(ctx, p.required("handle")?).await?)
}

pub async fn check_handle_availability(ctx: &Ctx, p: &Params) -> XrpcResult<Response> {
    json(accounts::check_handle_availability(ctx, p.required("handle")?, p.get("email")).await?)
}

pub async fn recommended_credentials(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(accounts::recommended_credentials(ctx, &session(ctx, h)?).await?)
}

#[derive(Deserialize)]
struct HandleInput {
    handle: String,
}

pub async fn update_handle(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let input: HandleInput = body(b)?;
    accounts::update_handle(ctx, &s, &input.handle).await?;
    empty()
}

pub async fn get_preferences(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(accounts::preferences(ctx, &session(ctx, h)?).await?)
}

pub async fn put_preferences(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let mut input = body_object(b)?;
    let prefs = input.remove("preferences").unwrap_or(Value::Null);
    accounts::put_preferences(ctx, &s, prefs).await?;
    empty()
}

pub async fn request_plc_signature(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    crate::pds::identity::request_signature(ctx, &session(ctx, h)?).await?;
    empty()
}

pub async fn sign_plc_operation(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    json(crate::pds::identity::sign_operation(ctx, &s, body(b)?).await?)
}

pub async fn submit_plc_operation(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let mut input = body_object(b)?;
    let op = input
        .remove("operation")
        .ok_or_else(|| XrpcError::invalid_request("Input must have the property \"operation\""))?;
    crate::pds::identity::submit_operation(ctx, &s, op).await?;
    empty()
}

pub async fn resolve_did(ctx: &Ctx, p: &Params) -> XrpcResult<Response> {
    json(accounts::resolve_did(ctx, p.required("did")?).await?)
}

pub async fn resolve_identity(ctx: &Ctx, p: &Params) -> XrpcResult<Response> {
    json(accounts::resolve_identity(ctx, p.required("identifier")?, false).await?)
}

#[derive(Deserialize)]
struct IdentifierInput {
    identifier: String,
}

pub async fn refresh_identity(ctx: &Ctx, b: &[u8]) -> XrpcResult<Response> {
    let input: IdentifierInput = body(b)?;
    json(accounts::resolve_identity(ctx, &input.identifier, true).await?)
}

/// Accounts here are never queued: they are active as soon as they exist.
pub async fn check_signup_queue(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    session(ctx, h)?;
    json(j!({ "activated": true }))
}

pub async fn request_email_confirmation(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    accounts::request_email_confirmation(ctx, &session(ctx, h)?).await?;
    empty()
}

#[derive(Deserialize)]
struct ConfirmInput {
    email: String,
    token: String,
}

pub async fn confirm_email(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let input: ConfirmInput = body(b)?;
    accounts::confirm_email(ctx, &s, &input.email, &input.token).await?;
    empty()
}

pub async fn request_email_update(ctx: &Ctx, h: &HeaderMap) -> XrpcResult<Response> {
    json(accounts::request_email_update(ctx, &session(ctx, h)?).await?)
}

#[derive(Deserialize)]
struct UpdateEmailInput {
    email: String,
    token: Option<String>,
}

pub async fn update_email(ctx: &Ctx, h: &HeaderMap, b: &[u8]) -> XrpcResult<Response> {
    let s = session(ctx, h)?;
    let input: UpdateEmailInput = body(b)?;
    accounts::update_email(ctx, &s, &input.email, input.token.as_deref()).await?;
    empty()
}
