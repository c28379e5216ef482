//! One-time codes reach their person (issue 15): emailed through a real SMTP server
//! (aiosmtpd on 127.0.0.1) when `smtp_url` is set; otherwise shown to the owner on the
//! LAN page and on the screen, for a friend who has no terminal on the box.

use crate::common::api::Api;
use crate::common::inproc;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// aiosmtpd on 127.0.0.1: its port and each message it receives. Stops when dropped.
struct SmtpSink {
    port: u16,
    messages: mpsc::Receiver<Value>,
    _child: KillOnDrop,
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smtp_sink() -> SmtpSink {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtp_sink.py");
    let mut child = Command::new(crate::common::server::python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let (tx, messages) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                break;
            }
        }
    });
    SmtpSink {
        port: first["port"].as_u64().unwrap() as u16,
        messages,
        _child: KillOnDrop(child),
    }
}

impl SmtpSink {
    /// The next message, its subject and the code in it.
    fn next_code(&self) -> (Value, String, String) {
        let m = self
            .messages
            .recv_timeout(Duration::from_secs(20))
            .expect("an email within 20 s");
        let data = m["data"].as_str().unwrap().replace("\r\n", "\n");
        let subject = data
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        (m, subject, code_in(&data))
    }
}

/// The one-time code (XXXXX-XXXXX) in a text.
fn code_in(text: &str) -> String {
    let b = text.as_bytes();
    let word = |i: usize| {
        b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    };
    let code_char = |c: &u8| c.is_ascii_uppercase() || (b'2'..=b'9').contains(c);
    (0..b.len().saturating_sub(10))
        .find(|&i| {
            let w = &b[i..i + 11];
            (i == 0 || !word(i - 1))
                && !word(i + 11)
                && w[5] == b'-'
                && w[..5].iter().chain(&w[6..]).all(code_char)
        })
        .map(|i| text[i..i + 11].to_owned())
        .unwrap_or_else(|| panic!("no code in {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_emailed_through_the_configured_smtp_server() {
    let sink = smtp_sink();
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    let atbox = inproc::start(&[
        ("ATBOX_SMTP_URL", &url),
        ("ATBOX_SMTP_FROM", "Home PDS <pds@localhost>"),
    ])
    .await;
    let api = Api::at(&atbox.url);
    let (_did, token, _) = api.account("alice.test").await;
    let email = "alice.test@example.com";

    // Email confirmation (what the app needs before a video upload).
    let (s, v) = api
        .post(
            "com.atproto.server.requestEmailConfirmation",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (message, subject, code) = sink.next_code();
    assert_eq!(message["to"], json!([email]));
    assert_eq!(message["from"], "pds@localhost");
    assert_eq!(subject, "Email Confirmation");
    let (s, v) = api
        .post(
            "com.atproto.server.confirmEmail",
            Some(&token),
            json!({"email": email, "token": code}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, session) = api
        .get_auth("com.atproto.server.getSession", "", &token)
        .await;
    assert_eq!(session["emailConfirmed"], true, "{session}");

    // A forgotten password: the code goes to the address, the new password works.
    let (s, _) = api
        .post(
            "com.atproto.server.requestPasswordReset",
            None,
            json!({"email": email}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, subject, code) = sink.next_code();
    assert_eq!(subject, "Password Reset Requested");
    let (s, v) = api
        .post(
            "com.atproto.server.resetPassword",
            None,
            json!({"token": code, "password": "a new secret"}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    api.login("alice.test", "a new secret").await;

    // Nothing was put on show: the mail went out.
    assert!(atbox::pds::delivery::on_show(&atbox.state).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_the_owner_sees_the_code_on_the_lan_page_and_the_screen() {
    let atbox = inproc::start(&[]).await;
    let api = Api::at(&atbox.url);
    let (_, owner, _) = api.account("owner.test").await;
    let (_, friend, _) = api.account("friend.test").await;
    let (s, _) = api
        .post(
            "com.atproto.server.requestEmailConfirmation",
            Some(&friend),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);

    // The owner's LAN page lists it; nobody else may read it.
    let codes = |token: &str| {
        let http = reqwest::Client::new();
        let request = http
            .get(format!("{}/setup/owner/codes", atbox.url))
            .bearer_auth(token.to_owned());
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, listed) = codes(&owner).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["emailed"], false);
    let shown = &listed["codes"][0];
    assert_eq!(shown["handle"], "friend.test", "{listed}");
    assert_eq!(shown["for"], "confirm email");
    let code = shown["code"].as_str().unwrap().to_owned();
    assert_eq!(
        codes(&friend).await.0,
        403,
        "only the owner reads the codes"
    );

    // The screen shows it too: the snapshot's codes make the code screen come first.
    let on_show = atbox::pds::delivery::on_show(&atbox.state).await;
    assert_eq!(on_show.len(), 1);
    assert_eq!(on_show[0].code, code);
    let snapshot = atbox::device::Snapshot {
        codes: on_show,
        ..atbox::device::Snapshot::sample()
    };
    use atbox::device::screens::{plan, Screen};
    assert_eq!(plan(&snapshot)[0], Screen::Code(0));

    // The friend confirms with it; a used code leaves the page.
    let (s, v) = api
        .post(
            "com.atproto.server.confirmEmail",
            Some(&friend),
            json!({"email": "friend.test@example.com", "token": code}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(codes(&owner).await.1["codes"], json!([]));

    // A mail server that does not answer: the code is shown on the box instead.
    let broken = inproc::start(&[("ATBOX_SMTP_URL", "smtp://127.0.0.1:9")]).await;
    let api = Api::at(&broken.url);
    let (_, token, _) = api.account("carol.test").await;
    let (s, v) = api
        .post(
            "com.atproto.identity.requestPlcOperationSignature",
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let shown = atbox::pds::delivery::on_show(&broken.state).await;
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].what, "identity change");
    assert!(broken.cli(&["account", "tokens"]).contains(&shown[0].code));
}
