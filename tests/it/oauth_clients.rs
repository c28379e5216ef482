//! OAuth with the official clients (issue 14), each signing in through atbox's pages
//! in a real browser (Debian's chromium) and using the session: the Node client as a
//! loopback app and as a confidential web app (`private_key_jwt`), and the browser
//! client in a page served on 127.0.0.1.

use crate::common;
use common::api::Api;
use common::inproc;

/// The arguments of the OAuth scripts: the box, its PLC directory, the account
/// (password "correct horse") and any `extra`.
fn script_args(pds: &str, plc: &str, handle: &str, extra: &[&str]) -> Vec<String> {
    let common = ["--pds", pds, "--plc", plc, "--handle", handle];
    let password = ["--password", "correct horse"];
    common
        .iter()
        .chain(&password)
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

#[tokio::test]
async fn the_official_oauth_client_signs_in_through_the_pages_and_uses_the_session() {
    // A real PLC directory stand-in and an AppView stand-in that checks the service
    // auth of each proxied call against the account's DID document.
    let inproc::WithAppView {
        atbox,
        plc,
        appview,
    } = inproc::start_with_appview(&[]).await;
    let api = Api::at(&atbox.url);
    api.account("oauth.test").await;
    let shots = tempfile::tempdir().unwrap();
    let shots_dir = shots.path().display().to_string();
    let args = script_args(
        &atbox.url,
        &plc.url,
        "oauth.test",
        &["--screenshots", &shots_dir],
    );
    let (ok, out) = common::run_node_async("oauth-flow.mjs", args).await;
    assert!(ok, "{out}");
    assert_eq!(out["wrongPassword"], "Wrong handle or password.");
    // The proxied app.bsky call reached the AppView with the account's service auth.
    let log: serde_json::Value = reqwest::get(format!("{}/_standin/log", appview.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let proxied = log["requests"].as_array().unwrap();
    assert!(
        proxied
            .iter()
            .any(|r| r["nsid"] == "app.bsky.actor.getProfile"
                && r["jwt"]["claims"]["iss"] == out["sub"]),
        "{log}"
    );
    assert!(
        out["consent"][0].as_str().unwrap().contains("app password"),
        "{out}"
    );
}

/// A confidential web app: the official client with an ES256 key (`private_key_jwt`),
/// its client metadata and JWKS served over HTTPS as `client.example` (a name the
/// box's DNS server resolves to this machine, with a certificate of a CA the box is
/// told to trust), signs in through the pages and uses the session.
#[tokio::test]
async fn a_confidential_client_signs_in_with_private_key_jwt() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let dns = common::server::start_dns();
    dns.set(
        "add-a",
        serde_json::json!({"host": "client.example.", "addresses": ["127.0.0.1"]}),
    );

    let ca_path = dir.path().join("ca.pem").display().to_string();
    // client.example is 127.0.0.1 here (proxying to private addresses is allowed).
    let inproc::WithAppView {
        atbox,
        plc,
        appview: _appview,
    } = inproc::start_with_appview(&[
        ("ATBOX_DNS_SERVER", &dns.addr),
        ("ATBOX_OUTBOUND_CA_BUNDLE", &ca_path),
    ])
    .await;
    Api::at(&atbox.url).account("conf.test").await;
    let cert_dir = dir.path().display().to_string();
    let args = script_args(
        &atbox.url,
        &plc.url,
        "conf.test",
        &["--confidential", &cert_dir],
    );
    let (ok, out) = common::run_node_async("oauth-flow.mjs", args).await;
    assert!(ok, "{out}");
    assert_eq!(out["appName"], "Allow Confidential test app?");
    // The box read the app's metadata and its keys (to check its client assertions).
    assert!(out["served"]["metadata"].as_u64().unwrap() >= 1, "{out}");
    assert!(out["served"]["jwks"].as_u64().unwrap() >= 1, "{out}");
}

#[tokio::test]
async fn a_browser_app_signs_in_with_the_official_browser_client() {
    let plc = common::server::start_plc();
    let atbox = inproc::start(&[("ATBOX_PLC_URL", &plc.url)]).await;
    Api::at(&atbox.url).account("browser.test").await;
    let args = [
        "--pds",
        &atbox.url,
        "--plc",
        &plc.url,
        "--handle",
        "browser.test",
    ];
    let mut args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    args.extend(["--password".into(), "correct horse".into()]);
    let (ok, out) = common::run_node_async("oauth-browser.mjs", args).await;
    assert!(ok, "{out}");
    assert_eq!(out["handle"], "browser.test");
    assert_eq!(out["state"], "browser-app-state");
    assert_eq!(out["recordsAfterRefresh"], 1);
}
