//! Who an app is. atproto apps are not registered in advance: the `client_id` is the
//! URL of the app's client metadata document, fetched here (public addresses only, no
//! redirects, at most 64 KiB within 10 s, cached 10 minutes) and checked as the spec
//! says. `http://localhost?redirect_uri=…&scope=…` is the loopback development client:
//! its metadata comes from the id itself. Apps with keys (`private_key_jwt`) prove
//! themselves with a signed assertion at PAR and at the token endpoint.

use super::{OAuthError, OAuthResult};
use crate::auth::oauth::ClientAuth;
use crate::pds::Ctx;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const METADATA_CAP: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const CACHE_SECS: i64 = 10 * 60;
const CACHE_ENTRIES: usize = 256;
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long a client assertion may claim to live.
const ASSERTION_MAX_AGE_SECS: i64 = 60;

/// A checked client.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub id: String,
    /// What the consent page calls it: `client_name`, else the host.
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scope: String,
    /// Its public keys when it authenticates with `private_key_jwt`.
    pub keys: Option<Vec<Value>>,
}

impl Client {
    /// The redirect URI a request names, checked against the registered ones (exact,
    /// except a loopback IP's port, RFC 8252 §7.3); none named is fine when only one is
    /// registered.
    pub fn redirect_uri(&self, asked: Option<&str>) -> OAuthResult<String> {
        let Some(asked) = asked else {
            return match self.redirect_uris.as_slice() {
                [one] => Ok(one.clone()),
                _ => Err(OAuthError::invalid_request("redirect_uri is required")),
            };
        };
        if self
            .redirect_uris
            .iter()
            .any(|r| redirect_matches(r, asked))
        {
            Ok(asked.to_owned())
        } else {
            Err(OAuthError::invalid_request(format!(
                "redirect_uri {asked} is not one this client registered"
            )))
        }
    }

    pub fn is_confidential(&self) -> bool {
        self.keys.is_some()
    }
}

fn redirect_matches(registered: &str, asked: &str) -> bool {
    if registered == asked {
        return true;
    }
    let (Ok(r), Ok(a)) = (url::Url::parse(registered), url::Url::parse(asked)) else {
        return false;
    };
    let loopback = matches!(r.host_str(), Some("127.0.0.1" | "[::1]"));
    loopback
        && r.port().is_none()
        && r.scheme() == a.scheme()
        && r.host_str() == a.host_str()
        && r.path() == a.path()
        && r.query() == a.query()
        && a.fragment().is_none()
}

/// The client for `client_id`.
pub(crate) async fn resolve(ctx: &Ctx, client_id: &str) -> OAuthResult<Client> {
    if client_id.len() > 2048 {
        return Err(OAuthError::new("invalid_client", "client_id is too long"));
    }
    if client_id == "http://localhost"
        || client_id.starts_with("http://localhost?")
        || client_id.starts_with("http://localhost/")
    {
        return loopback(client_id);
    }
    let doc = fetch(ctx, client_id).await?;
    let mut client = validate(client_id, &doc)?;
    if client.keys.is_none() && doc["token_endpoint_auth_method"] == "private_key_jwt" {
        let uri = doc["jwks_uri"].as_str().unwrap_or_default();
        let body = ctx
            .outbound
            .get_capped(uri, METADATA_CAP, FETCH_TIMEOUT)
            .await
            .map_err(|e| OAuthError::new("invalid_client_metadata", format!("jwks_uri: {e}")))?;
        let jwks: Value = serde_json::from_slice(&body)
            .map_err(|_| OAuthError::new("invalid_client_metadata", "jwks_uri is not JSON"))?;
        client.keys = Some(keys_of(&jwks)?);
    }
    Ok(client)
}

/// The loopback development client (`http://localhost`, no port or path), whose
/// redirect URIs must be loopback IPs over http.
fn loopback(client_id: &str) -> OAuthResult<Client> {
    let bad = |why: &str| OAuthError::new("invalid_client", format!("loopback client_id: {why}"));
    let url = url::Url::parse(client_id).map_err(|_| bad("not a URL"))?;
    if url.port().is_some() || !matches!(url.path(), "" | "/") || url.fragment().is_some() {
        return Err(bad("must be http://localhost with no port or path"));
    }
    let mut redirect_uris = Vec::new();
    let mut scope = None;
    for (k, v) in url.query_pairs() {
        match &*k {
            "redirect_uri" => redirect_uris.push(v.into_owned()),
            "scope" => scope = Some(v.into_owned()),
            _ => return Err(bad("only redirect_uri and scope may be given")),
        }
    }
    if redirect_uris.is_empty() {
        redirect_uris = vec!["http://127.0.0.1/".into(), "http://[::1]/".into()];
    }
    for r in &redirect_uris {
        let u = url::Url::parse(r).map_err(|_| bad("a redirect_uri is not a URL"))?;
        if u.scheme() != "http" || !matches!(u.host_str(), Some("127.0.0.1" | "[::1]")) {
            return Err(bad(
                "redirect URIs must be http://127.0.0.1 or http://[::1]",
            ));
        }
    }
    Ok(Client {
        id: client_id.to_owned(),
        name: "A development app on this computer (loopback)".into(),
        redirect_uris,
        scope: scope.unwrap_or_else(|| "atproto".into()),
        keys: None,
    })
}

/// The client metadata document, from the cache or fetched.
async fn fetch(ctx: &Ctx, client_id: &str) -> OAuthResult<Value> {
    let bad = |why: String| OAuthError::new("invalid_client", why);
    let url = url::Url::parse(client_id).map_err(|_| bad("client_id is not a URL".into()))?;
    // https only; plain http only where the owner allowed private addresses (a test
    // or development box), never on a box facing the internet with defaults.
    let http_ok = ctx.config.proxy_allow_private && url.scheme() == "http";
    if (url.scheme() != "https" && !http_ok)
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || matches!(url.path(), "" | "/")
    {
        return Err(bad(
            "client_id must be an https URL with a path (the client metadata document)".into(),
        ));
    }
    let now = crate::storage::unix_now();
    {
        let cache = ctx.oauth_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, doc)) = cache.get(client_id) {
            if now - at < CACHE_SECS {
                return Ok(doc.clone());
            }
        }
    }
    let body = ctx
        .outbound
        .get_capped(client_id, METADATA_CAP, FETCH_TIMEOUT)
        .await
        .map_err(|e| bad(format!("could not fetch the client metadata: {e}")))?;
    let doc: Value = serde_json::from_slice(&body).map_err(|_| {
        OAuthError::new("invalid_client_metadata", "the client metadata is not JSON")
    })?;
    let mut cache = ctx.oauth_clients.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= CACHE_ENTRIES {
        cache.retain(|_, (at, _)| now - *at < CACHE_SECS);
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
    }
    cache.insert(client_id.to_owned(), (now, doc.clone()));
    Ok(doc)
}

/// Checks a client metadata document as the atproto profile requires.
fn validate(client_id: &str, doc: &Value) -> OAuthResult<Client> {
    let bad = |why: &str| OAuthError::new("invalid_client_metadata", why.to_owned());
    if doc["client_id"].as_str() != Some(client_id) {
        return Err(bad(
            "the document's client_id is not the URL it was fetched from",
        ));
    }
    if doc["dpop_bound_access_tokens"] != true {
        return Err(bad("dpop_bound_access_tokens must be true"));
    }
    let scope = doc["scope"].as_str().unwrap_or_default();
    if !scope.split(' ').any(|s| s == "atproto") {
        return Err(bad("the scope must include atproto"));
    }
    let has = |field: &str, want: &str| {
        doc[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == want))
    };
    if !has("grant_types", "authorization_code") {
        return Err(bad("grant_types must include authorization_code"));
    }
    if !has("response_types", "code") {
        return Err(bad("response_types must include code"));
    }
    let client_host = url::Url::parse(client_id)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    let native = match doc["application_type"].as_str().unwrap_or("web") {
        "web" => false,
        "native" => true,
        _ => return Err(bad("application_type must be web or native")),
    };
    let redirect_uris: Vec<String> = doc["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err(bad("redirect_uris must list at least one URI"));
    }
    for r in &redirect_uris {
        check_redirect(r, native, &client_host).map_err(|why| bad(&why))?;
    }
    let keys = match doc["token_endpoint_auth_method"].as_str() {
        Some("none") => None,
        Some("private_key_jwt") => {
            if doc["token_endpoint_auth_signing_alg"].as_str() != Some("ES256") {
                return Err(bad("token_endpoint_auth_signing_alg must be ES256"));
            }
            match (&doc["jwks"], doc["jwks_uri"].as_str()) {
                (Value::Object(_), None) => Some(keys_of(&doc["jwks"])?),
                (Value::Null, Some(_)) => None, // fetched by the caller
                _ => return Err(bad("private_key_jwt needs jwks or jwks_uri (one of them)")),
            }
        }
        _ => {
            return Err(bad(
                "token_endpoint_auth_method must be none or private_key_jwt",
            ))
        }
    };
    let name = doc["client_name"]
        .as_str()
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.chars().take(80).collect())
        .unwrap_or_else(|| client_host.clone());
    Ok(Client {
        id: client_id.to_owned(),
        name,
        redirect_uris,
        scope: scope.to_owned(),
        keys,
    })
}

/// Redirect URIs by application type: web apps return to https pages; native apps to
/// a custom scheme named after their domain (`com.example.app:/cb` for
/// `app.example.com`), an https page, or a loopback IP.
fn check_redirect(uri: &str, native: bool, client_host: &str) -> Result<(), String> {
    let u = url::Url::parse(uri).map_err(|_| format!("redirect URI {uri} is not a URL"))?;
    if u.fragment().is_some() {
        return Err(format!("redirect URI {uri} has a fragment"));
    }
    match u.scheme() {
        "https" => Ok(()),
        "http" if matches!(u.host_str(), Some("127.0.0.1" | "[::1]")) && native => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri}: http only for a native app's loopback IP"
        )),
        scheme if native => {
            let reversed: Vec<&str> = client_host.split('.').rev().collect();
            if scheme.contains('.')
                && reversed.join(".") == scheme
                && uri.starts_with(&format!("{scheme}:/"))
                && !uri.starts_with(&format!("{scheme}://"))
            {
                Ok(())
            } else {
                Err(format!("redirect URI {uri}: a native app's custom scheme must be its domain reversed ({}:/…)", reversed.join(".")))
            }
        }
        _ => Err(format!(
            "redirect URI {uri}: a web app returns to https pages"
        )),
    }
}

fn keys_of(jwks: &Value) -> OAuthResult<Vec<Value>> {
    let keys: Vec<Value> = jwks["keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|k| k["kty"] == "EC" && k["crv"] == "P-256" && k.get("d").is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if keys.is_empty() {
        return Err(OAuthError::new(
            "invalid_client_metadata",
            "the client's jwks has no P-256 public key",
        ));
    }
    Ok(keys)
}

/// Authenticates the client at PAR or the token endpoint: public clients send no
/// assertion; confidential ones a fresh ES256 assertion (RFC 7523) signed by one of
/// their keys, naming this server, used once.
pub(crate) fn authenticate(
    ctx: &Ctx,
    client: &Client,
    form: &HashMap<String, String>,
) -> OAuthResult<ClientAuth> {
    let bad = |why: &str| OAuthError::new("invalid_client", why.to_owned());
    let assertion = form.get("client_assertion");
    let Some(keys) = &client.keys else {
        if assertion.is_some() {
            return Err(bad(
                "this client is public: it cannot send client_assertion",
            ));
        }
        return Ok(ClientAuth::None);
    };
    if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
        return Err(bad("this client must authenticate with private_key_jwt"));
    }
    let assertion = assertion.ok_or_else(|| bad("client_assertion is required"))?;
    let header =
        jsonwebtoken::decode_header(assertion).map_err(|_| bad("client_assertion is not a JWT"))?;
    if header.alg != jsonwebtoken::Algorithm::ES256 {
        return Err(bad("client_assertion must be ES256"));
    }
    let kid = header.kid.clone().unwrap_or_default();
    let key = keys
        .iter()
        .find(|k| k["kid"].as_str().unwrap_or_default() == kid)
        .ok_or_else(|| bad("client_assertion is signed with a key the client did not publish"))?;
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(
        key["x"].as_str().unwrap_or_default(),
        key["y"].as_str().unwrap_or_default(),
    )
    .map_err(|_| bad("the client's key is not valid"))?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud", "iat", "jti"]);
    v.set_issuer(&[&client.id]);
    let iss = super::issuer(ctx).to_owned();
    v.set_audience(&[
        iss.clone(),
        format!("{iss}/oauth/token"),
        format!("{iss}/oauth/par"),
    ]);
    v.leeway = 5;
    let claims = jsonwebtoken::decode::<Value>(assertion, &decoding, &v)
        .map_err(|e| bad(&format!("client_assertion refused: {e}")))?
        .claims;
    let now = crate::storage::unix_now();
    if claims["sub"].as_str() != Some(client.id.as_str()) {
        return Err(bad("client_assertion's sub must be the client_id"));
    }
    let iat = claims["iat"].as_i64().unwrap_or(0);
    if iat < now - ASSERTION_MAX_AGE_SECS || iat > now + 5 {
        return Err(bad("client_assertion is too old"));
    }
    let jti = claims["jti"].as_str().unwrap_or_default();
    let exp = claims["exp"]
        .as_i64()
        .unwrap_or(0)
        .min(now + ASSERTION_MAX_AGE_SECS);
    ctx.service_jtis
        .first_use_key(&format!("client:{}:{jti}", client.id), exp, now)
        .map_err(|e| bad(&format!("client_assertion: {e}")))?;
    Ok(ClientAuth::PrivateKeyJwt { kid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_any_port_and_nothing_else() {
        let c = loopback("http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&scope=atproto%20transition%3Ageneric").unwrap();
        assert_eq!(c.scope, "atproto transition:generic");
        assert!(c
            .redirect_uri(Some("http://127.0.0.1:5123/callback"))
            .is_ok());
        assert!(c.redirect_uri(Some("http://127.0.0.1:5123/other")).is_err());
        assert!(c
            .redirect_uri(Some("http://localhost:5123/callback"))
            .is_err());
        assert!(loopback("http://localhost:8080").is_err());
        assert!(loopback("http://localhost?redirect_uri=https%3A%2F%2Fevil.example%2F").is_err());
    }

    #[test]
    fn metadata_documents_are_checked_as_the_profile_requires() {
        let id = "https://app.example.com/client-metadata.json";
        let good = serde_json::json!({
            "client_id": id, "client_name": "Example",
            "redirect_uris": ["https://app.example.com/cb"],
            "scope": "atproto transition:generic", "dpop_bound_access_tokens": true,
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "token_endpoint_auth_method": "none", "application_type": "web"
        });
        assert_eq!(validate(id, &good).unwrap().name, "Example");
        let with = |k: &str, v: Value| {
            let mut d = good.clone();
            d[k] = v;
            validate(id, &d)
        };
        assert!(with("client_id", "https://other.example/c.json".into()).is_err());
        assert!(with("dpop_bound_access_tokens", false.into()).is_err());
        assert!(with("scope", "transition:generic".into()).is_err());
        assert!(with(
            "redirect_uris",
            serde_json::json!(["http://app.example.com/cb"])
        )
        .is_err());
        assert!(with("token_endpoint_auth_method", "client_secret_basic".into()).is_err());
        let mut native = good.clone();
        native["application_type"] = "native".into();
        native["redirect_uris"] =
            serde_json::json!(["com.example.app:/callback", "http://127.0.0.1/cb"]);
        assert!(validate(id, &native).is_ok());
        native["redirect_uris"] = serde_json::json!(["com.evil.app:/callback"]);
        assert!(validate(id, &native).is_err());
    }
}
