//! Regression tests for the security review (`../shared/reviews/security-review.md`),
//! each named after its finding and replaying the requests that confirmed it against a
//! real `atbox serve`.

use crate::common;
use common::api::{assert_xrpc_error, Api};
use common::server::{start_atbox, start_plc};
use serde_json::{json, Value};

const ADMIN: &str = "admin-pw";

async fn admin_post(api: &Api, nsid: &str, body: Value) -> reqwest::StatusCode {
    api.http
        .post(format!("{}/xrpc/{nsid}", api.base))
        .basic_auth("admin", Some(ADMIN))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Logs in with `password` and returns the access token.
async fn login(api: &Api, handle: &str, password: &str) -> String {
    let (s, v) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": handle, "password": password}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v["accessJwt"].as_str().unwrap().to_owned()
}

/// An app password's session for the account `handle`.
async fn app_session(api: &Api, handle: &str, token: &str, privileged: bool) -> String {
    let (s, v) = api
        .post(
            "com.atproto.server.createAppPassword",
            Some(token),
            json!({"name": format!("app-{privileged}"), "privileged": privileged}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    login(api, handle, v["password"].as_str().unwrap()).await
}

/// M2: a non-privileged app password mints no service token for direct messages or for
/// creating an account elsewhere, and nobody mints one for a protected method.
#[tokio::test]
async fn m2_service_auth_follows_the_privileged_and_protected_method_rules() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    let (_, full, _) = api.account("scoped.test").await;
    let app = app_session(&api, "scoped.test", &full, false).await;
    let privileged = app_session(&api, "scoped.test", &full, true).await;
    let aud = "did:web:elsewhere.example";
    let ask = |token: String, lxm: &'static str| {
        let api = &api;
        async move {
            api.get_auth(
                "com.atproto.server.getServiceAuth",
                &format!("aud={aud}&lxm={lxm}"),
                &token,
            )
            .await
        }
    };
    for lxm in [
        "chat.bsky.convo.getMessages",
        "com.atproto.server.createAccount",
    ] {
        let (s, v) = ask(app.clone(), lxm).await;
        assert_xrpc_error(s, &v, 400, "InvalidToken");
        let (s, v) = ask(privileged.clone(), lxm).await;
        assert_eq!(s, 200, "{lxm}: {v}");
    }
    for lxm in [
        "com.atproto.identity.updateHandle",
        "com.atproto.server.createAppPassword",
    ] {
        let (s, v) = ask(full.clone(), lxm).await;
        assert_eq!(s, 400, "{lxm}: {v}");
        assert!(v["message"].as_str().unwrap().contains("protected"), "{v}");
    }
    let (s, v) = ask(app.clone(), "app.bsky.feed.getTimeline").await;
    assert_eq!(s, 200, "{v}");
}

/// H3: a non-privileged app password of a deactivated account cannot replace its
/// password through getServiceAuth + createAccount; and even with a token the account
/// itself minted, createAccount for a DID that has an account here never rewrites it
/// without that account's password.
#[tokio::test]
async fn h3_an_app_password_cannot_take_over_a_deactivated_account() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    let (did, full, _) = api.account("dave.test").await;
    let app = app_session(&api, "dave.test", &full, false).await;
    let (_, desc) = api.get("com.atproto.server.describeServer", "").await;
    let service_did = desc["did"].as_str().unwrap().to_owned();
    let query = format!("aud={service_did}&lxm=com.atproto.server.createAccount");
    let (s, v) = api
        .get_auth("com.atproto.server.getServiceAuth", &query, &app)
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidToken");

    // The owner's own token, as a thief of a full session would have it.
    let (s, v) = api
        .get_auth("com.atproto.server.getServiceAuth", &query, &full)
        .await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, _) = api
        .post(
            "com.atproto.server.deactivateAccount",
            Some(&full),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let res = api
        .http
        .post(format!("{}/xrpc/com.atproto.server.createAccount", api.base))
        .bearer_auth(&token)
        .json(&json!({"did": did, "handle": "dave.test", "email": "eve@example.com", "password": "eve-owns-this"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "dave.test", "password": "eve-owns-this"}),
        )
        .await;
    assert_eq!(s, 401, "the stranger's password must not work");
    login(&api, "dave.test", "correct horse").await;
}

/// M6: a token issued before a takedown no longer uploads, imports, makes app
/// passwords or changes preferences, and the repo is no longer served to anyone.
#[tokio::test]
async fn m6_takedown_is_enforced_for_old_tokens_and_public_reads() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[("ATBOX_ADMIN_PASSWORD", ADMIN)]);
    let api = Api::new(&atbox);
    let (did, token, _) = api.account("taken.test").await;
    let (s, posted) = api.post_record(&did, &token, "before").await;
    assert_eq!(s, 200, "{posted}");
    let car = api
        .get_bytes("com.atproto.sync.getRepo", &format!("did={did}"))
        .await;
    let takedown = json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did}, "takedown": {"applied": true, "ref": "case-1"}});
    assert_eq!(
        admin_post(&api, "com.atproto.admin.updateSubjectStatus", takedown).await,
        200
    );

    let (s, v) = api
        .post(
            "com.atproto.server.createAppPassword",
            Some(&token),
            json!({"name": "late"}),
        )
        .await;
    assert_xrpc_error(s, &v, 401, "AccountTakedown");
    let (s, v) = api
        .post(
            "app.bsky.actor.putPreferences",
            Some(&token),
            json!({"preferences": []}),
        )
        .await;
    assert_xrpc_error(s, &v, 401, "AccountTakedown");
    let (s, v) = api
        .post_bytes(
            "com.atproto.repo.uploadBlob",
            &token,
            "image/png",
            b"\x89PNG\r\n\x1a\nrest".to_vec(),
        )
        .await;
    assert_xrpc_error(s, &v, 401, "AccountTakedown");
    let (s, v) = api
        .post_bytes(
            "com.atproto.repo.importRepo",
            &token,
            "application/vnd.ipld.car",
            car,
        )
        .await;
    assert_xrpc_error(s, &v, 401, "AccountTakedown");

    let uri = posted["uri"].as_str().unwrap();
    let rkey = uri.rsplit('/').next().unwrap();
    for (nsid, query) in [
        (
            "com.atproto.repo.getRecord",
            format!("repo={did}&collection=app.bsky.feed.post&rkey={rkey}"),
        ),
        (
            "com.atproto.repo.listRecords",
            format!("repo={did}&collection=app.bsky.feed.post"),
        ),
        ("com.atproto.repo.describeRepo", format!("repo={did}")),
    ] {
        let (s, v) = api.get(nsid, &query).await;
        assert_xrpc_error(s, &v, 400, "RepoTakendown");
    }
}

/// L8: `applyWrites [delete X, update X with the same value]` leaves X there (the
/// update is not skipped as "unchanged" when the batch deleted it first).
#[tokio::test]
async fn l8_a_batch_never_loses_a_record() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    let (did, token, _) = api.account("batch.test").await;
    let profile = json!({"$type": "app.bsky.actor.profile", "displayName": "Batch"});
    let (s, v) = api
        .post(
            "com.atproto.repo.putRecord",
            Some(&token),
            json!({"repo": did, "collection": "app.bsky.actor.profile", "rkey": "self", "record": profile}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .post(
            "com.atproto.repo.applyWrites",
            Some(&token),
            json!({"repo": did, "writes": [
                {"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.actor.profile", "rkey": "self"},
                {"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.actor.profile", "rkey": "self", "value": profile},
            ]}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .get(
            "com.atproto.repo.getRecord",
            &format!("repo={did}&collection=app.bsky.actor.profile&rkey=self"),
        )
        .await;
    assert_eq!(s, 200, "the record must still be there: {v}");
    assert_eq!(v["value"], profile);
}

/// L3: eight concurrent sign-ups with one single-use invite make one account and
/// register one DID at the PLC directory (no orphans signed with the box's key).
#[tokio::test]
async fn l3_one_single_use_invite_admits_one_account_and_registers_one_did() {
    let plc = start_plc();
    let atbox = start_atbox(
        &plc.url,
        &[
            ("ATBOX_INVITE_REQUIRED", "true"),
            ("ATBOX_ADMIN_PASSWORD", ADMIN),
        ],
    );
    let api = Api::new(&atbox);
    let code: Value = api
        .http
        .post(format!(
            "{}/xrpc/com.atproto.server.createInviteCode",
            api.base
        ))
        .basic_auth("admin", Some(ADMIN))
        .json(&json!({"useCount": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code["code"].as_str().unwrap().to_owned();
    let ops_before = plc_ops(&plc.url).await;
    let signups = (0..8).map(|i| {
        let (api, code) = (&api, code.clone());
        async move {
            api.post(
                "com.atproto.server.createAccount",
                None,
                json!({"handle": format!("racer{i}.test"), "email": format!("racer{i}@example.com"), "password": "pw", "inviteCode": code}),
            )
            .await
            .0
        }
    });
    let statuses = futures_util::future::join_all(signups).await;
    assert_eq!(
        statuses.iter().filter(|s| s.as_u16() == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        plc_ops(&plc.url).await - ops_before,
        1,
        "one DID registered"
    );
}

async fn plc_ops(plc: &str) -> usize {
    let ops: Vec<Value> = reqwest::get(format!("{plc}/_standin/ops"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ops.len()
}
