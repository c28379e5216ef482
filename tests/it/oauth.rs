//! OAuth (issue 14): every way of cheating the flow that the issue names is refused,
//! driven here with hand-made DPoP proofs (the official clients are in
//! `oauth_clients`). [`App`] is such a hand-made app, also used by `account_page`.

use crate::common;
use common::api::Api;
use common::inproc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const LOOPBACK_REDIRECT: &str = "http://127.0.0.1/callback";

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn b64_sha256(s: &str) -> String {
    B64.encode(Sha256::digest(s.as_bytes()))
}

/// An app with its DPoP key, as the official client is one, signing `handle` in.
pub(crate) struct App {
    key: SigningKey,
    http: reqwest::Client,
    base: String,
    nonce: String,
    handle: String,
    /// What the app asks for (its loopback client_id declares it).
    pub(crate) scope: String,
}

impl App {
    pub(crate) fn client_id(&self) -> String {
        format!(
            "http://localhost?redirect_uri={}&scope={}",
            urlencode(LOOPBACK_REDIRECT),
            urlencode(&self.scope)
        )
    }

    pub(crate) async fn new(base: &str, handle: &str) -> App {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut app = App {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            http,
            base: base.to_owned(),
            nonce: String::new(),
            handle: handle.to_owned(),
            scope: "atproto transition:generic".to_owned(),
        };
        // The first proof has no nonce: the server answers use_dpop_nonce with one.
        let (status, body) = app.post("/oauth/par", &[("client_id", "x")]).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("use_dpop_nonce"))
        );
        assert!(!app.nonce.is_empty());
        app
    }

    fn proof_with(&self, htm: &str, path: &str, ath: Option<&str>, iat: i64, jti: &str) -> String {
        let point = self.key.verifying_key().to_encoded_point(false);
        let jwk = json!({"kty": "EC", "crv": "P-256",
            "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap())});
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
        let mut claims =
            json!({"jti": jti, "htm": htm, "htu": format!("{}{path}", self.base), "iat": iat});
        if !self.nonce.is_empty() {
            claims["nonce"] = self.nonce.clone().into();
        }
        if let Some(token) = ath {
            claims["ath"] = b64_sha256(token).into();
        }
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }

    pub(crate) fn proof(&self, htm: &str, path: &str, ath: Option<&str>) -> String {
        let jti = format!("{:x}", rand::random::<u128>());
        self.proof_with(htm, path, ath, now(), &jti)
    }

    async fn post_with(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        proof: String,
    ) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("dpop", proof)
            .form(form)
            .send()
            .await
            .unwrap();
        if let Some(n) = res.headers().get("dpop-nonce") {
            self.nonce = n.to_str().unwrap().to_owned();
        }
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let proof = self.proof("POST", path, None);
        self.post_with(path, form, proof).await
    }

    /// A pushed request with these parameters on top of good ones.
    async fn par(&mut self, extra: &[(&str, &str)], verifier: &str) -> (StatusCode, Value) {
        let challenge = b64_sha256(verifier);
        let cid = self.client_id();
        let scope = self.scope.clone();
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", &cid),
            ("response_type", "code"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("redirect_uri", "http://127.0.0.1:4321/callback"),
            ("scope", &scope),
            ("state", "s1"),
        ];
        for (k, v) in extra {
            form.retain(|(f, _)| f != k);
            if !v.is_empty() {
                form.push((k, v));
            }
        }
        self.post("/oauth/par", &form).await
    }

    /// The person signs in and allows: the code from the redirect.
    async fn approve(&self, request_uri: &str, password: &str) -> Result<String, String> {
        let page = self
            .http
            .get(format!("{}/oauth/authorize", self.base))
            .query(&[
                ("client_id", self.client_id().as_str()),
                ("request_uri", request_uri),
            ])
            .send()
            .await
            .unwrap();
        let cookie = page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = page.text().await.unwrap();
        let csrf = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_owned();
        let form = [
            ("request_uri", request_uri),
            ("csrf", &csrf),
            ("identifier", &self.handle),
            ("password", password),
        ];
        let res = self
            .http
            .post(format!("{}/oauth/authorize/sign-in", self.base))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        if res.status() != StatusCode::OK {
            return Err(format!("sign-in: {}", res.status()));
        }
        let form = [
            ("request_uri", request_uri),
            ("csrf", &csrf),
            ("decision", "allow"),
        ];
        let res = self
            .http
            .post(format!("{}/oauth/authorize/consent", self.base))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let url = url::Url::parse(&location).unwrap();
        let code = url
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned());
        code.ok_or(location)
    }

    /// A pushed request, signed in and allowed: its code.
    pub(crate) async fn code(&mut self, verifier: &str) -> String {
        let (s, par) = self.par(&[], verifier).await;
        assert_eq!(s, StatusCode::CREATED, "{par}");
        self.approve(par["request_uri"].as_str().unwrap(), "correct horse")
            .await
            .unwrap()
    }

    /// Exchanges a code at the token endpoint.
    pub(crate) async fn exchange(&mut self, code: &str, verifier: &str) -> (StatusCode, Value) {
        let cid = self.client_id();
        let form = [
            ("client_id", cid.as_str()),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", "http://127.0.0.1:4321/callback"),
        ];
        self.post("/oauth/token", &form).await
    }

    pub(crate) async fn xrpc(
        &self,
        nsid: &str,
        token: &str,
        proof: Option<String>,
    ) -> (StatusCode, Option<String>) {
        let path = format!("/xrpc/{nsid}");
        let mut req = self.http.get(format!("{}{path}", self.base));
        req = match proof {
            Some(p) => req
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", p),
            None => req.bearer_auth(token),
        };
        let res = req.send().await.unwrap();
        let www = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status(), www)
    }

    /// A procedure call with a JSON body, DPoP-bound.
    pub(crate) async fn procedure(
        &self,
        nsid: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let path = format!("/xrpc/{nsid}");
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", self.proof("POST", &path, Some(token)))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn every_way_of_cheating_the_flow_is_refused() {
    let atbox = inproc::start(&[]).await;
    Api::at(&atbox.url).account("neg.test").await;
    let mut app = App::new(&atbox.url, "neg.test").await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let error = |r: &(StatusCode, Value)| r.1["error"].as_str().unwrap_or_default().to_owned();

    // PAR: no PKCE, a redirect URI the client did not register, a scope beyond its
    // metadata, a client metadata document at a private address.
    assert_eq!(
        error(&app.par(&[("code_challenge", "")], verifier).await),
        "invalid_request"
    );
    assert_eq!(
        error(
            &app.par(&[("code_challenge_method", "plain")], verifier)
                .await
        ),
        "invalid_request"
    );
    assert_eq!(
        error(
            &app.par(&[("redirect_uri", "https://evil.example/cb")], verifier)
                .await
        ),
        "invalid_request"
    );
    assert_eq!(
        error(
            &app.par(
                &[("scope", "atproto transition:generic transition:chat.bsky")],
                verifier
            )
            .await
        ),
        "invalid_scope"
    );
    assert_eq!(
        error(
            &app.par(
                &[("client_id", "https://127.0.0.1/client-metadata.json")],
                verifier
            )
            .await
        ),
        "invalid_client"
    );

    // DPoP at the authorization server: a replayed proof, an old one, no nonce.
    let cid = app.client_id();
    let proof = app.proof("POST", "/oauth/token", None);
    let form = [
        ("client_id", cid.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", "ref-x"),
    ];
    assert_eq!(
        error(&app.post_with("/oauth/token", &form, proof.clone()).await),
        "invalid_grant"
    );
    assert_eq!(
        error(&app.post_with("/oauth/token", &form, proof).await),
        "invalid_dpop_proof"
    );
    let old = app.proof_with("POST", "/oauth/token", None, now() - 600, "old");
    assert_eq!(
        error(&app.post_with("/oauth/token", &form, old).await),
        "invalid_dpop_proof"
    );
    let saved = std::mem::take(&mut app.nonce);
    let no_nonce = app.proof("POST", "/oauth/token", None);
    app.nonce = saved;
    assert_eq!(
        error(&app.post_with("/oauth/token", &form, no_nonce).await),
        "use_dpop_nonce"
    );

    // A wrong PKCE verifier burns the code.
    let code = app.code(verifier).await;
    let wrong = "the-wrong-verifier-the-wrong-verifier-the-wrong";
    assert_eq!(error(&app.exchange(&code, wrong).await), "invalid_grant");

    // A good exchange; the token works only as DPoP, with the right ath.
    let code = app.code(verifier).await;
    let (s, tokens) = app.exchange(&code, verifier).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "DPoP");
    assert!(tokens["sub"].as_str().unwrap().starts_with("did:plc:"));
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let path = "/xrpc/com.atproto.server.getSession";
    let good = app.proof("GET", path, Some(&access));
    assert_eq!(
        app.xrpc("com.atproto.server.getSession", &access, Some(good))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.xrpc("com.atproto.server.getSession", &access, None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let wrong_ath = app.proof("GET", path, Some("another token"));
    let (s, www) = app
        .xrpc("com.atproto.server.getSession", &access, Some(wrong_ath))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www.unwrap().starts_with("DPoP"));
    // What transition:generic does not grant: the account password's business.
    let p = app.proof(
        "GET",
        "/xrpc/com.atproto.server.getAccountInviteCodes",
        Some(&access),
    );
    assert_eq!(
        app.xrpc("com.atproto.server.getAccountInviteCodes", &access, Some(p))
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // The code again: refused, and the grant it made is revoked.
    assert_eq!(error(&app.exchange(&code, verifier).await), "invalid_grant");
    let p = app.proof("GET", path, Some(&access));
    let (s, www) = app
        .xrpc("com.atproto.server.getSession", &access, Some(p))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(www.unwrap().contains("invalid_token"));
    let form = [
        ("client_id", cid.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    assert_eq!(
        error(&app.post("/oauth/token", &form).await),
        "invalid_grant"
    );

    // Refresh rotation: the old refresh token, used again, revokes the grant.
    let code = app.code(verifier).await;
    let (_, tokens) = app.exchange(&code, verifier).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("client_id", cid.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", first.as_str()),
    ];
    let (s, rotated) = app.post("/oauth/token", &form).await;
    assert_eq!(s, StatusCode::OK, "{rotated}");
    assert_ne!(rotated["refresh_token"], first.as_str());
    let fresh = rotated["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        error(&app.post("/oauth/token", &form).await),
        "invalid_grant"
    );
    let p = app.proof("GET", path, Some(&fresh));
    assert_eq!(
        app.xrpc("com.atproto.server.getSession", &fresh, Some(p))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Revocation: the access token stops at once.
    let code = app.code(verifier).await;
    let (_, tokens) = app.exchange(&code, verifier).await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let res = app
        .http
        .post(format!("{}/oauth/revoke", app.base))
        .form(&[("token", access.as_str()), ("client_id", cid.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let p = app.proof("GET", path, Some(&access));
    assert_eq!(
        app.xrpc("com.atproto.server.getSession", &access, Some(p))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // A wrong password on the page is refused there.
    let (_, par) = app.par(&[], verifier).await;
    assert!(app
        .approve(par["request_uri"].as_str().unwrap(), "wrong password")
        .await
        .is_err());
}

/// `include:` of a permission set atbox does not carry: fetched from its publisher
/// (a `_lexicon` TXT record naming an account whose PDS holds the lexicon record),
/// and only its own namespace counts.
#[tokio::test]
async fn a_permission_set_is_fetched_from_its_publisher() {
    let dns = common::server::start_dns();
    let atbox = inproc::start(&[
        ("ATBOX_DNS_SERVER", &dns.addr),
        // The publisher's PDS is this box, on 127.0.0.1.
        ("ATBOX_PROXY_ALLOW_PRIVATE", "true"),
    ])
    .await;
    dns.set(
        "add-a",
        json!({"host": "localhost.", "addresses": ["127.0.0.1"]}),
    );
    let api = Api::at(&atbox.url);
    let (publisher, token, _) = api.account("publisher.test").await;
    let set = "com.example.perm.authPosts";
    let lexicon = json!({
        "$type": "com.atproto.lexicon.schema", "lexicon": 1, "id": set,
        "defs": {"main": {"type": "permission-set", "title": "Example posts",
            "permissions": [{"type": "permission", "resource": "repo",
                "collection": ["com.example.perm.post", "app.bsky.feed.post"]}]}}
    });
    let (s, v) = api
        .post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": publisher, "collection": "com.atproto.lexicon.schema",
                "rkey": set, "record": lexicon}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    dns.set(
        "set-txt",
        json!({"host": "_lexicon.perm.example.com.", "value": format!("did={publisher}")}),
    );

    let (user, _, _) = api.account("user.test").await;
    let mut app = App::new(&atbox.url, "user.test").await;
    app.scope = format!("atproto include:{set}");
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let code = app.code(verifier).await;
    let (s, tokens) = app.exchange(&code, verifier).await;
    assert_eq!(s, StatusCode::OK, "{tokens}");
    let token = tokens["access_token"].as_str().unwrap();
    let record = |collection: &str| {
        json!({"repo": user, "collection": collection,
            "record": {"$type": collection, "text": "hi", "createdAt": "2026-01-01T00:00:00Z"}})
    };
    let (s, v) = app
        .procedure(
            "com.atproto.repo.createRecord",
            token,
            record("com.example.perm.post"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The set also names app.bsky.feed.post, outside its namespace: not granted.
    let (s, v) = app
        .procedure(
            "com.atproto.repo.createRecord",
            token,
            record("app.bsky.feed.post"),
        )
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("ScopeMissingError")),
        "{v}"
    );

    // A set nobody publishes is refused at the pushed request.
    app.scope = "atproto include:com.example.nobody.authAll".to_owned();
    let (s, v) = app.par(&[], verifier).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_scope")),
        "{v}"
    );
}

/// A takedown ends the account's OAuth grants: the refresh token no longer works.
#[tokio::test]
async fn a_takedown_revokes_oauth_grants() {
    let atbox = inproc::start(&[("ATBOX_ADMIN_PASSWORD", "admin-secret")]).await;
    let (did, _, _) = Api::at(&atbox.url).account("down.test").await;
    let mut app = App::new(&atbox.url, "down.test").await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let code = app.code(verifier).await;
    let (_, tokens) = app.exchange(&code, verifier).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let takedown = json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did},
        "takedown": {"applied": true}});
    let res = app
        .http
        .post(format!(
            "{}/xrpc/com.atproto.admin.updateSubjectStatus",
            atbox.url
        ))
        .basic_auth("admin", Some("admin-secret"))
        .json(&takedown)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cid = app.client_id();
    let form = [
        ("client_id", cid.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (s, v) = app.post("/oauth/token", &form).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "{v}"
    );
}
