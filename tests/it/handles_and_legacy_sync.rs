//! Methods clients call around the main flows: `com.atproto.temp.checkHandleAvailability`
//! (the Bluesky app's sign-up form) and the deprecated `com.atproto.sync.getHead` /
//! `getCheckout` that older relays and tools still use.

use crate::common;

use atbox::repo::car::read_car;
use common::api::Api;
use common::inproc;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_availability_answers_with_usable_suggestions() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    api.account("alice.test").await;
    let check = |q: String| {
        let api = &api;
        async move {
            api.get("com.atproto.temp.checkHandleAvailability", &q)
                .await
        }
    };

    let (s, v) = check("handle=Bob.test".into()).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["handle"], "bob.test");
    assert_eq!(
        v["result"]["$type"],
        "com.atproto.temp.checkHandleAvailability#resultAvailable"
    );

    for taken in ["alice.test", "someone.example.com"] {
        let (s, v) = check(format!("handle={taken}&email=alice.smith@example.com")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["handle"], taken);
        assert_eq!(
            v["result"]["$type"],
            "com.atproto.temp.checkHandleAvailability#resultUnavailable"
        );
        let suggestions = v["result"]["suggestions"].as_array().unwrap();
        assert!(!suggestions.is_empty(), "{v}");
        assert!(
            suggestions.iter().any(|s| s["handle"] == "alicesmith.test"),
            "{v}"
        );
        for suggestion in suggestions {
            assert!(!suggestion["method"].as_str().unwrap().is_empty());
            let handle = suggestion["handle"].as_str().unwrap();
            assert!(handle.ends_with(".test"), "{v}");
            let (_, again) = check(format!("handle={handle}")).await;
            assert_eq!(
                again["result"]["$type"],
                "com.atproto.temp.checkHandleAvailability#resultAvailable",
                "suggested {handle} must be available"
            );
        }
    }

    let (s, v) = check("handle=carol.test&email=not-an-email".into()).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("InvalidEmail")),
        "{v}"
    );
    let (s, v) = check("handle=not%20a%20handle".into()).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{v}"
    );
    let (s, v) = check("email=a@b.test".into()).await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_sync_methods_answer_like_their_successors() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("dora.test").await;
    for i in 0..3 {
        let (s, v) = api.post_record(&did, &token, &format!("post {i}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, latest) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    let (s, head) = api
        .get("com.atproto.sync.getHead", &format!("did={did}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{head}");
    assert_eq!(head["root"], latest["cid"]);

    let checkout = api
        .get_bytes("com.atproto.sync.getCheckout", &format!("did={did}"))
        .await;
    let repo = api
        .get_bytes("com.atproto.sync.getRepo", &format!("did={did}"))
        .await;
    let (roots, blocks) = read_car(&checkout[..]).unwrap();
    assert_eq!(roots[0].to_string(), latest["cid"].as_str().unwrap());
    let (_, repo_blocks) = read_car(&repo[..]).unwrap();
    assert_eq!(blocks.len(), repo_blocks.len());

    let (s, v) = api
        .get(
            "com.atproto.sync.getHead",
            "did=did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
        )
        .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("RepoNotFound")),
        "{v}"
    );
    let (s, v) = api.get("com.atproto.sync.getCheckout", "").await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("InvalidRequest")),
        "{v}"
    );
}
