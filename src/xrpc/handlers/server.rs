//! `com.atproto.server.*` and `com.atproto.identity.*` handlers, and preferences.

use super::{empty, json};
use crate::error::{XrpcError, XrpcResult};
use crate::pds::{accounts, sessions};
use crate::xrpc::call::Call;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

pub(crate) async fn describe_server(c: Call) -> XrpcResult<Response> {
    json(accounts::describe_server(&c.ctx))
}

pub(crate) async fn create_account(c: Call) -> XrpcResult<Response> {
    json(accounts::create_account(&c.ctx, c.json()?, c.bearer()).await?)
}

#[derive(Deserialize)]
struct Login {
    identifier: String,
    password: String,
}

pub(crate) async fn create_session(c: Call) -> XrpcResult<Response> {
    let input: Login = c.json()?;
    json(sessions::create_session(&c.ctx, &c.client_ip, &input.identifier, &input.password).await?)
}

pub(crate) async fn get_session(c: Call) -> XrpcResult<Response> {
    json(sessions::get_session(&c.ctx, c.session()?).await?)
}

pub(crate) async fn refresh_session(c: Call) -> XrpcResult<Response> {
    let claims = c.refresh_claims()?;
    let jti = claims.jti.as_deref().unwrap_or_default();
    json(sessions::refresh_session(&c.ctx, &claims.sub, jti).await?)
}

pub(crate) async fn delete_session(c: Call) -> XrpcResult<Response> {
    let claims = c.refresh_claims()?;
    sessions::delete_session(&c.ctx, claims.jti.as_deref().unwrap_or_default()).await?;
    empty()
}

#[derive(Deserialize)]
struct NewAppPassword {
    name: String,
    #[serde(default)]
    privileged: bool,
}

pub(crate) async fn create_app_password(c: Call) -> XrpcResult<Response> {
    let input: NewAppPassword = c.json()?;
    let s = c.session()?;
    json(sessions::create_app_password(&c.ctx, s, &input.name, input.privileged).await?)
}

pub(crate) async fn list_app_passwords(c: Call) -> XrpcResult<Response> {
    json(sessions::list_app_passwords(&c.ctx, c.session()?).await?)
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

pub(crate) async fn revoke_app_password(c: Call) -> XrpcResult<Response> {
    let input: Named = c.json()?;
    sessions::revoke_app_password(&c.ctx, c.session()?, &input.name).await?;
    empty()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InviteInput {
    use_count: i64,
    for_account: Option<String>,
}

pub(crate) async fn create_invite_code(c: Call) -> XrpcResult<Response> {
    let input: InviteInput = c.json()?;
    let codes = accounts::create_invites(
        &c.ctx,
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

pub(crate) async fn create_invite_codes(c: Call) -> XrpcResult<Response> {
    let input: InvitesInput = c.json()?;
    let accounts_for = if input.for_accounts.is_empty() {
        vec!["admin".to_owned()]
    } else {
        input.for_accounts
    };
    let mut out = Vec::new();
    for account in accounts_for {
        let codes =
            accounts::create_invites(&c.ctx, input.code_count, input.use_count, &account).await?;
        out.push(j!({ "account": account, "codes": codes }));
    }
    json(j!({ "codes": out }))
}

pub(crate) async fn account_invites(c: Call) -> XrpcResult<Response> {
    json(accounts::account_invites(&c.ctx, c.session()?).await?)
}

pub(crate) async fn service_auth(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    let exp = p
        .get("exp")
        .map(|e| {
            e.parse::<i64>()
                .map_err(|_| XrpcError::invalid_request("exp must be an integer"))
        })
        .transpose()?;
    let aud = p.required("aud")?;
    json(sessions::get_service_auth(&c.ctx, c.session()?, aud, exp, p.get("lxm")).await?)
}

pub(crate) async fn check_account_status(c: Call) -> XrpcResult<Response> {
    json(accounts::check_account_status(&c.ctx, c.session()?).await?)
}

pub(crate) async fn activate_account(c: Call) -> XrpcResult<Response> {
    accounts::set_active(&c.ctx, c.session()?, true).await?;
    empty()
}

pub(crate) async fn deactivate_account(c: Call) -> XrpcResult<Response> {
    accounts::set_active(&c.ctx, c.session()?, false).await?;
    empty()
}

pub(crate) async fn request_account_delete(c: Call) -> XrpcResult<Response> {
    accounts::request_token(&c.ctx, &c.session()?.did, accounts::Purpose::DeleteAccount).await?;
    empty()
}

#[derive(Deserialize)]
struct DeleteInput {
    did: String,
    password: String,
    token: String,
}

pub(crate) async fn delete_account(c: Call) -> XrpcResult<Response> {
    let input: DeleteInput = c.json()?;
    accounts::delete_account(&c.ctx, &input.did, &input.password, &input.token).await?;
    empty()
}

#[derive(Deserialize)]
struct EmailInput {
    email: String,
}

pub(crate) async fn request_password_reset(c: Call) -> XrpcResult<Response> {
    let input: EmailInput = c.json()?;
    accounts::request_password_reset(&c.ctx, &input.email).await?;
    empty()
}

#[derive(Deserialize)]
struct ResetInput {
    token: String,
    password: String,
}

pub(crate) async fn reset_password(c: Call) -> XrpcResult<Response> {
    let input: ResetInput = c.json()?;
    accounts::reset_password(&c.ctx, &input.token, &input.password).await?;
    empty()
}

pub(crate) async fn resolve_handle(c: Call) -> XrpcResult<Response> {
    json(accounts::resolve_handle(&c.ctx, c.params.required("handle")?).await?)
}

pub(crate) async fn check_handle_availability(c: Call) -> XrpcResult<Response> {
    let p = &c.params;
    json(accounts::check_handle_availability(&c.ctx, p.required("handle")?, p.get("email")).await?)
}

pub(crate) async fn recommended_credentials(c: Call) -> XrpcResult<Response> {
    json(accounts::recommended_credentials(&c.ctx, c.session()?).await?)
}

#[derive(Deserialize)]
struct HandleInput {
    handle: String,
}

pub(crate) async fn update_handle(c: Call) -> XrpcResult<Response> {
    let input: HandleInput = c.json()?;
    accounts::update_handle(&c.ctx, c.session()?, &input.handle).await?;
    empty()
}

pub(crate) async fn get_preferences(c: Call) -> XrpcResult<Response> {
    json(accounts::preferences(&c.ctx, c.session()?).await?)
}

pub(crate) async fn put_preferences(c: Call) -> XrpcResult<Response> {
    let prefs = c.object()?.remove("preferences").unwrap_or(Value::Null);
    accounts::put_preferences(&c.ctx, c.session()?, prefs).await?;
    empty()
}

pub(crate) async fn request_plc_signature(c: Call) -> XrpcResult<Response> {
    crate::pds::identity::request_signature(&c.ctx, c.session()?).await?;
    empty()
}

pub(crate) async fn sign_plc_operation(c: Call) -> XrpcResult<Response> {
    json(crate::pds::identity::sign_operation(&c.ctx, c.session()?, c.json()?).await?)
}

pub(crate) async fn submit_plc_operation(c: Call) -> XrpcResult<Response> {
    let op = c
        .object()?
        .remove("operation")
        .ok_or_else(|| XrpcError::invalid_request("Input must have the property \"operation\""))?;
    crate::pds::identity::submit_operation(&c.ctx, c.session()?, op).await?;
    empty()
}

pub(crate) async fn resolve_did(c: Call) -> XrpcResult<Response> {
    json(accounts::resolve_did(&c.ctx, c.params.required("did")?).await?)
}

pub(crate) async fn resolve_identity(c: Call) -> XrpcResult<Response> {
    let identifier = c.params.required("identifier")?;
    json(accounts::resolve_identity(&c.ctx, identifier, false).await?)
}

#[derive(Deserialize)]
struct IdentifierInput {
    identifier: String,
}

pub(crate) async fn refresh_identity(c: Call) -> XrpcResult<Response> {
    let input: IdentifierInput = c.json()?;
    json(accounts::resolve_identity(&c.ctx, &input.identifier, true).await?)
}

/// Accounts here are never queued: they are active as soon as they exist.
pub(crate) async fn check_signup_queue(_: Call) -> XrpcResult<Response> {
    json(j!({ "activated": true }))
}

pub(crate) async fn request_email_confirmation(c: Call) -> XrpcResult<Response> {
    accounts::request_email_confirmation(&c.ctx, c.session()?).await?;
    empty()
}

#[derive(Deserialize)]
struct ConfirmInput {
    email: String,
    token: String,
}

pub(crate) async fn confirm_email(c: Call) -> XrpcResult<Response> {
    let input: ConfirmInput = c.json()?;
    accounts::confirm_email(&c.ctx, c.session()?, &input.email, &input.token).await?;
    empty()
}

pub(crate) async fn request_email_update(c: Call) -> XrpcResult<Response> {
    json(accounts::request_email_update(&c.ctx, c.session()?).await?)
}

#[derive(Deserialize)]
struct UpdateEmailInput {
    email: String,
    token: Option<String>,
}

pub(crate) async fn update_email(c: Call) -> XrpcResult<Response> {
    let input: UpdateEmailInput = c.json()?;
    let token = input.token.as_deref();
    accounts::update_email(&c.ctx, c.session()?, &input.email, token).await?;
    empty()
}
