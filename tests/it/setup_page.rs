//! The LAN setup page in a real browser (Debian's chromium driven by playwright-core,
//! `tests/interop/setup-browser.mjs`): a wrong pairing code is refused, the right one
//! claims the box under the public name typed on the page (atbox restarts under it and
//! finishes the claim: the DID is registered with that endpoint), the account then
//! exists, the page no longer offers claiming, and the owner takes their own domain as
//! handle once its TXT record is in the test's DNS server.
//! The code is read off the box's screen (the `png:` display), as a person would.
//! Screenshots land in `target/setup-screenshots/` (the README shows copies from
//! `docs/setup/`).

use crate::common;

use atbox::device::frame::Frame;
use embedded_graphics::mono_font::ascii::FONT_10X20;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::BinaryColor;
use embedded_graphics::prelude::*;
use embedded_graphics::text::{Baseline, Text};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the setup screen draws the pairing code (`device::screens`): right of the
/// 60-pixel QR code, 10×20 font.
const CODE_AT: (u32, u32) = (64, 42);

/// The six digits on the setup screen, trying each burn-in shift.
fn read_code(frame: &Frame) -> Option<String> {
    let glyphs: Vec<Frame> = (0..10)
        .map(|d| {
            let mut f = Frame::default();
            let style = MonoTextStyle::new(&FONT_10X20, BinaryColor::On);
            let _ = Text::with_baseline(&d.to_string(), Point::zero(), style, Baseline::Top)
                .draw(&mut f);
            f
        })
        .collect();
    for (dx, dy) in [(0, 0), (1, 0), (1, 1), (0, 1)] {
        let code: String = (0..6)
            .filter_map(|i| {
                let (x0, y0) = (CODE_AT.0 + dx + 10 * i, CODE_AT.1 + dy);
                (0..10u8).find(|d| {
                    let g = &glyphs[*d as usize];
                    (0..10).all(|x| (0..20).all(|y| g.get(x, y) == frame.get(x0 + x, y0 + y)))
                        && g.lit_count() > 0
                })
            })
            .map(|d| char::from(b'0' + d))
            .collect();
        if code.len() == 6 {
            return Some(code);
        }
    }
    None
}

/// Reads the code off the `png:` screen (the setup screen takes turns with any alert).
fn code_on_screen(screen: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let frame = std::fs::read(screen.join("current.png"))
            .ok()
            .and_then(|b| Frame::from_png(&b).ok());
        if let Some(code) = frame.as_ref().and_then(read_code) {
            return code;
        }
        assert!(Instant::now() < deadline, "no pairing code on the screen");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn curl_json(url: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-s", url])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{url}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn the_box_is_claimed_in_a_browser_with_the_code_on_its_screen() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run `bash .ci/install` (apt package chromium)"
    );
    let plc = common::server::start_plc();
    let dns = common::server::start_dns();
    let screen = tempfile::tempdir().unwrap();
    let display = format!("png:{}", screen.path().display());
    // Invite-only, as a box on the internet should be: the owner needs no code (the
    // pairing code proves them), everyone after them does.
    // No ATBOX_HOSTNAME: the variable would win over the name chosen on the page.
    let mut atbox = common::server::start_atbox(
        &plc.url,
        &[
            ("ATBOX_DISPLAY", display.as_str()),
            ("ATBOX_INVITE_REQUIRED", "true"),
            ("ATBOX_HOSTNAME", ""),
            ("ATBOX_DNS_SERVER", dns.addr.as_str()),
        ],
    );

    let code = code_on_screen(screen.path());

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/setup-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let url = format!("{}/", atbox.server.url.replace("localhost", "127.0.0.1"));
    let (ok, result) = common::run_node(
        "setup-browser.mjs",
        &[
            "--url",
            &url,
            "--code",
            &code,
            "--hostname",
            "pds.test",
            "--handle",
            "owner",
            "--screenshots",
            shots.to_str().unwrap(),
            "--own-domain",
            "owner.home.test",
            "--dns-api",
            &dns.server.url,
        ],
        "",
    );
    assert!(ok && result["ok"] == true, "{result}");
    assert!(
        result["wrongCodeMessage"]
            .as_str()
            .unwrap()
            .contains("not the code"),
        "{result}"
    );
    // The public name chosen on the page: atbox restarted under it and then finished
    // the claim, with the handle under that name.
    assert!(
        result["finishing"]
            .as_str()
            .is_some_and(|m| m.contains("restarting as pds.test")),
        "{result}"
    );
    assert!(result["doneMessage"]
        .as_str()
        .unwrap()
        .contains("@owner.pds.test"));
    assert_eq!(result["loginServer"], "https://pds.test");
    assert_eq!(result["claimOfferedAfterReload"], false);
    // Same process (systemd's main PID stays), new configuration, saved durably.
    assert!(
        atbox.server.child.try_wait().unwrap().is_none(),
        "atbox exited instead of restarting"
    );
    let data_dir = atbox.data_dir.path();
    let settings = std::fs::read_to_string(data_dir.join("settings.toml")).unwrap();
    assert!(settings.contains("hostname = \"pds.test\""), "{settings}");
    assert!(!data_dir.join("saved-claim.json").exists());
    let described = curl_json(&format!("{url}xrpc/com.atproto.server.describeServer"));
    assert_eq!(described["did"], "did:web:pds.test", "{described}");
    assert_eq!(
        described["availableUserDomains"][0], ".pds.test",
        "{described}"
    );
    // The DID was registered at the PLC directory with the new name's endpoint.
    let status = curl_json(&format!("{url}setup/status"));
    let did = status["did"].as_str().unwrap();
    let doc = curl_json(&format!("{}/{did}", plc.url));
    assert_eq!(
        doc["service"][0]["serviceEndpoint"], "https://pds.test",
        "{doc}"
    );
    // The owner then took their own domain as handle, once its TXT record existed.
    assert!(
        result["domainBeforeRecord"]
            .as_str()
            .unwrap()
            .contains("_atproto.owner.home.test"),
        "{result}"
    );
    assert_eq!(
        result["domainRecord"],
        serde_json::json!(["_atproto.owner.home.test", format!("did={did}")])
    );
    assert!(
        result["domainOk"]
            .as_str()
            .unwrap()
            .contains("@owner.home.test"),
        "{result}"
    );
    assert_eq!(doc["alsoKnownAs"][0], "at://owner.home.test", "{doc}");
    // The doctor's checks on the page: the name does not resolve to this box yet.
    let findings = result["findings"].to_string();
    assert!(findings.contains("FAIL dns"), "{findings}");
    assert!(findings.contains("identity owner.pds.test"), "{findings}");

    // The owner's actions: a wrong password is refused, the accounts are listed, the
    // invite code made on the page works once, the crawl request reports.
    assert!(
        !result["ownerWrongPassword"].as_str().unwrap().is_empty(),
        "{result}"
    );
    assert!(
        result["accounts"].to_string().contains("@owner.pds.test"),
        "{result}"
    );
    assert!(
        result["crawl"].to_string().contains("No relays"),
        "{result}"
    );
    let invite = result["inviteCode"].as_str().unwrap();
    let create = |handle: &str, invite: &str| {
        // A phone on the LAN, as the trusted proxy (the test) forwards it.
        let out = std::process::Command::new("curl")
            .args(["-s", "-H", "x-forwarded-for: 192.168.1.20"])
            .args(["-H", "content-type: application/json", "-d"])
            .arg(format!(
                r#"{{"handle":"{handle}","email":"{handle}@example.com","password":"friend password 1","inviteCode":"{invite}"}}"#
            ))
            .arg(format!("{url}xrpc/com.atproto.server.createAccount"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let without = create("stranger.pds.test", "");
    assert!(without.contains("InvalidInviteCode"), "{without}");
    let first = create("friend.pds.test", invite);
    assert!(first.contains("accessJwt"), "{first}");
    let second = create("other.pds.test", invite);
    assert!(second.contains("InvalidInviteCode"), "{second}");
    // Without the owner's session the owner's routes refuse.
    let anonymous = std::process::Command::new("curl")
        .args(["-s", "-X", "POST"])
        .arg(format!("{url}setup/owner/invite"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&anonymous.stdout).contains("AuthRequired"),
        "{}",
        String::from_utf8_lossy(&anonymous.stdout)
    );

    // The account exists, and claiming again is refused.
    let listed = atbox.cli(&plc.url, &["account", "list"]);
    assert!(listed.contains("owner.home.test"), "{listed}");
    let again = std::process::Command::new("curl")
        .args(["-s", "-H", "content-type: application/json", "-d"])
        .arg(format!(
            r#"{{"code":"{code}","handle":"x.test","email":"x@example.com","password":"pw pw pw pw"}}"#
        ))
        .arg(format!("{url}setup/claim"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("AlreadyClaimed"));

    // No code waiting; the BlackSky preset filled its services, and saving them
    // restarted atbox under them (kept in settings.toml beside the public name).
    assert_eq!(result["codes"], serde_json::json!(["None right now."]));
    assert_eq!(
        result["blacksky"],
        serde_json::json!([
            "https://api.blacksky.community",
            "did:web:api.blacksky.community",
            "atproto.africa"
        ])
    );
    assert!(
        result["servicesSaved"]
            .as_str()
            .unwrap()
            .contains("https://api.blacksky.community"),
        "{result}"
    );
    let settings = std::fs::read_to_string(data_dir.join("settings.toml")).unwrap();
    assert!(
        settings.contains("appview_did = \"did:web:api.blacksky.community\"")
            && settings.contains("hostname = \"pds.test\""),
        "{settings}"
    );
    let mut restarted = serde_json::Value::Null;
    for _ in 0..100 {
        restarted = curl_json(&format!("{url}xrpc/com.atproto.server.describeServer"));
        if restarted["did"] == "did:web:pds.test" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(restarted["did"], "did:web:pds.test", "{restarted}");
    let status = atbox.cli(&plc.url, &["status"]);
    assert!(status.contains("api.blacksky.community"), "{status}");
}

/// A bad public name, or one the environment would override, is refused before the
/// pairing code is looked at (a typo must not cost the owner a trip to the screen),
/// and nothing is saved.
#[test]
fn a_public_name_is_checked_before_the_code_is_spent() {
    let plc = common::server::start_plc();
    // The test harness sets ATBOX_HOSTNAME=localhost: the variable wins over the page.
    // The test is the "reverse proxy" that says where clients come from.
    let atbox = common::server::start_atbox(&plc.url, &[("ATBOX_TRUSTED_PROXIES", "127.0.0.1")]);
    let url = format!("{}/", atbox.server.url.replace("localhost", "127.0.0.1"));
    let claim = |hostname: &str| {
        // A phone on the LAN, as the trusted proxy (the test) forwards it.
        let out = std::process::Command::new("curl")
            .args(["-s", "-H", "x-forwarded-for: 192.168.1.20"])
            .args(["-H", "content-type: application/json", "-d"])
            .arg(format!(
                r#"{{"code":"000000","hostname":"{hostname}","handle":"owner","email":"o@example.com","password":"pw pw pw pw"}}"#
            ))
            .arg(format!("{url}setup/claim"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    for (name, says) in [
        ("atbox.local", "only works on this network"),
        ("not a name", "not a host name"),
        ("192.0.2.7", "not a host name"),
        ("pds.example.com", "ATBOX_HOSTNAME"),
    ] {
        let answer = claim(name);
        assert_eq!(answer["error"], "InvalidHostname", "{name}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{name}: {answer}"
        );
    }
    // The name it already has: on to the code, which is wrong.
    assert_eq!(claim("localhost")["error"], "WrongCode");
    assert!(!atbox.data_dir.path().join("settings.toml").exists());

    // From the internet the setup routes refuse, and / is the public front page.
    let from = |client: &str, path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "-H"])
            .arg(format!("x-forwarded-for: {client}"))
            .arg(format!("{url}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for path in ["setup/status", "setup/doctor", "setup/owner/accounts"] {
        let said = from("8.8.8.8", path);
        assert!(
            said.ends_with("403") && said.contains("only answers on the local network"),
            "{path}: {said}"
        );
    }
    assert!(from("8.8.8.8", "").contains("personal data server"));
    assert!(from("192.168.1.20", "setup/status").ends_with("200"));
    assert!(from("192.168.1.20", "").contains("claim-form"));
}

/// The did:web choice: the box restarts under its public name, makes the owner's DID
/// `did:web:<handle>` (no PLC directory involved) and serves its document on the
/// handle's host, beside its own service document on the host name.
#[test]
fn a_did_web_claim_is_served_by_the_box_itself() {
    let plc = common::server::start_plc();
    let screen = tempfile::tempdir().unwrap();
    let display = format!("png:{}", screen.path().display());
    let mut atbox = common::server::start_atbox(
        &plc.url,
        &[("ATBOX_DISPLAY", display.as_str()), ("ATBOX_HOSTNAME", "")],
    );
    let url = format!("{}/", atbox.server.url.replace("localhost", "127.0.0.1"));
    let code = code_on_screen(screen.path());
    let out = std::process::Command::new("curl")
        .args(["-s", "-H", "content-type: application/json", "-d"])
        .arg(format!(
            r#"{{"code":"{code}","hostname":"box.test","handle":"meg","email":"me@example.com","password":"pw pw pw pw","didMethod":"web"}}"#
        ))
        .arg(format!("{url}setup/claim"))
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["restarting"], true, "{answer}");
    assert_eq!(answer["handle"], "meg.box.test", "{answer}");

    // The restart: the same process answers again, then the claim is finished.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("{url}setup/status")])
            .output()
            .unwrap();
        if let Ok(status) = serde_json::from_slice::<serde_json::Value>(&out.stdout) {
            if status["claimed"] == true || !status["claimError"].is_null() {
                break status;
            }
        }
        assert!(Instant::now() < deadline, "the claim did not finish");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(atbox.server.child.try_wait().unwrap().is_none());
    assert_eq!(status["did"], "did:web:meg.box.test", "{status}");
    assert_eq!(status["handle"], "meg.box.test", "{status}");

    let did_json = |host: &str| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-H", &format!("host: {host}")])
            .arg(format!("{url}.well-known/did.json"))
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let doc = did_json("meg.box.test");
    assert_eq!(doc["id"], "did:web:meg.box.test", "{doc}");
    assert_eq!(doc["alsoKnownAs"][0], "at://meg.box.test", "{doc}");
    assert_eq!(doc["service"][0]["serviceEndpoint"], "https://box.test");
    let key = atbox::identity::DidDocument(doc.clone()).signing_key();
    assert!(key.is_some(), "no #atproto key in {doc}");
    assert_eq!(did_json("box.test")["id"], "did:web:box.test");
    // The handle's host answers for the handle, too.
    let out = std::process::Command::new("curl")
        .args(["-s", "-H", "host: meg.box.test"])
        .arg(format!("{url}.well-known/atproto-did"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "did:web:meg.box.test");
    // Nothing went to the PLC directory.
    let listed = atbox.cli(&plc.url, &["account", "list"]);
    assert!(listed.contains("did:web:meg.box.test"), "{listed}");
}
