//! Backups (issue 16): a round trip with several accounts, records, blobs, app
//! passwords and preferences through a directory and through a real S3-compatible
//! server (moto, started here on 127.0.0.1); a backup killed half way; a wrong key; and
//! a restored box that federates — its firehose goes on above every number the old box
//! used, with `#identity` and `#sync` for each repo, and its repos verify with
//! `@atproto/repo`.

use crate::common;
use crate::firehose::{connect, field, frames};
use atbox::backup::{self, BackupError, BackupKey, Destination};
use atbox::data::Ipld;
use common::api::Api;
use common::inproc::{self, InProcess};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";

/// What the first box holds, to find again on the restored one.
struct Populated {
    /// `(handle, did)`.
    accounts: Vec<(String, String)>,
    /// Alice's picture: its CID and bytes.
    blob: (String, Vec<u8>),
    /// Bob's app password.
    app_password: String,
    /// Carol's preferences.
    prefs: Value,
}

async fn post(api: &Api, did: &str, token: &str, text: &str) {
    let (s, v) = api.post_record(did, token, text).await;
    assert_eq!(s, 200, "{v}");
}

async fn upload(api: &Api, token: &str, bytes: Vec<u8>) -> Value {
    let (s, v) = api
        .post_bytes("com.atproto.repo.uploadBlob", token, "image/png", bytes)
        .await;
    assert_eq!(s, 200, "{v}");
    v["blob"].clone()
}

/// A post showing `blob` (as the app posts a picture).
async fn post_picture(api: &Api, did: &str, token: &str, blob: &Value) {
    let record = json!({
        "$type": "app.bsky.feed.post", "text": "my screen", "createdAt": "2026-12-07T10:00:00.000Z",
        "embed": {"$type": "app.bsky.embed.images", "images": [{"alt": "the screen", "image": blob}]},
    });
    let (s, v) = api
        .post(
            "com.atproto.repo.createRecord",
            Some(token),
            json!({"repo": did, "collection": "app.bsky.feed.post", "record": record}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Three accounts with posts; Alice posts a picture, Bob makes an app password, Carol
/// sets her preferences.
async fn populate(api: &Api) -> Populated {
    let mut accounts = Vec::new();
    let mut tokens = Vec::new();
    for handle in ["alice.test", "bob.test", "carol.test"] {
        let (did, token, _) = api.account(handle).await;
        for i in 0..5 {
            post(api, &did, &token, &format!("{handle} says {i}")).await;
        }
        accounts.push((handle.to_owned(), did));
        tokens.push(token);
    }
    let picture = atbox::device::screens::render(
        atbox::device::screens::Screen::System,
        &atbox::device::snapshot::Snapshot::sample(),
    )
    .to_png(4);
    let blob = upload(api, &tokens[0], picture.clone()).await;
    post_picture(api, &accounts[0].1, &tokens[0], &blob).await;
    let (s, v) = api
        .post(
            "com.atproto.server.createAppPassword",
            Some(&tokens[1]),
            json!({"name": "my phone"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let app_password = v["password"].as_str().unwrap().to_owned();
    let prefs = json!({"preferences": [
        {"$type": "app.bsky.actor.defs#adultContentPref", "enabled": true},
        {"$type": "app.bsky.actor.defs#savedFeedsPrefV2", "items": []},
    ]});
    let (s, v) = api
        .post(
            "app.bsky.actor.putPreferences",
            Some(&tokens[2]),
            prefs.clone(),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    Populated {
        accounts,
        blob: (blob["ref"]["$link"].as_str().unwrap().to_owned(), picture),
        app_password,
        prefs,
    }
}

async fn head(api: &Api, did: &str) -> Value {
    let (s, v) = api
        .get("com.atproto.sync.getLatestCommit", &format!("did={did}"))
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Backs up a populated box to the one destination `extra` configures, twice (the
/// second run ships only what is new), restores onto a fresh data directory and checks
/// that the restored box serves the same accounts, repos and blobs, and federates.
async fn round_trip(extra: &[(&str, &str)]) {
    let old = inproc::start(extra).await;
    let api = Api::at(&old.url);
    let p = populate(&api).await;
    let key = BackupKey::load_or_create(old.data_dir()).unwrap();
    let dests = backup::destinations(&old.state.config);
    assert_eq!(dests.len(), 1, "{dests:?}");
    let dest = &dests[0];
    let config = &old.state.config;

    let first = backup::run_now(config, dest, &key, backup::quiet())
        .await
        .unwrap();
    assert!(
        first.wrote && first.accounts == 3 && first.blobs_shipped == 1,
        "{first:?}"
    );
    // Incremental: one more post ships a few log rows, not the repo again, nor the blob.
    let alice = &p.accounts[0].1;
    let alice_token = api.login("alice.test", PASSWORD).await;
    post(&api, alice, &alice_token, "one more").await;
    let second = backup::run_now(config, dest, &key, backup::quiet())
        .await
        .unwrap();
    assert!(second.wrote && second.seq > first.seq, "{second:?}");
    assert!(
        second.rows_shipped >= 1 && second.rows_shipped < first.rows_shipped,
        "{first:?} {second:?}"
    );
    assert_eq!(second.blobs_shipped, 0);
    assert!(
        second.bytes_shipped < first.bytes_shipped,
        "{first:?} {second:?}"
    );
    // Nothing new: nothing written.
    let third = backup::run_now(config, dest, &key, backup::quiet())
        .await
        .unwrap();
    assert!(!third.wrote && third.seq == second.seq, "{third:?}");
    let status = backup::status::BackupStatus::load(old.data_dir());
    let line = status.summary(&dests, atbox::storage::unix_now()).line;
    assert!(
        line.starts_with("last good backup: less than a minute ago"),
        "{line}"
    );

    let mut heads = Vec::new();
    for (_, did) in &p.accounts {
        heads.push(head(&api, did).await);
    }
    // The old box goes on after its last backup: these writes are lost with it, but
    // relays saw their sequence numbers, which must never be used again.
    post(&api, alice, &alice_token, "lost with the card").await;
    post(&api, alice, &alice_token, "this one too").await;
    let old_last = old.state.storage.log.seq_bounds().unwrap().1;

    // A wrong key: refused with a clear message, nothing written.
    let target = tempfile::tempdir().unwrap();
    let stranger = BackupKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
    let wrong = backup::restore(dest, &stranger, target.path(), None, backup::quiet()).await;
    assert!(
        matches!(wrong, Err(BackupError::WrongKey)),
        "{:?}",
        wrong.map(|r| r.seq)
    );
    assert!(
        wrong.unwrap_err().to_string().contains("different key"),
        "the message names the problem"
    );
    assert_eq!(std::fs::read_dir(target.path()).unwrap().count(), 0);
    let name = target
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let partial = target.path().with_file_name(format!(".{name}.restoring"));
    assert!(
        !partial.exists(),
        "a failed restore leaves no half-made directory"
    );

    // Restore with the phrase, as the owner types it.
    let phrase = key.phrase().join(" ").to_uppercase();
    let restored = backup::restore(
        dest,
        &BackupKey::from_phrase(&phrase).unwrap(),
        target.path(),
        None,
        backup::quiet(),
    )
    .await
    .unwrap();
    assert_eq!(
        (restored.seq, restored.accounts, restored.blobs),
        (second.seq, 3, 1)
    );
    let next_seq = restored.next_seq.unwrap();
    assert!(
        next_seq > old_last,
        "the firehose goes on above {old_last}, not at {next_seq}"
    );
    for file in ["secrets.json", "backup-key.txt", "atbox.sqlite"] {
        assert_eq!(mode(&target.path().join(file)), 0o600, "{file}");
    }

    let new = inproc::start_on(target, old.plc_url.clone(), &[]).await;
    check_restored(&new, &old.plc_url, &p, &heads, old_last).await;
}

/// The restored box: every account logs in, heads equal the backed-up heads, repos
/// verify (ours and `@atproto/repo`), blobs match byte for byte, app passwords and
/// preferences are back, and the firehose goes on above `old_last`.
async fn check_restored(
    new: &InProcess,
    plc_url: &str,
    p: &Populated,
    heads: &[Value],
    old_last: i64,
) {
    let api = Api::at(&new.url);
    let mut tokens = Vec::new();
    for ((handle, did), want) in p.accounts.iter().zip(heads) {
        tokens.push(api.login(handle, PASSWORD).await);
        assert_eq!(&head(&api, did).await, want, "{handle}");
        let summary = api.export_verified(did, plc_url).await;
        assert_eq!(
            summary.commit_cid.to_string(),
            want["cid"].as_str().unwrap()
        );
    }
    // The record index is rebuilt from the repos: listing, and the picture's reference
    // (which keeps the blob from the unreferenced-blob sweep).
    for ((_, did), want) in p.accounts.iter().zip([7, 5, 5]) {
        let (s, v) = api
            .get(
                "com.atproto.repo.listRecords",
                &format!("repo={did}&collection=app.bsky.feed.post&limit=100"),
            )
            .await;
        assert_eq!(
            (s.as_u16(), v["records"].as_array().map(Vec::len)),
            (200, Some(want)),
            "{v}"
        );
    }
    let referenced: i64 = new
        .state
        .storage
        .read(|conn| {
            conn.query_row("SELECT count(*) FROM record_blob", [], |r| r.get(0))
                .map_err(atbox::storage::StorageError::from)
        })
        .await
        .unwrap();
    assert_eq!(referenced, 1);
    api.login("bob.test", &p.app_password).await;
    let (s, prefs) = api
        .get_auth("app.bsky.actor.getPreferences", "", &tokens[2])
        .await;
    assert_eq!((s.as_u16(), &prefs), (200, &p.prefs));
    let alice = &p.accounts[0].1;
    let bytes = api
        .get_bytes(
            "com.atproto.sync.getBlob",
            &format!("did={alice}&cid={}", p.blob.0),
        )
        .await;
    assert!(bytes == p.blob.1, "the blob comes back byte for byte");

    // The official reference implementation verifies the restored repo.
    let car = api
        .get_bytes("com.atproto.sync.getRepo", &format!("did={alice}"))
        .await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &car).unwrap();
    let doc = api.did_document(plc_url, alice).await;
    let did_key = format!(
        "did:key:{}",
        doc["verificationMethod"][0]["publicKeyMultibase"]
            .as_str()
            .unwrap()
    );
    let path = file.path().display().to_string();
    let (ok, out) =
        common::run_node_async("verify-car.mjs", vec![path, alice.clone(), did_key]).await;
    assert!(ok, "@atproto/repo: {out}");

    // Relays: the next events come above every number the old box used, and tell them
    // to resync each repo.
    let mut socket = connect(&new.url, Some(old_last)).await;
    let events = frames(&mut socket, 2 * p.accounts.len()).await;
    assert_eq!(events.len(), 2 * p.accounts.len(), "{events:?}");
    for (did_index, (_, did)) in p.accounts.iter().enumerate() {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|(_, body)| field(body, "did") == &Ipld::String(did.clone()))
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(kinds, ["#identity", "#sync"], "account {did_index}");
    }
    for (_, body) in &events {
        match field(body, "seq") {
            Ipld::Integer(n) => assert!(*n > i128::from(old_last)),
            other => panic!("seq {other:?}"),
        }
    }
    // And the box goes on: a new post is sequenced after them.
    post(&api, alice, &tokens[0], "back from the backup").await;
    let after = new.state.storage.log.seq_bounds().unwrap().1;
    assert!(after > old_last + 2 * p.accounts.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_a_directory_restores_every_account() {
    let usb = tempfile::tempdir().unwrap();
    let dir = usb.path().display().to_string();
    round_trip(&[("ATBOX_BACKUP_DIR", dir.as_str())]).await;
    // Everything on the drive is sealed: no record text, no handle in the clear.
    for entry in walk(&usb.path().join(backup::DIR_FOLDER)) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1"),
            "{}",
            entry.display()
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("alice.test") && !text.contains("says"),
            "{}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// moto's S3 server from the test virtualenv, on a free loopback port, with a bucket.
async fn start_s3() -> (common::server::Running, String) {
    let port = common::server::free_port();
    let child = Command::new(common::server::python())
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let running = common::server::Running {
        child,
        url: url.clone(),
    };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.put(format!("{url}/atbox-test")).send().await {
            assert!(
                r.status().is_success(),
                "creating the bucket: {}",
                r.status()
            );
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (running, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_s3_restores_every_account() {
    let (_s3, endpoint) = start_s3().await;
    let url = format!("s3://atbox-test/boxes/home?endpoint={endpoint}&region=eu-west-1");
    round_trip(&[
        ("ATBOX_BACKUP_S3_URL", url.as_str()),
        ("ATBOX_BACKUP_S3_ACCESS_KEY_ID", "testing"),
        ("ATBOX_BACKUP_S3_SECRET_ACCESS_KEY", "testing"),
    ])
    .await;
}

/// `atbox backup <args>` on `box_`'s data directory, backing up to `usb`.
fn backup_cli(box_: &InProcess, usb: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atbox"));
    cmd.arg("backup")
        .args(args)
        .env("ATBOX_DATA_DIR", box_.data_dir())
        .env("ATBOX_PLC_URL", &box_.plc_url)
        .env("ATBOX_BACKUP_DIR", usb)
        .env("ATBOX_LOG", "warn");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_half_way_leaves_the_last_one_whole_and_the_next_completes() {
    let usb = tempfile::tempdir().unwrap();
    let dir = usb.path().display().to_string();
    let old = inproc::start(&[("ATBOX_BACKUP_DIR", dir.as_str())]).await;
    let api = Api::at(&old.url);
    let (did, token, _) = api.account("dana.test").await;
    post(&api, &did, &token, "before the first backup").await;
    let key = BackupKey::load_or_create(old.data_dir()).unwrap();
    let dest = Destination::Dir(usb.path().to_owned());
    let first = backup::run_now(&old.state.config, &dest, &key, backup::quiet())
        .await
        .unwrap();

    // Enough new blobs that the next run takes a while.
    let blobs = 120;
    for i in 0..blobs {
        let bytes: Vec<u8> = (0..64 * 1024)
            .map(|j: usize| (j * 31 + i * 7) as u8)
            .collect();
        upload(&api, &token, bytes).await;
    }
    let mut child = backup_cli(&old, usb.path(), &["run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let shipped = usb.path().join(backup::DIR_FOLDER).join("blobs");
    let deadline = Instant::now() + Duration::from_secs(60);
    while walk_count(&shipped) < 10 {
        assert!(Instant::now() < deadline, "the run shipped nothing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // The last backup is whole and still the newest.
    let listed = backup::list(&dest, &key).await.unwrap();
    assert_eq!(listed.last().map(|m| m.seq), Some(first.seq));
    let scratch = tempfile::tempdir().unwrap();
    let checked = backup::verify(&dest, &key, scratch.path(), backup::quiet())
        .await
        .unwrap();
    assert_eq!((checked.seq, checked.blobs), (first.seq, 0));

    // The next run (the CLI again: the killed one's lock died with it) completes.
    let out = backup_cli(&old, usb.path(), &["run"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("written") && said.contains("last good backup"),
        "{said}"
    );
    let checked = backup::verify(&dest, &key, scratch.path(), backup::quiet())
        .await
        .unwrap();
    assert_eq!(checked.blobs, blobs);
    assert!(checked.seq > first.seq);

    // The CLI: list, verify, and a restore with the wrong phrase told plainly.
    let out = backup_cli(&old, usb.path(), &["list"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains(&format!("#{}", checked.seq)),
        "{said}"
    );
    let out = backup_cli(&old, usb.path(), &["verify"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("is good"), "{said}");
    let stranger = BackupKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
    let target = tempfile::tempdir().unwrap();
    let out = backup_cli(&old, usb.path(), &["restore", "--from", &dir, "--data-dir"])
        .arg(target.path())
        .env("ATBOX_BACKUP_KEY", stranger.phrase().join(" "))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("different key"),
        "{said}"
    );
    let out = backup_cli(
        &old,
        usb.path(),
        &["restore", "--from", &dir, "--key", "not my words"],
    )
    .arg("--data-dir")
    .arg(target.path())
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("24"), "{said}");
}

fn walk_count(dir: &Path) -> usize {
    if dir.is_dir() {
        walk(dir).len()
    } else {
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_backup_drive_is_reported_not_a_crash() {
    // A drive that held backups and was pulled out: the run fails with Absent, the
    // status says so, the screen shows the alert.
    let usb = tempfile::tempdir().unwrap();
    let dir = usb.path().join("drive");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.display().to_string();
    let old = inproc::start(&[("ATBOX_BACKUP_DIR", d.as_str())]).await;
    let api = Api::at(&old.url);
    api.account("erin.test").await;
    let key = BackupKey::load_or_create(old.data_dir()).unwrap();
    let dest = Destination::Dir(dir.clone());
    backup::run_now(&old.state.config, &dest, &key, backup::quiet())
        .await
        .unwrap();
    std::fs::rename(&dir, usb.path().join("elsewhere")).unwrap();
    let gone = backup::run_now(&old.state.config, &dest, &key, backup::quiet()).await;
    assert!(
        matches!(gone, Err(BackupError::Absent(_))),
        "{:?}",
        gone.map(|r| r.seq)
    );
    let snap = atbox::pds::status::snapshot_once(&old.state).await;
    assert!(
        snap.alerts()
            .contains(&atbox::device::snapshot::Alert::BackupFailing),
        "{:?}",
        snap.backup
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_blob_whose_file_is_gone_is_damage_not_a_quiet_gap() {
    let usb = tempfile::tempdir().unwrap();
    let dir = usb.path().display().to_string();
    let old = inproc::start(&[("ATBOX_BACKUP_DIR", dir.as_str())]).await;
    let api = Api::at(&old.url);
    let (did, token, _) = api.account("fred.test").await;
    let blob = upload(&api, &token, vec![7u8; 4096]).await;
    post_picture(&api, &did, &token, &blob).await;
    let cid: atbox::data::Cid = blob["ref"]["$link"].as_str().unwrap().parse().unwrap();
    let files = atbox::storage::blobs::BlobFiles::open(&old.data_dir().join("blobs")).unwrap();
    std::fs::remove_file(files.path(&did, &cid)).unwrap();
    let key = BackupKey::load_or_create(old.data_dir()).unwrap();
    let dest = Destination::Dir(usb.path().to_owned());
    let outcome = backup::run_now(&old.state.config, &dest, &key, backup::quiet()).await;
    match outcome {
        Err(BackupError::Damaged(why)) => assert!(why.contains("referenced"), "{why}"),
        other => panic!("{:?}", other.map(|r| r.seq)),
    }
    assert!(backup::list(&dest, &key).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_setup_page_shows_the_owner_the_phrase_once_and_says_where_backups_stand() {
    let box_ = inproc::start(&[]).await;
    let api = Api::at(&box_.url);
    let (_, owner, _) = api.account("owner.test").await;
    let (_, friend, _) = api.account("friend.test").await;
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{}{path}", box_.url));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move {
            let r = request.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    // No destination: the page nags.
    let (s, status) = get("/setup/status", None).await;
    assert_eq!(s, 200);
    assert_eq!(status["backup"]["nag"], true, "{status}");
    assert_eq!(status["backup"]["line"], "backups: none set up");

    // The owner sees the 24 words the CLI prints; nobody else does.
    let (s, _) = get("/setup/owner/backup-key", Some(&friend)).await;
    assert_eq!(s, 403);
    let (s, shown) = get("/setup/owner/backup-key", Some(&owner)).await;
    assert_eq!(s, 200, "{shown}");
    let words: Vec<&str> = shown["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(words.len(), 24);
    let key = BackupKey::load(box_.data_dir()).unwrap().unwrap();
    assert_eq!(words, key.phrase());
    let printed = box_.cli(&["backup", "key"]);
    assert!(printed.contains(&format!("24. {}", words[23])), "{printed}");

    // Written down: the page shows it no more (the CLI still does).
    let r = http
        .post(format!("{}/setup/owner/backup-key", box_.url))
        .bearer_auth(&owner)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = get("/setup/owner/backup-key", Some(&owner)).await;
    assert_eq!(s, 403);
    let (_, status) = get("/setup/status", None).await;
    assert_eq!(status["backup"]["phraseWrittenDown"], true);
    assert!(box_.cli(&["backup", "key"]).contains(words[0]));
}
