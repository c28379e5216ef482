//! `atbox serve` over HTTP: error contract, input limits, durability across restarts,
//! concurrent writes, atomic batches, blob serving, repo import, CORS. Accounts and
//! sessions are in `accounts_http.rs`.

use crate::common;

use atbox::repo::car::read_car;
use atbox::repo::verify::verify_repo;
use common::api::{assert_xrpc_error, Api};
use common::inproc;
use common::server::{start_atbox, start_plc};
use reqwest::Client;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_xrpc_errors_never_500() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("errors.test").await;

    let (s, v) = api
        .get(
            "com.atproto.repo.getRecord",
            "repo=nobody.test&collection=app.bsky.feed.post&rkey=x",
        )
        .await;
    assert_xrpc_error(s, &v, 400, "RepoNotFound");
    let (s, v) = api
        .get(
            "com.atproto.repo.getRecord",
            &format!("repo={did}&collection=app.bsky.feed.post"),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidRequest");
    let (s, v) = api
        .get(
            "com.atproto.repo.listRecords",
            &format!("repo={did}&collection=app.bsky.feed.post&limit=1000"),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidRequest");
    let (s, v) = api.get("com.atproto.server.createSession", "").await;
    assert_xrpc_error(s, &v, 400, "InvalidRequest");
    let (s, v) = api.get("com.example.nothing.here", "").await;
    assert_xrpc_error(s, &v, 501, "MethodNotImplemented");

    // Malformed bodies: not JSON, wrong shapes, wrong types.
    let raw = api
        .http
        .post(format!(
            "{}/xrpc/com.atproto.server.createSession",
            api.base
        ))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    for body in [
        json!([]),
        json!({"identifier": 5}),
        json!({}),
        json!(null),
        json!("x"),
    ] {
        let (s, v) = api
            .post("com.atproto.server.createSession", None, body.clone())
            .await;
        assert_eq!(s, 400, "{body} → {v}");
    }
    // Over the body limit: 413.
    let big = "x".repeat(3 * 1024 * 1024);
    let (s, v) = api
        .post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": did, "collection": "app.bsky.feed.post", "record": {"text": big}}),
        )
        .await;
    assert_xrpc_error(s, &v, 413, "PayloadTooLarge");
    // Records that break the data model or their lexicon.
    let bad_records = [
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "2024-01-01T00:00:00Z", "n": 1.5}),
        json!({"$type": "app.bsky.feed.post", "text": "x", "createdAt": "yesterday"}),
        json!({"$type": "app.bsky.feed.like", "createdAt": "2024-01-01T00:00:00Z"}),
        json!({"$type": "", "text": "x"}),
        json!({"$type": "app.bsky.feed.post", "text": {"$link": "not a cid"}, "createdAt": "2024-01-01T00:00:00Z"}),
        json!("a string"),
    ];
    for record in bad_records {
        let (s, v) = api
            .post(
                "com.atproto.repo.createRecord",
                Some(&token),
                json!({"repo": did, "collection": "app.bsky.feed.post", "record": record}),
            )
            .await;
        assert_xrpc_error(s, &v, 400, "InvalidRequest");
    }
    // Bad identifiers in parameters.
    for (collection, rkey) in [
        ("not an nsid", "a"),
        ("app.bsky.feed.post", "bad/rkey"),
        ("app.bsky.feed.post", ".."),
    ] {
        let (s, v) = api
            .post("com.atproto.repo.putRecord", Some(&token), json!({"repo": did, "collection": collection, "rkey": rkey, "record": {"text": "x"}}))
            .await;
        assert_eq!(s, 400, "{collection} {rkey}: {v}");
    }
    // Tokens: none, garbage, refresh-as-access.
    let (s, v) = api.post_record(&did, "garbage", "x").await;
    assert_xrpc_error(s, &v, 400, "InvalidToken");
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.repo.createRecord", api.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // Nothing above left anything behind.
    let (_, v) = api
        .get(
            "com.atproto.repo.listRecords",
            &format!("repo={did}&collection=app.bsky.feed.post"),
        )
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batches_leave_nothing_behind_and_swaps_are_checked() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("atomic.test").await;
    let (_, first) = api.post_record(&did, &token, "first").await;
    let (_, head) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;

    let post = json!({"$type": "app.bsky.feed.post", "text": "batch", "createdAt": "2024-01-01T00:00:00Z"});
    let rkey = first["uri"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let writes = json!([
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": "3kaaaaaaaaaa2", "value": post},
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "rkey": rkey, "value": post},
    ]);
    let (s, v) = api
        .post(
            "com.atproto.repo.applyWrites",
            Some(&token),
            json!({"repo": did, "writes": writes}),
        )
        .await;
    assert_eq!(s, 400, "creating an existing record fails the batch: {v}");
    let (_, after) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_eq!(after, head, "a failed batch does not move the head");
    let (s, v) = api
        .get(
            "com.atproto.repo.getRecord",
            &format!("repo={did}&collection=app.bsky.feed.post&rkey=3kaaaaaaaaaa2"),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "RecordNotFound");

    // swapCommit and swapRecord.
    let stale = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm";
    let (s, v) = api.post("com.atproto.repo.createRecord", Some(&token), json!({"repo": did, "collection": "app.bsky.feed.post", "record": post, "swapCommit": stale})).await;
    assert_xrpc_error(s, &v, 400, "InvalidSwap");
    let (s, v) = api
        .post("com.atproto.repo.putRecord", Some(&token), json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey, "record": post, "swapRecord": null}))
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidSwap");
    let (s, v) = api
        .post("com.atproto.repo.putRecord", Some(&token), json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey, "record": post, "swapRecord": first["cid"]}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["validationStatus"], "valid");
    // Unknown lexicons are stored, marked unknown; validate=true refuses them.
    let odd = json!({"$type": "com.example.thing", "x": 1});
    let (s, v) = api
        .post(
            "com.atproto.repo.createRecord",
            Some(&token),
            json!({"repo": did, "collection": "com.example.thing", "record": odd}),
        )
        .await;
    assert_eq!(
        (s.as_u16(), v["validationStatus"].as_str()),
        (200, Some("unknown")),
        "{v}"
    );
    let (s, _) = api.post("com.atproto.repo.createRecord", Some(&token), json!({"repo": did, "collection": "com.example.thing", "record": odd, "validate": true})).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_are_all_durable_and_the_repo_verifies() {
    let plc = start_plc();
    let mut atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    let (did, token, _) = api.account("busy.test").await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (http, base, did, token) = (
            api.http.clone(),
            api.base.clone(),
            did.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let api = Api { http, base };
            api.post_record(&did, &token, &format!("post {i}")).await
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        acked.push(v["uri"].as_str().unwrap().to_owned());
    }

    // Restart the server on the same data: every acknowledged post is there.
    let data_dir = atbox.data_dir.path().to_owned();
    let _ = atbox.server.child.kill();
    let _ = atbox.server.child.wait();
    let again = common::server::spawn_atbox(&plc.url, &data_dir, &[]);
    let api = Api {
        http: Client::new(),
        base: again.url.clone(),
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, v) = api
            .get(
                "com.atproto.repo.listRecords",
                &format!("repo={did}&collection=app.bsky.feed.post&limit=25{cursor}"),
            )
            .await;
        let records = v["records"].as_array().unwrap();
        seen.extend(
            records
                .iter()
                .map(|r| r["uri"].as_str().unwrap().to_owned()),
        );
        match v["cursor"].as_str() {
            Some(c) if !records.is_empty() => cursor = format!("&cursor={c}"),
            _ => break,
        }
    }
    acked.sort();
    seen.sort();
    assert_eq!(seen, acked);
    // Logging in still works, and the export verifies against the DID document's key.
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "busy.test", "password": "correct horse"}),
        )
        .await;
    assert_eq!(s, 200);
    let summary = api.export_verified(&did, &plc.url).await;
    assert_eq!(summary.records.len(), 64);
    drop(atbox);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_sniffed_served_safely_and_ranged() {
    let atbox = inproc::start(&[("ATBOX_BLOB_UPLOAD_LIMIT", "100000")]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("blobs.test").await;
    // A PNG signature then bytes; sent as */* the way the Python SDK does.
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.extend((0..5000u32).map(|i| (i % 251) as u8));
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.repo.uploadBlob", api.base))
        .bearer_auth(&token)
        .header("content-type", "*/*")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let blob: Value = res.json().await.unwrap();
    assert_eq!(blob["blob"]["mimeType"], "image/png");
    assert_eq!(blob["blob"]["size"], png.len());
    let cid = blob["blob"]["ref"]["$link"].as_str().unwrap().to_owned();
    assert_eq!(cid, atbox::data::cid_for_raw(&png).to_string());

    let url = format!(
        "{}/xrpc/com.atproto.sync.getBlob?did={did}&cid={cid}",
        api.base
    );
    let res = api.http.get(&url).send().await.unwrap();
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("sandbox"));
    assert_eq!(res.bytes().await.unwrap().to_vec(), png);
    let res = api
        .http
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 10-19/{}", png.len())
    );
    assert_eq!(res.bytes().await.unwrap().to_vec(), png[10..20].to_vec());
    let res = api
        .http
        .get(&url)
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 416);

    // Over the limit: 413, and nothing is kept.
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.repo.uploadBlob", api.base))
        .bearer_auth(&token)
        .body(vec![0u8; 100_001])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let leftovers = std::fs::read_dir(atbox.data_dir().join("blobs/tmp"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a refused upload leaves no temp file");
    // A record may only reference an uploaded blob, with its real type and size.
    let avatar = |mime: &str, size: usize| json!({"$type": "app.bsky.actor.profile", "avatar": {"$type": "blob", "ref": {"$link": cid}, "mimeType": mime, "size": size}});
    let put = |record: Value| {
        api.post("com.atproto.repo.putRecord", Some(&token), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": record}))
    };
    let (s, v) = put(avatar("image/png", 1)).await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = put(avatar("image/png", png.len())).await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api
        .get("com.atproto.sync.listBlobs", &format!("did={did}"))
        .await;
    assert_eq!(v["cids"], json!([cid]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_repo_round_trips_an_export_and_lists_missing_blobs() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("mover.test").await;
    for i in 0..20 {
        api.post_record(&did, &token, &format!("post {i}")).await;
    }
    // A record pointing at a blob this server never received (as after a migration).
    let missing = atbox::data::cid_for_raw(b"elsewhere").to_string();
    let profile = json!({"$type": "app.bsky.actor.profile", "displayName": "Mover",
        "avatar": {"$type": "blob", "ref": {"$link": missing}, "mimeType": "image/png", "size": 9}});
    let car_url = format!("{}/xrpc/com.atproto.sync.getRepo?did={did}", api.base);
    let car = api
        .http
        .get(&car_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (roots, mut blocks) = read_car(&car[..]).unwrap();
    let before = verify_repo(&blocks, roots[0], None).unwrap();

    // Build the imported repo: the export plus the profile record, signed by some key
    // (importRepo re-signs with the account's own key).
    let profile_cid = blocks.put_cbor(&atbox::data::ipld_from_json(&profile).unwrap());
    let mut mst = atbox::repo::Mst::load(blocks.clone(), before.commit.data).unwrap();
    mst.insert("app.bsky.actor.profile/self", profile_cid)
        .unwrap();
    let (data, nodes) = mst.persist();
    blocks.extend(nodes);
    let other_key = atbox::crypto::Keypair::generate(atbox::crypto::KeyType::K256);
    let rev = atbox::syntax::Tid::from_parts(
        before
            .commit
            .rev
            .parse::<atbox::syntax::Tid>()
            .unwrap()
            .timestamp_micros()
            + 1,
        0,
    );
    let commit = atbox::repo::UnsignedCommit::new(
        &atbox::syntax::Did::new(did.clone()).unwrap(),
        data,
        &rev,
    )
    .sign(&other_key);
    let root = blocks.put_cbor(&commit);
    let import = atbox::repo::car::write_car(&[root], &blocks);
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.repo.importRepo", api.base))
        .bearer_auth(&token)
        .header("content-type", "application/vnd.ipld.car")
        .body(import)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    let (_, v) = api
        .get(
            "com.atproto.repo.getRecord",
            &format!("repo={did}&collection=app.bsky.actor.profile&rkey=self"),
        )
        .await;
    assert_eq!(v["value"]["displayName"], "Mover");
    let res = api
        .http
        .get(format!(
            "{}/xrpc/com.atproto.repo.listMissingBlobs",
            api.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["blobs"][0]["cid"], missing.as_str(), "{v}");
    assert_eq!(
        v["blobs"][0]["recordUri"],
        format!("at://{did}/app.bsky.actor.profile/self")
    );
    // The repo now holds 21 records and verifies under the account's own key.
    assert_eq!(
        api.export_verified(&did, &atbox.plc_url)
            .await
            .records
            .len(),
        21
    );

    // A CAR of another DID, or a broken one, is refused and changes nothing.
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.repo.importRepo", api.base))
        .bearer_auth(&token)
        .body(car[..car.len() - 3].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (_, v) = api
        .get(
            "com.atproto.repo.listRecords",
            &format!("repo={did}&collection=app.bsky.feed.post&limit=100"),
        )
        .await;
    assert_eq!(v["records"].as_array().unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bodies_to_every_procedure_get_xrpc_errors_not_500s() {
    let atbox = inproc::start(&[("ATBOX_ADMIN_PASSWORD", "admin-pw")]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("garbage.test").await;
    let procedures = [
        "com.atproto.server.createAccount",
        "com.atproto.server.createSession",
        "com.atproto.server.createAppPassword",
        "com.atproto.server.revokeAppPassword",
        "com.atproto.server.createInviteCode",
        "com.atproto.server.createInviteCodes",
        "com.atproto.server.deleteAccount",
        "com.atproto.server.requestPasswordReset",
        "com.atproto.server.resetPassword",
        "com.atproto.identity.updateHandle",
        "com.atproto.identity.signPlcOperation",
        "com.atproto.identity.submitPlcOperation",
        "com.atproto.repo.createRecord",
        "com.atproto.repo.putRecord",
        "com.atproto.repo.deleteRecord",
        "com.atproto.repo.applyWrites",
        "com.atproto.repo.importRepo",
        "com.atproto.repo.uploadBlob",
        "app.bsky.actor.putPreferences",
    ];
    let bodies: Vec<String> = vec![
        String::new(),
        "null".into(),
        "[]".into(),
        "{}".into(),
        "{\"repo\": 5}".into(),
        format!(
            "{{\"repo\": \"{did}\", \"collection\": \"app.bsky.feed.post\", \"record\": null}}"
        ),
        format!("{{\"repo\": \"{did}\", \"collection\": \"\", \"rkey\": [], \"record\": {{}}}}"),
        format!("{{\"repo\": \"{did}\", \"writes\": [{{\"$type\": 1}}, null, \"x\"]}}"),
        "{\"handle\": \"\\u0000\", \"email\": {}, \"password\": 3}".into(),
        "{\"operation\": {\"type\": \"plc_operation\"}, \"preferences\": 4}".into(),
        "{\"useCount\": -1, \"codeCount\": 100000000000}".into(),
        "{\"identifier\": \"\", \"password\": \"\"}".into(),
        "\u{ff}\u{fe}garbage".into(),
    ];
    for nsid in procedures {
        for body in &bodies {
            for auth in [Some(token.as_str()), None] {
                let mut req = api
                    .http
                    .post(format!("{}/xrpc/{nsid}", api.base))
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(t) = auth {
                    req = req.bearer_auth(t);
                } else if nsid.contains("InviteCode") {
                    req = req.basic_auth("admin", Some("admin-pw"));
                }
                let res = req.send().await.unwrap();
                let status = res.status();
                let text = res.text().await.unwrap();
                assert!(
                    status.as_u16() < 500,
                    "{nsid} with {body:?}: {status} {text}"
                );
                if status.as_u16() >= 400 {
                    let v: Value = serde_json::from_str(&text)
                        .unwrap_or_else(|_| panic!("{nsid}: not JSON: {text}"));
                    assert!(
                        v["error"].is_string() && v["message"].is_string(),
                        "{nsid}: {text}"
                    );
                }
            }
        }
    }
    // And the account is still intact.
    let (s, _) = api
        .get("com.atproto.repo.describeRepo", &format!("repo={did}"))
        .await;
    assert_eq!(s, 200);
}

/// Web clients (bsky.app in a browser) call the PDS from another origin: the API
/// answers CORS preflights and requests for any origin; the box's own setup pages do
/// not (their protection against cross-site posts relies on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_allows_cross_origin_calls_and_the_setup_page_does_not() {
    let atbox = inproc::start(&[]).await;
    let client = Client::new();
    let preflight = |path: &str| {
        client
            .request(reqwest::Method::OPTIONS, format!("{}{path}", atbox.url))
            .header("origin", "https://bsky.app")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,atproto-proxy",
            )
            .send()
    };
    let r = preflight("/xrpc/com.atproto.server.createSession")
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("atproto-proxy"),
        "{allowed}"
    );
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    let r = client
        .get(format!(
            "{}/xrpc/com.atproto.server.describeServer",
            atbox.url
        ))
        .header("origin", "https://bsky.app")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = preflight("/setup/claim").await.unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "the setup page must not allow other origins"
    );
}
