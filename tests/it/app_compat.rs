//! What the Bluesky app and the services behind it need from a PDS beyond the basic
//! calls (issue 15), driven as they drive it, against stand-ins on 127.0.0.1.

use crate::common;
use common::api::{assert_xrpc_error, Api};
use common::inproc;
use serde_json::json;

/// A method atbox does not serve reaches the default AppView (with the app's headers),
/// as the reference's catch-all sends it, instead of a 501.
#[tokio::test]
async fn unknown_methods_reach_the_appview_with_the_apps_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let appview = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0u8; 16384];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = seen_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = r#"{"answeredBy":"appview"}"#;
            let _ = s
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nretry-after: 7\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    let atbox = inproc::start(&[
        ("ATBOX_APPVIEW_URL", appview.as_str()),
        ("ATBOX_APPVIEW_DID", "did:web:appview.example"),
        ("ATBOX_PROXY_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let api = Api::at(&atbox.url);
    let (_, token, _) = api.account("app.test").await;
    let res = api
        .http
        .get(format!(
            "{}/xrpc/com.atproto.unspecced.somethingNew?x=1",
            api.base
        ))
        .bearer_auth(&token)
        .header("x-bsky-topics", "cats")
        .header("x-atproto-example", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["retry-after"], "7");
    let v: serde_json::Value = res.json().await.unwrap();
    assert_eq!(v["answeredBy"], "appview");
    let request = seen_rx.recv().await.unwrap().to_ascii_lowercase();
    assert!(
        request.starts_with("get /xrpc/com.atproto.unspecced.somethingnew?x=1"),
        "{request}"
    );
    assert!(request.contains("x-bsky-topics: cats"), "{request}");
    assert!(request.contains("x-atproto-example: yes"), "{request}");
    assert!(
        request.contains("authorization: bearer "),
        "a service token: {request}"
    );
}

/// A record over 1 MiB of DAG-CBOR is refused with 413 and the repo is untouched.
#[tokio::test]
async fn a_record_over_one_mebibyte_is_refused() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("big.test").await;
    let (_, before) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    // Many small strings: each is within the lexicon's limits, the whole is not.
    let filler: Vec<String> = (0..12_000).map(|i| format!("{i:0>90}")).collect();
    let record = json!({"$type": "com.example.big", "items": filler});
    let (s, v) = api
        .post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": did, "collection": "com.example.big", "record": record}),
        )
        .await;
    assert_xrpc_error(s, &v, 413, "PayloadTooLarge");
    let (_, after) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_eq!(before, after, "the repo did not move");
}

/// Posting a video: the app asks getServiceAuth for a token (`aud` this PDS, `lxm`
/// uploadBlob), the video service uploads the processed video with it. The token is
/// good for that method, this server and once; others are refused.
#[tokio::test]
async fn the_video_service_uploads_with_the_apps_service_token() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (_, token, _) = api.account("video.test").await;
    let (_, desc) = api.get("com.atproto.server.describeServer", "").await;
    let service_did = desc["did"].as_str().unwrap().to_owned();
    let exp = atbox::storage::unix_now() + 30 * 60;
    let mint = |aud: String, lxm: &'static str| {
        let (api, token) = (&api, token.clone());
        async move {
            let (s, v) = api
                .get_auth(
                    "com.atproto.server.getServiceAuth",
                    &format!("aud={aud}&lxm={lxm}&exp={exp}"),
                    &token,
                )
                .await;
            assert_eq!(s, 200, "{v}");
            v["token"].as_str().unwrap().to_owned()
        }
    };
    let video = [b"\x00\x00\x00\x18ftypmp42".to_vec(), vec![9u8; 4000]].concat();
    let upload = |service_token: String| {
        let (api, video) = (&api, video.clone());
        async move {
            api.post_bytes(
                "com.atproto.repo.uploadBlob",
                &service_token,
                "video/mp4",
                video,
            )
            .await
        }
    };
    let good = mint(service_did.clone(), "com.atproto.repo.uploadBlob").await;
    let (s, v) = upload(good.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["blob"]["mimeType"], "video/mp4", "{v}");
    let (s, v) = upload(good).await;
    assert_xrpc_error(s, &v, 401, "AuthRequired");
    let wrong_method = mint(service_did.clone(), "com.atproto.repo.createRecord").await;
    let (s, v) = upload(wrong_method).await;
    assert_xrpc_error(s, &v, 401, "AuthRequired");
    let wrong_audience = mint(
        "did:web:video.example".to_owned(),
        "com.atproto.repo.uploadBlob",
    )
    .await;
    let (s, v) = upload(wrong_audience).await;
    assert_xrpc_error(s, &v, 401, "AuthRequired");
}

/// A stand-in AppView on 127.0.0.1: answers getRecord with a feed generator record
/// naming `did:web:feedgen.example`, everything else with `{}`, and hands back each
/// request it saw.
async fn stand_in_appview() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen_tx, seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let seen_tx = seen_tx.clone();
            tokio::spawn(async move {
                let request = read_request(&mut s).await;
                let body = if request.starts_with("GET /xrpc/com.atproto.repo.getRecord") {
                    r#"{"uri":"at://did:plc:feedowner/app.bsky.feed.generator/cats","value":{"$type":"app.bsky.feed.generator","did":"did:web:feedgen.example","displayName":"Cats"}}"#
                } else {
                    r#"{"feed":[]}"#
                };
                let _ = seen_tx.send(request);
                let _ = s
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .await;
            });
        }
    });
    (url, seen_rx)
}

/// One whole HTTP/1.1 request (head and `content-length` body) as text.
async fn read_request(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The service token of a raw request, verified as the service it reached would:
/// signature against the `#atproto` key of the issuer's DID document (from the PLC
/// directory), `aud`, `lxm`, and an expiry within the next minute.
async fn verified_claims(
    request: &str,
    plc_url: &str,
    aud: &str,
    lxm: &str,
) -> atbox::auth::service_jwt::ServiceClaims {
    let line = request
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization: bearer "))
        .expect("a service token");
    let token = &line["authorization: bearer ".len()..];
    let iss = atbox::auth::service_jwt::service_issuer(token).expect("an atproto-signed JWT");
    let doc: serde_json::Value = reqwest::get(format!("{plc_url}/{iss}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = doc["verificationMethod"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"].as_str().unwrap().ends_with("#atproto"))
        .and_then(|m| m["publicKeyMultibase"].as_str())
        .expect("an #atproto key");
    let key = atbox::crypto::parse_multikey(key).unwrap();
    let now = atbox::storage::unix_now();
    let claims = atbox::auth::service_jwt::verify(token, &key, aud, lxm, now)
        .unwrap_or_else(|e| panic!("the token does not verify: {e}"));
    assert!(claims.exp <= now + 60, "short-lived: {claims:?}");
    claims
}

/// A personalised custom feed: getFeed goes to the AppView with a token for the feed
/// generator (`aud` its DID, from its record; `lxm` getFeedSkeleton), which the AppView
/// hands on; push registration goes to the push service the app names (its
/// `#bsky_notif` endpoint, from its DID document) with a token for it — or to the
/// AppView when it names the AppView. Every token verifies against the account's key.
#[tokio::test]
async fn feeds_and_push_get_tokens_for_the_services_behind_the_appview() {
    let (appview, mut seen) = stand_in_appview().await;
    let (push, mut pushed) = stand_in_appview().await;
    let atbox = inproc::start(&[
        ("ATBOX_APPVIEW_URL", appview.as_str()),
        ("ATBOX_APPVIEW_DID", "did:web:appview.example"),
        ("ATBOX_PROXY_ALLOW_PRIVATE", "true"),
    ])
    .await;
    let api = Api::at(&atbox.url);
    let (_, token, _) = api.account("feeds.test").await;
    let feed = "at://did:plc:feedowner/app.bsky.feed.generator/cats";
    let (s, v) = api
        .get_auth("app.bsky.feed.getFeed", &format!("feed={feed}"), &token)
        .await;
    assert_eq!(s, 200, "{v}");
    let mut get_feed = None;
    while let Ok(request) = seen.try_recv() {
        if request.starts_with("GET /xrpc/app.bsky.feed.getFeed") {
            get_feed = Some(request);
        }
    }
    let get_feed = get_feed.expect("getFeed reached the AppView");
    verified_claims(
        &get_feed,
        &atbox.plc_url,
        "did:web:feedgen.example",
        "app.bsky.feed.getFeedSkeleton",
    )
    .await;

    // A push service of its own: its DID document (at the PLC directory) names it.
    let push_did = "did:plc:pushservice2345abcdefghij";
    let op = json!({"type": "plc_operation", "services": {"bsky_notif": {"type": "BskyNotificationService", "endpoint": push}}, "verificationMethods": {}, "alsoKnownAs": [], "rotationKeys": [], "prev": null});
    let r = reqwest::Client::new()
        .post(format!("{}/{push_did}", atbox.plc_url))
        .json(&op)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let register = |service: &str| json!({"serviceDid": service, "token": "device", "platform": "ios", "appId": "xyz.blueskyweb.app"});
    let (s, v) = api
        .post(
            "app.bsky.notification.registerPush",
            Some(&token),
            register(push_did),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let request = pushed.recv().await.unwrap();
    assert!(
        request.starts_with("POST /xrpc/app.bsky.notification.registerPush")
            && request.contains(push_did),
        "the body went on: {request}"
    );
    verified_claims(
        &request,
        &atbox.plc_url,
        push_did,
        "app.bsky.notification.registerPush",
    )
    .await;

    let (s, v) = api
        .post(
            "app.bsky.notification.registerPush",
            Some(&token),
            register("did:web:appview.example"),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let request = seen.recv().await.unwrap();
    verified_claims(
        &request,
        &atbox.plc_url,
        "did:web:appview.example",
        "app.bsky.notification.registerPush",
    )
    .await;
}

/// Germ's declaration record (`com.germnetwork.declaration`, embedded) is validated as
/// the app.bsky records are: a well-formed one is stored, a malformed one refused.
#[tokio::test]
async fn a_germ_declaration_is_validated() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("germ.test").await;
    let put = |record: serde_json::Value| {
        serde_json::json!({"repo": did, "collection": "com.germnetwork.declaration",
            "rkey": "self", "record": record})
    };
    let good = serde_json::json!({"$type": "com.germnetwork.declaration", "version": "1.0.0",
        "currentKey": {"$bytes": "AQIDBA"},
        "messageMe": {"messageMeUrl": "https://landing.germnetwork.com/message-me", "showButtonTo": "everyone"}});
    let (s, v) = api
        .post("com.atproto.repo.putRecord", Some(&token), put(good))
        .await;
    assert_eq!(s, 200, "{v}");
    // version too short, currentKey not bytes.
    let bad = serde_json::json!({"$type": "com.germnetwork.declaration", "version": "1",
        "currentKey": "not bytes"});
    let (s, v) = api
        .post("com.atproto.repo.putRecord", Some(&token), put(bad))
        .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (reqwest::StatusCode::BAD_REQUEST, Some("InvalidRequest")),
        "{v}"
    );
}

/// Read-after-write: the app (`@atproto/api`'s Agent) posts, replies and edits its
/// profile while the AppView stand-in (verifying every service token) still answers
/// from an older `atproto-repo-rev`; timeline, own feed, thread (also one the AppView
/// says NotFound for) and profile show the new records, with `Atproto-Upstream-Lag`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn your_new_post_is_on_your_screen_while_the_appview_catches_up() {
    let inproc::WithAppView {
        atbox,
        appview,
        plc: _plc,
    } = inproc::start_with_appview(&[]).await;
    Api::at(&atbox.url).account("raw.test").await;
    let args = [
        "--pds",
        atbox.url.as_str(),
        "--appview",
        appview.url.as_str(),
        "--handle",
        "raw.test",
        "--password",
        "correct horse",
    ]
    .map(str::to_owned);
    let (ok, out) = common::run_node_async("read-after-write.mjs", args.to_vec()).await;
    assert!(ok, "{out}");
    // Every call reached the AppView with a valid service token.
    let log: serde_json::Value = reqwest::get(format!("{}/_standin/log", appview.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = log["requests"].as_array().unwrap();
    assert!(!entries.is_empty());
    for entry in entries {
        assert_eq!(entry["verdict"], "valid", "{entry}");
    }
}
