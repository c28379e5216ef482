//! Account migration between two atboxes sharing a PLC directory, with the flow the
//! official tools use — and back again: service auth from the old PDS, createAccount
//! with the existing DID, importRepo, missing blobs, preferences, the PLC operation
//! signed by the old PDS and submitted by the new one, activate here, deactivate there.

use crate::common;

use common::api::Api;
use common::server::{start_atbox, start_plc, Atbox};
use serde_json::{json, Value};

struct Side<'a> {
    api: Api,
    server: &'a Atbox,
}

/// Moves `did` from `old` (logged in with `old_token`) to `new`; returns the token on `new`.
async fn migrate(
    plc: &str,
    old: &Side<'_>,
    old_token: &str,
    new: &Side<'_>,
    did: &str,
    handle: &str,
    password: &str,
) -> String {
    let (_, desc) = new.api.get("com.atproto.server.describeServer", "").await;
    let new_did = desc["did"].as_str().unwrap();
    let (s, auth) = old
        .api
        .get_auth(
            "com.atproto.server.getServiceAuth",
            &format!("aud={new_did}&lxm=com.atproto.server.createAccount"),
            old_token,
        )
        .await;
    assert_eq!(s, 200, "{auth}");
    let res = new
        .api
        .http
        .post(format!("{}/xrpc/com.atproto.server.createAccount", new.api.base))
        .bearer_auth(auth["token"].as_str().unwrap())
        .json(&json!({"did": did, "handle": handle, "email": "mover@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let created: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{created}");
    let token = created["accessJwt"].as_str().unwrap().to_owned();
    let (_, st) = new
        .api
        .get_auth("com.atproto.server.checkAccountStatus", "", &token)
        .await;
    assert_eq!(
        st["activated"], false,
        "a migrating account starts deactivated: {st}"
    );

    // Repo, then the blobs it references, then preferences.
    let car = old
        .api
        .get_bytes("com.atproto.sync.getRepo", &format!("did={did}"))
        .await;
    let (s, v) = new
        .api
        .post_bytes(
            "com.atproto.repo.importRepo",
            &token,
            "application/vnd.ipld.car",
            car,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    // What migration tools watch: the record's blob is expected, and the DID does not
    // point here yet.
    let (_, st) = new
        .api
        .get_auth("com.atproto.server.checkAccountStatus", "", &token)
        .await;
    assert_eq!(st["expectedBlobs"], 1, "{st}");
    assert_eq!(st["validDid"], false, "{st}");
    let (_, missing) = new
        .api
        .get_auth("com.atproto.repo.listMissingBlobs", "", &token)
        .await;
    if !missing["blobs"].as_array().unwrap().is_empty() {
        assert_eq!(st["importedBlobs"], 0, "nothing uploaded yet: {st}");
    }
    for blob in missing["blobs"].as_array().unwrap() {
        let cid = blob["cid"].as_str().unwrap();
        let bytes = old
            .api
            .get_bytes("com.atproto.sync.getBlob", &format!("did={did}&cid={cid}"))
            .await;
        let (s, v) = new
            .api
            .post_bytes(
                "com.atproto.repo.uploadBlob",
                &token,
                "application/octet-stream",
                bytes,
            )
            .await;
        assert_eq!(
            (s.as_u16(), v["blob"]["ref"]["$link"].as_str()),
            (200, Some(cid))
        );
    }
    let (_, missing) = new
        .api
        .get_auth("com.atproto.repo.listMissingBlobs", "", &token)
        .await;
    assert_eq!(missing["blobs"], json!([]));
    let (_, prefs) = old
        .api
        .get_auth("app.bsky.actor.getPreferences", "", old_token)
        .await;
    let (s, _) = new
        .api
        .post("app.bsky.actor.putPreferences", Some(&token), prefs)
        .await;
    assert_eq!(s, 200);

    // Identity: the old PDS signs (with the code its owner reads from the CLI), the new submits.
    let (_, creds) = new
        .api
        .get_auth(
            "com.atproto.identity.getRecommendedDidCredentials",
            "",
            &token,
        )
        .await;
    let (s, _) = old
        .api
        .post(
            "com.atproto.identity.requestPlcOperationSignature",
            Some(old_token),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let codes = old.server.cli(plc, &["account", "tokens"]);
    let code = codes
        .lines()
        .find(|l| l.starts_with("plc_operation") && l.contains(did))
        .unwrap()
        .split('\t')
        .nth(2)
        .unwrap()
        .to_owned();
    let mut sign = creds.clone();
    sign["token"] = json!(code);
    let (s, signed) = old
        .api
        .post(
            "com.atproto.identity.signPlcOperation",
            Some(old_token),
            sign,
        )
        .await;
    assert_eq!(s, 200, "{signed}");
    let (s, v) = new
        .api
        .post(
            "com.atproto.identity.submitPlcOperation",
            Some(&token),
            json!({"operation": signed["operation"]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, st) = new
        .api
        .get_auth("com.atproto.server.checkAccountStatus", "", &token)
        .await;
    assert_eq!(st["validDid"], true, "the DID now points here: {st}");
    assert!(
        st["importedBlobs"].as_u64() >= st["expectedBlobs"].as_u64(),
        "{st}"
    );
    let (s, _) = new
        .api
        .post(
            "com.atproto.server.activateAccount",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = old
        .api
        .post(
            "com.atproto.server.deactivateAccount",
            Some(old_token),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);

    // Now: the DID document points at the new PDS and its key, the repo verifies
    // against it there, and the old PDS refuses to serve it.
    let doc = new.api.did_document(plc, did).await;
    let port = |u: &str| u.rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        port(doc["service"][0]["serviceEndpoint"].as_str().unwrap()),
        port(&new.api.base),
        "{doc}"
    );
    let summary = new.api.export_verified(did, plc).await;
    assert!(summary.records.len() >= 6, "{}", summary.records.len());
    let (_, st) = new
        .api
        .get_auth("com.atproto.server.checkAccountStatus", "", &token)
        .await;
    assert_eq!(st["activated"], true);
    let (s, v) = old
        .api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_eq!(
        (s.as_u16(), v["error"].as_str()),
        (400, Some("RepoDeactivated"))
    );
    let _ = handle;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_moves_to_another_atbox_and_back() {
    let plc = start_plc();
    let a = start_atbox(&plc.url, &[]);
    let b = start_atbox(&plc.url, &[("ATBOX_HOSTNAME", "127.0.0.1")]);
    let side_a = Side {
        api: Api::new(&a),
        server: &a,
    };
    let side_b = Side {
        api: Api::new(&b),
        server: &b,
    };

    let (did, token_a, _) = side_a.api.account("mover.test").await;
    for i in 0..5 {
        side_a
            .api
            .post_record(&did, &token_a, &format!("before the move {i}"))
            .await;
    }
    let png = [b"\x89PNG\r\n\x1a\n".to_vec(), vec![7u8; 300]].concat();
    let (_, up) = side_a
        .api
        .post_bytes(
            "com.atproto.repo.uploadBlob",
            &token_a,
            "image/png",
            png.clone(),
        )
        .await;
    let profile =
        json!({"$type": "app.bsky.actor.profile", "displayName": "Mover", "avatar": up["blob"]});
    let (s, v) = side_a
        .api
        .post("com.atproto.repo.putRecord", Some(&token_a), json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile}))
        .await;
    assert_eq!(s, 200, "{v}");
    let prefs = json!({"preferences": [{"$type": "app.bsky.actor.defs#adultContentPref", "enabled": false}]});
    assert_eq!(
        side_a
            .api
            .post(
                "app.bsky.actor.putPreferences",
                Some(&token_a),
                prefs.clone()
            )
            .await
            .0,
        200
    );

    let token_b = migrate(
        &plc.url,
        &side_a,
        &token_a,
        &side_b,
        &did,
        "mover.test",
        "moving day",
    )
    .await;
    let (_, got) = side_b
        .api
        .get_auth("app.bsky.actor.getPreferences", "", &token_b)
        .await;
    assert_eq!(got, prefs);
    // The new box's firehose said nothing of the account while it moved in (account
    // creation, import, blobs), only #identity when the PLC operation was submitted,
    // then, at activation: its status, who it is and where its repo stands — as the
    // reference PDS emits them.
    let mut socket = crate::firehose::connect(&side_b.api.base, Some(0)).await;
    let kinds: Vec<String> = crate::firehose::frames(&mut socket, 100)
        .await
        .into_iter()
        .filter(|(_, body)| {
            *crate::firehose::field(body, "did") == atbox::data::Ipld::String(did.clone())
        })
        .map(|(kind, _)| kind)
        .collect();
    assert_eq!(kinds, ["#identity", "#account", "#identity", "#sync"]);
    let cid = up["blob"]["ref"]["$link"].as_str().unwrap();
    assert_eq!(
        side_b
            .api
            .get_bytes("com.atproto.sync.getBlob", &format!("did={did}&cid={cid}"))
            .await,
        png
    );
    // Life goes on at the new home.
    let (s, _) = side_b
        .api
        .post_record(&did, &token_b, "after the move")
        .await;
    assert_eq!(s, 200);

    // And back home again.
    let token_a2 = side_a.api.login("mover.test", "correct horse").await;
    // Moving back needs the password the account has here: a service token alone
    // never rewrites an existing account (security review H3).
    let token_a3 = migrate(
        &plc.url,
        &side_b,
        &token_b,
        &side_a,
        &did,
        "mover.test",
        "correct horse",
    )
    .await;
    let _ = token_a2;
    let (_, v) = side_a
        .api
        .get(
            "com.atproto.repo.listRecords",
            &format!("repo={did}&collection=app.bsky.feed.post&limit=100"),
        )
        .await;
    assert_eq!(
        v["records"].as_array().unwrap().len(),
        6,
        "the post made at the other home came back too"
    );
    let (s, _) = side_a.api.post_record(&did, &token_a3, "home again").await;
    assert_eq!(s, 200);
}
