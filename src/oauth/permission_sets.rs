//! Permission sets atbox does not carry, fetched from their publisher. An app may ask
//! for `include:com.example.authBasic`; the set is a lexicon (type `permission-set`)
//! published as the lexicon spec says: a `did=` TXT record at `_lexicon.` + the NSID's
//! authority (`example.com`: the segments before the name, reversed) names the
//! publishing account, whose PDS holds it as the `com.atproto.lexicon.schema` record
//! with the NSID as its key.
//!
//! Sets are fetched where waiting is fine (the pushed request, the token endpoint)
//! and kept in memory ([`crate::auth::oauth::OAuthState::remote_set`]), refreshed
//! after an hour; a publisher that cannot be reached keeps the copy already held. The
//! resource server, which must answer at once, reads only that memory: after a
//! restart a token whose set is not yet fetched is refused as `invalid_token`, and
//! the app's refresh (which fetches it) repairs that. The record is read with
//! `com.atproto.repo.getRecord` from the PDS the publisher's DID document names,
//! through the SSRF-safe client; its commit signature is not checked.

use crate::pds::AppState;
use crate::syntax::{Did, Nsid};
use serde_json::Value;
use std::time::Duration;

/// A fetched set is used as is for this long, then fetched again when next needed.
const FRESH_SECS: i64 = 60 * 60;
/// A lexicon document is small; this bounds what a publisher can make us read.
const MAX_LEXICON_BYTES: usize = 256 * 1024;

/// Fetches the permission sets `scope` includes that are neither embedded nor
/// freshly fetched. Failures are logged: the scope's parse then names the set.
pub(crate) async fn fetch_included(ctx: &AppState, scope: &str) {
    let now = crate::storage::unix_now();
    for nsid in included(scope) {
        if ctx.lexicons.def(&nsid, "").is_some()
            || ctx
                .oauth
                .remote_set_fetched(&nsid)
                .is_some_and(|at| now - at < FRESH_SECS)
        {
            continue;
        }
        match fetch(ctx, &nsid).await {
            Ok(def) => ctx.oauth.put_remote_set(&nsid, def, now),
            Err(why) => tracing::info!(%nsid, "permission set not fetched: {why}"),
        }
    }
}

/// The NSIDs of a scope's `include:` entries.
fn included(scope: &str) -> Vec<String> {
    scope
        .split(' ')
        .filter_map(|s| s.strip_prefix("include:"))
        .map(|s| s.split('?').next().unwrap_or_default().to_owned())
        .filter(|n| Nsid::new(n.as_str()).is_ok())
        .collect()
}

/// `_lexicon.<authority>` for an NSID: `com.example.authBasic` → `_lexicon.example.com`.
fn dns_name(nsid: &str) -> String {
    let mut authority: Vec<&str> = nsid.split('.').collect();
    authority.pop();
    authority.reverse();
    format!("_lexicon.{}", authority.join("."))
}

/// The `main` definition of the permission set `nsid`, from its publisher.
async fn fetch(ctx: &AppState, nsid: &str) -> Result<Value, String> {
    let name = dns_name(nsid);
    let did: Did = ctx
        .resolver
        .txt_did(&name)
        .await
        .ok_or_else(|| format!("no did= TXT record at {name}"))?;
    let doc = ctx
        .resolver
        .resolve_did(&did)
        .await
        .map_err(|e| format!("{did}: {e}"))?;
    let pds = doc
        .pds_endpoint()
        .ok_or_else(|| format!("{did} names no PDS"))?;
    let url = format!(
        "{}/xrpc/com.atproto.repo.getRecord?repo={did}&collection=com.atproto.lexicon.schema&rkey={nsid}",
        pds.trim_end_matches('/')
    );
    let body = ctx
        .outbound
        .get_capped(&url, MAX_LEXICON_BYTES, Duration::from_secs(10))
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let record: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
    let lexicon = &record["value"];
    if lexicon["id"] != nsid {
        return Err(format!("the record at {url} is not the lexicon {nsid}"));
    }
    let main = &lexicon["defs"]["main"];
    if main["type"] != "permission-set" {
        return Err(format!("{nsid} is not a permission set"));
    }
    Ok(main.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_is_found_under_its_authority() {
        assert_eq!(dns_name("com.example.authBasic"), "_lexicon.example.com");
        assert_eq!(dns_name("app.bsky.feed.authFull"), "_lexicon.feed.bsky.app");
        assert_eq!(
            included("atproto include:com.example.auth?aud=did:web:x#y repo:app.bsky.feed.post include:bad"),
            vec!["com.example.auth".to_owned()]
        );
    }
}
