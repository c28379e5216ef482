//! The account page (issue 14, Deliver 6), used as a person would with a browser that
//! keeps cookies: sign in, see and revoke an OAuth app, create and revoke an app
//! password, sign a password session out, change the password, sign out; and the
//! refusals (no CSRF token, another browser acting for an account it did not sign in
//! to, an app password used to sign in, a wrong current password).

use super::oauth::App;
use crate::common;
use common::api::Api;
use common::inproc;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;

/// A browser: cookies kept between requests, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, res: reqwest::Response) -> (StatusCode, String, String) {
        for c in res.headers().get_all("set-cookie") {
            let first = c.to_str().unwrap().split(';').next().unwrap();
            let (k, v) = first.split_once('=').unwrap();
            self.cookies.insert(k.to_owned(), v.to_owned());
        }
        let csp = res
            .headers()
            .get("content-security-policy")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (res.status(), csp, res.text().await.unwrap())
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, _, html) = self.keep(res).await;
        (status, html)
    }

    /// Posts a form of the last page: its CSRF token is taken from `page`.
    async fn post(&mut self, page: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let csrf = field(page, "csrf");
        let mut form: Vec<(&str, &str)> = vec![("csrf", &csrf)];
        form.extend_from_slice(fields);
        let res = self
            .http
            .post(format!("{}/account", self.base))
            .header("cookie", self.cookie_header())
            .form(&form)
            .send()
            .await
            .unwrap();
        let (status, _, html) = self.keep(res).await;
        (status, html)
    }
}

/// The value of the first hidden field `name` in `html` (empty if none).
fn field(html: &str, name: &str) -> String {
    html.split(&format!("name=\"{name}\" value=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_account_page_shows_and_ends_what_is_signed_in() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, _, _) = api.account("page.test").await;
    let mut b = Browser::new(&atbox.url);

    // The sign-in form, under the strict CSP.
    let res = b
        .http
        .get(format!("{}/account", atbox.url))
        .send()
        .await
        .unwrap();
    let (status, csp, page) = b.keep(res).await;
    assert_eq!(status, StatusCode::OK);
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert!(page.contains("id=\"sign-in\""), "{page}");

    // Refused: a form without the CSRF token; a wrong password.
    let res = b
        .http
        .post(format!("{}/account", atbox.url))
        .header("cookie", b.cookie_header())
        .form(&[
            ("action", "sign-in"),
            ("identifier", "page.test"),
            ("password", "correct horse"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let wrong = [
        ("action", "sign-in"),
        ("identifier", "page.test"),
        ("password", "nope"),
    ];
    let (status, html) = b.post(&page, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Wrong handle or password."), "{html}");

    // Signed in: the account, with nothing signed in yet but this test's createAccount.
    let good = [
        ("action", "sign-in"),
        ("identifier", "page.test"),
        ("password", "correct horse"),
    ];
    let (status, page) = b.post(&page, &good).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("@page.test") && page.contains("No app is signed in with OAuth."));
    assert!(b.cookies.contains_key("atbox-device"));

    // An OAuth app signs in: it is listed with what it may do; revoking it stops its
    // access token at once.
    let mut app = App::new(&atbox.url, "page.test").await;
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let code = app.code(verifier).await;
    let (_, tokens) = app.exchange(&code, verifier).await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let proof = app.proof("GET", "/xrpc/com.atproto.server.getSession", Some(&token));
    let (status, _) = app
        .xrpc("com.atproto.server.getSession", &token, Some(proof))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = b.get("/account").await;
    let grant = field(&page, "grant");
    assert!(
        !grant.is_empty() && page.contains("What it may do"),
        "{page}"
    );

    // Another browser cannot act for this account.
    let mut stranger = Browser::new(&atbox.url);
    let (_, their_page) = stranger.get("/account").await;
    let (status, html) = stranger
        .post(
            &their_page,
            &[
                ("account", &did),
                ("action", "revoke-app"),
                ("grant", &grant),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Sign in to this account first."));

    let (status, page) = b
        .post(
            &page,
            &[
                ("account", &did),
                ("action", "revoke-app"),
                ("grant", &grant),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("The app is signed out.") && page.contains("No app is signed in with OAuth.")
    );
    let proof = app.proof("GET", "/xrpc/com.atproto.server.getSession", Some(&token));
    let (status, _) = app
        .xrpc("com.atproto.server.getSession", &token, Some(proof))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An app password: created (shown once), works, is listed with its session, which
    // can be signed out; revoked, it no longer signs in.
    let create = [
        ("account", did.as_str()),
        ("action", "create-app-password"),
        ("name", "phone"),
    ];
    let (_, page) = b.post(&page, &create).await;
    let secret = page
        .split("id=\"new-app-password\">")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .unwrap()
        .to_owned();
    let (s, session) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "page.test", "password": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{session}");
    let (_, page) = b.get("/account").await;
    assert!(page.contains("App password “phone”"), "{page}");
    // The session row of the app password (the account's own createAccount session is
    // listed too): its form follows its label.
    let phone_session = field(
        page.split("App password “phone”").nth(1).unwrap(),
        "session",
    );
    let (_, page) = b
        .post(
            &page,
            &[
                ("account", &did),
                ("action", "end-session"),
                ("session", &phone_session),
            ],
        )
        .await;
    assert!(page.contains("That session is signed out."), "{page}");
    let refresh = session["refreshJwt"].as_str().unwrap();
    let (s, _) = api
        .post(
            "com.atproto.server.refreshSession",
            Some(refresh),
            json!(null),
        )
        .await;
    assert_ne!(s, StatusCode::OK);
    let (_, page) = b
        .post(
            &page,
            &[
                ("account", &did),
                ("action", "revoke-app-password"),
                ("name", "phone"),
            ],
        )
        .await;
    assert!(page.contains("No app passwords."), "{page}");
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "page.test", "password": secret}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // The password: the current one is asked again; then the new one is the one.
    let mut page = page;
    for (current, new, again, expect) in [
        (
            "wrong",
            "new horse battery",
            "new horse battery",
            "The current password is not right.",
        ),
        (
            "correct horse",
            "new horse battery",
            "other",
            "The new passwords are not the same.",
        ),
        (
            "correct horse",
            "new horse battery",
            "new horse battery",
            "Password changed.",
        ),
    ] {
        let form = [
            ("account", did.as_str()),
            ("action", "change-password"),
            ("current", current),
            ("new", new),
            ("again", again),
        ];
        let (_, next) = b.post(&page, &form).await;
        assert!(next.contains(expect), "{next}");
        page = next;
    }
    api.login("page.test", "new horse battery").await;
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "page.test", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Signed out on this browser: back to the sign-in form.
    let (_, page) = b
        .post(&page, &[("account", &did), ("action", "sign-out")])
        .await;
    assert!(page.contains("id=\"sign-in\""));
    let (_, page) = b.get("/account").await;
    assert!(
        page.contains("id=\"sign-in\"") && !page.contains("@page.test"),
        "{page}"
    );
}

#[tokio::test]
async fn the_account_page_refuses_an_app_password() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (_, access, _) = api.account("apppw.test").await;
    let (_, v) = api
        .post(
            "com.atproto.server.createAppPassword",
            Some(&access),
            json!({"name": "x"}),
        )
        .await;
    let secret = v["password"].as_str().unwrap();
    let mut b = Browser::new(&atbox.url);
    let (_, page) = b.get("/account").await;
    let (status, html) = b
        .post(
            &page,
            &[
                ("action", "sign-in"),
                ("identifier", "apppw.test"),
                ("password", secret),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("That is an app password."), "{html}");
    assert!(!b.cookies.contains_key("atbox-device"));
}
