//! Accounts over HTTP: sessions and their rotation, login rate limits, email
//! confirmation and change, identity resolution, and the admin CLI and endpoints on a
//! running server.

use crate::common;

use common::api::{assert_xrpc_error, Api};
use common::inproc;
use common::server::{start_atbox, start_plc};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_rotate_and_the_admin_cli_works_on_a_running_server() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (_, _, refresh) = api.account("owner.test").await;
    let (s, v) = api
        .post(
            "com.atproto.server.refreshSession",
            Some(&refresh),
            json!(null),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .post(
            "com.atproto.server.refreshSession",
            Some(&refresh),
            json!(null),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "ExpiredToken");

    let cli = |args: &[&str]| atbox.cli(args);
    let created = cli(&[
        "account",
        "create",
        "--handle",
        "second.test",
        "--email",
        "second@example.com",
    ]);
    let password = created
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_owned();
    let (s, v) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "second.test", "password": password}),
        )
        .await;
    assert_eq!(s, 200, "an account made by the CLI logs in over HTTP");
    // As the reference answers: the DID document (clients take the PDS endpoint from
    // it) and no email second factor.
    let registered = api
        .did_document(&atbox.plc_url, v["did"].as_str().unwrap())
        .await;
    assert_eq!(v["didDoc"], registered, "{v}");
    assert_eq!(v["emailAuthFactor"], false, "{v}");
    let list = cli(&["account", "list"]);
    assert!(
        list.contains("owner.test") && list.contains("second.test"),
        "{list}"
    );

    // Password reset: the code the reference would email is shown by the CLI.
    let (s, _) = api
        .post(
            "com.atproto.server.requestPasswordReset",
            None,
            json!({"email": "owner.test@example.com"}),
        )
        .await;
    assert_eq!(s, 200);
    let tokens = cli(&["account", "tokens"]);
    let code = tokens
        .lines()
        .find(|l| l.starts_with("reset_password"))
        .unwrap()
        .split('\t')
        .nth(2)
        .unwrap()
        .to_owned();
    let (s, v) = api
        .post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": code, "password": "new secret"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "owner.test", "password": "new secret"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = api
        .post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": code, "password": "again"}),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidToken");
    cli(&[
        "account",
        "reset-password",
        "owner.test",
        "--password",
        "cli secret",
    ]);
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "owner.test", "password": "cli secret"}),
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_rate_limited_and_secrets_are_private() {
    // A real process: the file modes are the server process's own (its umask).
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let api = Api::new(&atbox);
    api.account("guarded.test").await;
    let mut statuses = Vec::new();
    for _ in 0..31 {
        let (s, _) = api
            .post(
                "com.atproto.server.createSession",
                None,
                json!({"identifier": "guarded.test", "password": "guess"}),
            )
            .await;
        statuses.push(s.as_u16());
    }
    assert!(statuses[..30].iter().all(|&s| s == 401), "{statuses:?}");
    assert_eq!(
        statuses[30], 429,
        "the 31st attempt in five minutes is refused"
    );
    let (s, v) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "guarded.test", "password": "correct horse"}),
        )
        .await;
    assert_xrpc_error(s, &v, 429, "RateLimitExceeded");

    use std::os::unix::fs::PermissionsExt;
    for file in ["secrets.json", "atbox.sqlite"] {
        let mode = std::fs::metadata(atbox.data_dir.path().join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
    let mode = std::fs::metadata(atbox.data_dir.path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_confirmation_and_change_and_identity_resolution() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (did, token, _) = api.account("mailer.test").await;
    let code = |purpose: &str| {
        let out = atbox.cli(&["account", "tokens"]);
        out.lines()
            .find(|l| l.starts_with(purpose))
            .unwrap_or_else(|| panic!("no {purpose} code in {out}"))
            .split('\t')
            .nth(2)
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        api.post(
            "com.atproto.server.requestEmailConfirmation",
            Some(&token),
            json!({})
        )
        .await
        .0,
        200
    );
    let (s, v) = api
        .post(
            "com.atproto.server.confirmEmail",
            Some(&token),
            json!({"email": "other@example.com", "token": code("confirm_email")}),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "InvalidEmail");
    let (s, v) = api
        .post(
            "com.atproto.server.confirmEmail",
            Some(&token),
            json!({"email": "mailer.test@example.com", "token": code("confirm_email")}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api
        .get_auth("com.atproto.server.getSession", "", &token)
        .await;
    assert_eq!(v["emailConfirmed"], true);

    let (_, v) = api
        .post(
            "com.atproto.server.requestEmailUpdate",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(v["tokenRequired"], true);
    let (s, v) = api
        .post(
            "com.atproto.server.updateEmail",
            Some(&token),
            json!({"email": "new@example.com"}),
        )
        .await;
    assert_xrpc_error(s, &v, 400, "TokenRequired");
    let (s, v) = api
        .post(
            "com.atproto.server.updateEmail",
            Some(&token),
            json!({"email": "new@example.com", "token": code("update_email")}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = api
        .get_auth("com.atproto.server.getSession", "", &token)
        .await;
    assert_eq!(
        (v["email"].as_str(), v["emailConfirmed"].as_bool()),
        (Some("new@example.com"), Some(false))
    );

    let (_, v) = api
        .get(
            "com.atproto.identity.resolveIdentity",
            "identifier=mailer.test",
        )
        .await;
    assert_eq!(
        (v["did"].as_str(), v["handle"].as_str()),
        (Some(did.as_str()), Some("mailer.test")),
        "{v}"
    );
    assert_eq!(v["didDoc"]["id"], did.as_str());
    let (_, v) = api
        .get("com.atproto.identity.resolveDid", &format!("did={did}"))
        .await;
    assert_eq!(v["didDoc"]["id"], did.as_str());
    let (_, v) = api
        .get_auth("com.atproto.temp.checkSignupQueue", "", &token)
        .await;
    assert_eq!(v["activated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_can_look_up_reset_take_down_and_delete_accounts() {
    let atbox = inproc::start(&[("ATBOX_ADMIN_PASSWORD", "admin-pw")]).await;
    let api = Api::at(&atbox.url);
    let (did, _, _) = api.account("managed.test").await;
    let admin_get = |nsid: &str, q: String| {
        api.http
            .get(format!("{}/xrpc/{nsid}?{q}", api.base))
            .basic_auth("admin", Some("admin-pw"))
            .send()
    };
    let admin_post = |nsid: &str, body: Value| {
        api.http
            .post(format!("{}/xrpc/{nsid}", api.base))
            .basic_auth("admin", Some("admin-pw"))
            .json(&body)
            .send()
    };

    // Wrong or missing admin credentials.
    let res = api
        .http
        .get(format!(
            "{}/xrpc/com.atproto.admin.getAccountInfo?did={did}",
            api.base
        ))
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    let v: Value = admin_get("com.atproto.admin.getAccountInfo", format!("did={did}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["handle"].as_str(), v["email"].as_str()),
        (Some("managed.test"), Some("managed.test@example.com")),
        "{v}"
    );
    let v: Value = admin_get(
        "com.atproto.admin.getAccountInfos",
        format!("dids={did}&dids=did:plc:nobody"),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(v["infos"].as_array().unwrap().len(), 1);

    let res = admin_post(
        "com.atproto.admin.updateAccountPassword",
        json!({"did": did, "password": "reset by admin"}),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    let (s, _) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "managed.test", "password": "reset by admin"}),
        )
        .await;
    assert_eq!(s, 200);

    // Takedown: no logins, no sync; restoring brings it back.
    let takedown = |applied: bool| json!({"subject": {"$type": "com.atproto.admin.defs#repoRef", "did": did}, "takedown": {"applied": applied, "ref": "case-1"}});
    assert_eq!(
        admin_post("com.atproto.admin.updateSubjectStatus", takedown(true))
            .await
            .unwrap()
            .status(),
        200
    );
    let v: Value = admin_get("com.atproto.admin.getSubjectStatus", format!("did={did}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["takedown"]["applied"], true);
    let (s, v) = api
        .post(
            "com.atproto.server.createSession",
            None,
            json!({"identifier": "managed.test", "password": "reset by admin"}),
        )
        .await;
    assert_xrpc_error(s, &v, 401, "AccountTakedown");
    let (s, v) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_xrpc_error(s, &v, 400, "RepoTakendown");
    assert_eq!(
        admin_post("com.atproto.admin.updateSubjectStatus", takedown(false))
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, _) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_eq!(s, 200);

    // Invites, then deletion.
    let code: Value = admin_post(
        "com.atproto.server.createInviteCode",
        json!({"useCount": 1}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let code = code["code"].as_str().unwrap().to_owned();
    assert_eq!(
        admin_post(
            "com.atproto.admin.disableInviteCodes",
            json!({"codes": [code]})
        )
        .await
        .unwrap()
        .status(),
        200
    );
    let v: Value = admin_get("com.atproto.admin.getInviteCodes", String::new())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["codes"][0]["disabled"], true, "{v}");
    assert_eq!(
        admin_post("com.atproto.admin.deleteAccount", json!({"did": did}))
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, v) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_xrpc_error(s, &v, 400, "RepoNotFound");
}
