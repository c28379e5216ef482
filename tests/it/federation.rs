//! Federation against stand-ins the test starts on 127.0.0.1: an AppView that verifies
//! each proxied request's service-auth JWT against the account's DID document, and a
//! relay whose misbehaviour the relay watchdog must notice and report.

use crate::common;

use common::api::Api;
use common::server::{start_atbox, start_plc, start_standin};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

async fn log(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/_standin/log"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appview_calls_are_proxied_with_verified_service_auth() {
    let plc = start_plc();
    let (appview, info) = start_standin("appview-standin.mjs", &["--plc", &plc.url]);
    let appview_did = info["did"].as_str().unwrap().to_owned();
    let atbox = start_atbox(
        &plc.url,
        &[
            ("ATBOX_APPVIEW_URL", &appview.url),
            ("ATBOX_APPVIEW_DID", &appview_did),
            ("ATBOX_PROXY_ALLOW_PRIVATE", "true"),
        ],
    );
    let api = Api::new(&atbox);
    let (did, token, _) = api.account("viewer.test").await;

    let (s, v) = api
        .get_auth("app.bsky.actor.getProfile", &format!("actor={did}"), &token)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["did"], did.as_str());
    let (s, v) = api
        .get_auth("app.bsky.feed.getTimeline", "limit=5", &token)
        .await;
    assert_eq!((s.as_u16(), &v["feed"]), (200, &json!([])));
    let report = json!({"reasonType": "com.atproto.moderation.defs#reasonSpam", "subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did}});
    let (s, v) = api
        .post("com.atproto.moderation.createReport", Some(&token), report)
        .await;
    assert_eq!(s, 200, "{v}");
    // Preferences stay on the PDS.
    let (s, _) = api
        .get_auth("app.bsky.actor.getPreferences", "", &token)
        .await;
    assert_eq!(s, 200);

    let seen = log(&api.http, &appview.url).await;
    let entries: Vec<&Value> = seen
        .as_array()
        .or_else(|| seen["requests"].as_array())
        .unwrap()
        .iter()
        .collect();
    let nsids: Vec<&str> = entries.iter().filter_map(|e| e["nsid"].as_str()).collect();
    assert!(
        nsids.contains(&"app.bsky.actor.getProfile")
            && nsids.contains(&"com.atproto.moderation.createReport"),
        "{nsids:?}"
    );
    assert!(
        !nsids.contains(&"app.bsky.actor.getPreferences"),
        "preferences must not be proxied"
    );
    for e in &entries {
        let text = e.to_string();
        assert!(text.contains(&did), "the JWT's iss is the account: {text}");
        assert_eq!(
            e["verdict"], "valid",
            "the AppView accepted the service auth: {text}"
        );
        assert_eq!(e["jwt"]["claims"]["aud"], appview_did.as_str());
        assert_eq!(e["jwt"]["claims"]["lxm"], e["nsid"]);
    }

    // A garbage token never reaches the AppView; an AppView on a private address is
    // refused unless the owner allows it.
    let (s, _) = api
        .get_auth("app.bsky.actor.getProfile", "actor=x", "garbage")
        .await;
    assert_eq!(s, 400);
    let strict = start_atbox(
        &plc.url,
        &[
            ("ATBOX_APPVIEW_URL", &appview.url),
            ("ATBOX_APPVIEW_DID", &appview_did),
        ],
    );
    let strict_api = Api::new(&strict);
    let (_, token2, _) = strict_api.account("strict.test").await;
    let (s, v) = strict_api
        .get_auth("app.bsky.feed.getTimeline", "", &token2)
        .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (502, Some("UpstreamFailure")),
        "{v}"
    );
}

/// Polls `atbox status` until the relay line shows `state`.
fn wait_for_relay_state(
    atbox: &common::server::Atbox,
    plc: &str,
    relay: &str,
    state: &str,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = atbox.cli(plc, &["status"]);
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(relay))
            .unwrap_or("")
            .to_owned();
        if line.contains(&format!(" {state} ")) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "relay never became {state:?}; status said:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_watchdog_notices_lagging_forgetting_and_outages() {
    let plc = start_plc();
    let (relay, _) = start_standin("relay-standin.mjs", &[]);
    let relay_host = relay.url.trim_start_matches("http://").to_owned();
    let atbox = start_atbox(
        &plc.url,
        &[
            ("ATBOX_RELAYS", &relay_host),
            ("ATBOX_RELAY_CHECK_INTERVAL_SECS", "1"),
        ],
    );
    let api = Api::new(&atbox);
    let http = reqwest::Client::new();
    let (did, token, _) = api.account("watched.test").await;
    api.post_record(&did, &token, "hello relay").await;

    // The relay was asked to crawl us at start, and follows along.
    let crawls = |log: &Value| log["crawls"].as_array().map_or(0, Vec::len);
    let line = wait_for_relay_state(&atbox, &plc.url, &relay_host, "ok");
    assert!(line.contains("crawl requested"), "{line}");
    assert!(crawls(&log(&http, &relay.url).await) >= 1);

    let set_mode = |mode: &'static str| {
        let http = http.clone();
        let url = relay.url.clone();
        async move {
            let res = http
                .post(format!("{url}/_standin/mode"))
                .json(&json!({"mode": mode}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
        }
    };
    // Lagging: the relay stops applying events while we keep writing.
    set_mode("lagging").await;
    api.post_record(&did, &token, "you missed this one").await;
    let before = crawls(&log(&http, &relay.url).await);
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "lagging");
    set_mode("normal").await;
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "ok");
    assert!(
        crawls(&log(&http, &relay.url).await) > before,
        "the watchdog asked the lagging relay to crawl again"
    );

    // Forgetting us: not crawling, until the watchdog's crawl request brings it back.
    set_mode("forget").await;
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "not crawling");
    set_mode("normal").await;
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "ok");

    // On demand: `atbox relay crawl`.
    let before = crawls(&log(&http, &relay.url).await);
    let out = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(["relay", "crawl"])
        .env("ATBOX_DATA_DIR", atbox.data_dir.path())
        .env("ATBOX_RELAYS", &relay_host)
        .env("ATBOX_PLC_URL", &plc.url)
        .env("ATBOX_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("crawl requested"));
    assert_eq!(crawls(&log(&http, &relay.url).await), before + 1);

    // Down: unreachable.
    set_mode("down").await;
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "unreachable");
    set_mode("normal").await;
    wait_for_relay_state(&atbox, &plc.url, &relay_host, "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_changes_and_recovery_keys_reach_the_plc_directory() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    let http = reqwest::Client::new();
    let (did, token, _) = api.account("renamer.test").await;

    let (s, v) = api
        .post(
            "com.atproto.identity.updateHandle",
            Some(&token),
            json!({"handle": "renamed.test"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let doc = api.did_document(&plc.url, &did).await;
    assert_eq!(doc["alsoKnownAs"], json!(["at://renamed.test"]));
    let (_, v) = api
        .get("com.atproto.identity.resolveHandle", "handle=renamed.test")
        .await;
    assert_eq!(v["did"], did.as_str());
    let (s, v) = api
        .get("com.atproto.identity.resolveHandle", "handle=renamer.test")
        .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("HandleNotFound"))
    );
    let (s, v) = api
        .post(
            "com.atproto.identity.updateHandle",
            Some(&token),
            json!({"handle": "x.example.com"}),
        )
        .await;
    assert_eq!(
        s, 400,
        "an outside handle that does not resolve to the DID is refused: {v}"
    );

    let out = atbox.cli(&plc.url, &["identity", "add-recovery-key", "renamed.test"]);
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("did:key:"))
        .unwrap()
        .to_owned();
    assert!(out.contains("private key (secp256k1, hex): "), "{out}");
    let last: Value = http
        .get(format!("{}/{did}/log/last", plc.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        last["rotationKeys"][0],
        key.as_str(),
        "the user's key ranks above the server's"
    );
    assert_eq!(last["rotationKeys"].as_array().unwrap().len(), 2);
    // The private key printed is the one registered.
    let hex = out
        .lines()
        .find_map(|l| l.strip_prefix("private key (secp256k1, hex): "))
        .unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let kp =
        atbox::crypto::Keypair::from_private_bytes(atbox::crypto::KeyType::K256, &bytes).unwrap();
    assert_eq!(kp.public_key().to_did_key(), key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_atproto_proxy_header_picks_the_service_from_its_did_document() {
    use atbox::crypto::{KeyType, Keypair};
    use atbox::identity::plc::{PlcOperation, PlcService};
    let plc = start_plc();
    // A service with its own did:plc, whose document names its endpoint.
    let key = Keypair::generate(KeyType::K256);
    let mut op = PlcOperation::for_account(
        vec![key.public_key().to_did_key()],
        &key.public_key().to_did_key(),
        "feeds.test",
        "http://unused",
        None,
    );
    op.services.clear();
    let port = common::server::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    op.services.insert(
        "bsky_appview".into(),
        PlcService {
            kind: "BskyAppView".into(),
            endpoint: endpoint.clone(),
        },
    );
    let op = op.sign(&key);
    let service_did = op.genesis_did();
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/{service_did}", plc.url))
        .json(&op)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());
    let port_s = port.to_string();
    let (appview, _) = start_standin(
        "appview-standin.mjs",
        &["--plc", &plc.url, "--did", &service_did, "--port", &port_s],
    );

    // No default AppView: only the header says where to go.
    let atbox = start_atbox(&plc.url, &[("ATBOX_PROXY_ALLOW_PRIVATE", "true")]);
    let api = Api::new(&atbox);
    let (did, token, _) = api.account("picker.test").await;
    let proxied = |fragment: &'static str| {
        http.get(format!(
            "{}/xrpc/app.bsky.actor.getProfile?actor={did}",
            api.base
        ))
        .bearer_auth(&token)
        .header("atproto-proxy", format!("{service_did}#{fragment}"))
        .send()
    };
    let res = proxied("bsky_appview").await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let seen = log(&http, &appview.url).await;
    let entry = &seen
        .as_array()
        .or_else(|| seen["requests"].as_array())
        .unwrap()[0];
    assert_eq!(entry["verdict"], "valid", "{entry}");
    assert_eq!(entry["jwt"]["claims"]["aud"], service_did.as_str());
    // Without the header (and no default), the PDS says so.
    let (s, v) = api
        .get_auth("app.bsky.actor.getProfile", &format!("actor={did}"), &token)
        .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (501, Some("MethodNotImplemented"))
    );
    // A header naming a service the document does not have is refused.
    let res = proxied("nope").await.unwrap();
    assert_eq!(res.status(), 400);
}
