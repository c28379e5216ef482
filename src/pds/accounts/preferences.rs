//! `app.bsky.actor` preferences, kept on the PDS as the reference does.

use crate::auth::Session;
use crate::data::ipld_from_json;
use crate::error::{XrpcError, XrpcResult};
use crate::pds::AppState;
use crate::storage::accounts::{self as db};
use serde_json::{json, Value};

/// app.bsky.actor.getPreferences: kept on the PDS, as the reference does.
pub async fn preferences(state: &AppState, session: &Session) -> XrpcResult<Preferences> {
    let did = session.did.clone();
    let stored = state
        .storage
        .read(move |conn| Ok::<_, XrpcError>(db::preferences(conn, &did)?))
        .await?;
    let prefs = stored
        .iter()
        .find(|(ns, _)| ns == "app.bsky")
        .and_then(|(_, v)| serde_json::from_str::<Value>(v).ok())
        .unwrap_or_else(|| json!([]));
    Ok(Preferences { preferences: prefs })
}

/// getPreferences' output: the stored preferences, as the app wrote them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preferences {
    pub preferences: Value,
}

/// app.bsky.actor.putPreferences: replaces the account's preferences.
pub async fn put_preferences(state: &AppState, session: &Session, prefs: Value) -> XrpcResult<()> {
    let Value::Array(items) = &prefs else {
        return Err(XrpcError::invalid_request("preferences must be an array"));
    };
    for item in items {
        let ty = item.get("$type").and_then(Value::as_str).unwrap_or("");
        if !ty.starts_with("app.bsky.") {
            return Err(XrpcError::invalid_request(
                "each preference needs an app.bsky.* $type",
            ));
        }
    }
    // Checked against the lexicon as the reference does: what is stored here is served
    // back, and clients refuse a response whose preferences break the schema.
    let input = ipld_from_json(&json!({ "preferences": &prefs }))
        .map_err(|e| XrpcError::invalid_request(format!("Input/preferences: {e}")))?;
    state
        .lexicons
        .validate_input("app.bsky.actor.putPreferences", &input)
        .map_err(|e| XrpcError::invalid_request(format!("Input/{e}")))?;
    let (did, text) = (session.did.clone(), prefs.to_string());
    state
        .storage
        .write(move |conn| {
            Ok::<_, XrpcError>(db::put_preferences(
                conn,
                &did,
                &[("app.bsky".to_owned(), text)],
            )?)
        })
        .await
}
