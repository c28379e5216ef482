//! The two discovery documents: the resource server's (RFC 9728: "this PDS is protected
//! by that authorization server", which is itself) and the authorization server's
//! (RFC 8414, with what the atproto profile requires: PAR, PKCE S256, DPoP ES256,
//! `none` and `private_key_jwt` client authentication, client metadata documents).

use super::issuer;
use crate::pds::Ctx;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Scopes this server understands (the permission resources are parameterised:
/// listed by their prefix, as the reference does).
pub(crate) const SCOPES: &[&str] = &[
    "atproto",
    "transition:generic",
    "transition:chat.bsky",
    "transition:email",
    "repo",
    "rpc",
    "blob",
    "account",
    "identity",
    "include",
];

pub(crate) async fn protected_resource(State(ctx): State<Ctx>) -> Response {
    let iss = issuer(&ctx);
    axum::Json(json!({
        "resource": iss,
        "authorization_servers": [iss],
        "scopes_supported": [],
        "bearer_methods_supported": ["header"],
        "resource_documentation": "https://atproto.com",
    }))
    .into_response()
}

pub(crate) async fn authorization_server(State(ctx): State<Ctx>) -> Response {
    let iss = issuer(&ctx);
    axum::Json(json!({
        "issuer": iss,
        "scopes_supported": SCOPES,
        "subject_types_supported": ["public"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "ui_locales_supported": ["en-US"],
        "display_values_supported": ["page", "touch"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": true,
        "require_request_uri_registration": true,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "pushed_authorization_request_endpoint": format!("{iss}/oauth/par"),
        "require_pushed_authorization_requests": true,
        "dpop_signing_alg_values_supported": ["ES256"],
        "protected_resources": [iss],
        "client_id_metadata_document_supported": true,
    }))
    .into_response()
}
