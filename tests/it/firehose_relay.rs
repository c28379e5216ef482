//! Relay-grade validation of atbox's firehose by the Node consumer on the reference
//! implementation (tests/interop/firehose-consumer.mjs): every `#commit` is checked
//! the way a relay checks it — signature against the DID document, CAR slice, record
//! blocks, `since` chaining, and the sync 1.1 inversion of the ops back to `prevData`
//! — across creates, updates, deletes, applyWrites batches, a no-op write, a handle
//! change, deactivation and reactivation; from a cursor of 0, live, and reconnecting
//! with a cursor in the middle.

use crate::common;

use common::api::Api;
use common::server::{start_atbox, start_plc};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn consumer(ws: &str, plc: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(common::interop_dir().join("firehose-consumer.mjs"))
        .args(["--url", ws, "--plc", plc, "--timeout-ms", "60000"])
        .args(extra);
    cmd
}

fn check(out: std::process::Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let bad: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"ok\":false"))
        .collect();
    assert!(
        out.status.success() && bad.is_empty(),
        "{what}: the consumer refused atbox's firehose:\n{}\n{}\nstderr: {}",
        bad.join("\n"),
        stdout.lines().rev().take(3).collect::<Vec<_>>().join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or("").to_owned();
    println!("{what}: {summary}");
    summary
}

async fn scenario(api: &Api, did: &str, token: &str) {
    let post = |t: &str| json!({"$type": "app.bsky.feed.post", "text": t, "createdAt": "2024-01-01T00:00:00Z"});
    let mut rkeys = Vec::new();
    for i in 0..6 {
        let (s, v) = api.post_record(did, token, &format!("post {i}")).await;
        assert_eq!(s, 200);
        rkeys.push(
            v["uri"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let put = |rkey: &str, text: &str| json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkey, "record": post(text)});
    assert_eq!(
        api.post(
            "com.atproto.repo.putRecord",
            Some(token),
            put(&rkeys[0], "edited")
        )
        .await
        .0,
        200
    );
    // The same record again: no commit, no event.
    let (s, v) = api
        .post(
            "com.atproto.repo.putRecord",
            Some(token),
            put(&rkeys[0], "edited"),
        )
        .await;
    assert_eq!(s, 200);
    assert!(
        v.get("commit").is_none(),
        "an unchanged record makes no commit: {v}"
    );
    let del = json!({"repo": did, "collection": "app.bsky.feed.post", "rkey": rkeys[1]});
    assert_eq!(
        api.post("com.atproto.repo.deleteRecord", Some(token), del)
            .await
            .0,
        200
    );
    let writes = json!([
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.feed.post", "value": post("batch new")},
        {"$type": "com.atproto.repo.applyWrites#update", "collection": "app.bsky.feed.post", "rkey": rkeys[2], "value": post("batch edit")},
        {"$type": "com.atproto.repo.applyWrites#delete", "collection": "app.bsky.feed.post", "rkey": rkeys[3]},
        {"$type": "com.atproto.repo.applyWrites#create", "collection": "app.bsky.graph.follow", "value": {"$type": "app.bsky.graph.follow", "subject": did, "createdAt": "2024-01-01T00:00:00Z"}},
    ]);
    assert_eq!(
        api.post(
            "com.atproto.repo.applyWrites",
            Some(token),
            json!({"repo": did, "writes": writes})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post(
            "com.atproto.identity.updateHandle",
            Some(token),
            json!({"handle": "relayed2.test"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post(
            "com.atproto.server.deactivateAccount",
            Some(token),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post("com.atproto.server.activateAccount", Some(token), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(api.post_record(did, token, "back online").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_grade_consumer_finds_every_event_valid() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let ws = atbox.server.url.replace("http://", "ws://");
    let api = Api::new(&atbox);

    // A live consumer, connected before anything happens.
    let mut live = consumer(&ws, &plc.url, &["--idle-ms", "4000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(live.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("connected") {
        line.clear();
    }

    let (did, token, _) = api.account("relayed.test").await;
    scenario(&api, &did, &token).await;
    let (_, latest) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert!(latest["rev"].is_string());

    let live_summary = check(live.wait_with_output().unwrap(), "live consumer");
    // Replay of the whole log from cursor 0, to the last event.
    let last_seq = {
        let out = consumer(&ws, &plc.url, &["--cursor", "0", "--idle-ms", "2000"])
            .output()
            .unwrap();
        check(out, "replay from cursor 0")
    };
    assert!(live_summary.ends_with("0 failed") && last_seq.ends_with("0 failed"));
    // Reconnecting with a cursor in the middle picks up from there.
    let out = consumer(&ws, &plc.url, &["--cursor", "7", "--idle-ms", "2000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = stdout.lines().next().unwrap_or("");
    assert!(
        first.contains("\"seq\":8"),
        "resumes after the cursor: {first}"
    );
    check(out, "replay from cursor 7");
}
