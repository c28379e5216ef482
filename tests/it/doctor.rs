//! `atbox doctor` against local stand-ins, failing then passing: a DNS server the test
//! controls (pebble-challtestsrv, whose records are set over its management API), the
//! PLC directory stand-in, a "what is my IP" service, and a relay that is down.

use crate::common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Answers every HTTP request with `body` (a "what is my IP" service).
fn text_server(body: &'static str) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

const HOST: &str = "pds.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_what_is_wrong_then_that_it_is_fixed() {
    let plc = common::server::start_plc();
    let dns = common::server::start_dns();
    let my_ip = text_server("127.0.0.1");
    let dead_relay = common::server::free_port();

    let port = common::server::free_port();
    let data = tempfile::tempdir().unwrap();
    let env = |relays: String| -> Vec<(String, String)> {
        vec![
            ("ATBOX_HOSTNAME".into(), HOST.into()),
            ("ATBOX_PUBLIC_URL".into(), format!("http://{HOST}:{port}")),
            ("ATBOX_LISTEN".into(), format!("127.0.0.1:{port}")),
            ("ATBOX_HANDLE_DOMAINS".into(), format!(".{HOST}")),
            ("ATBOX_DATA_DIR".into(), data.path().display().to_string()),
            ("ATBOX_PLC_URL".into(), plc.url.clone()),
            ("ATBOX_DNS_SERVER".into(), dns.addr.clone()),
            (
                "ATBOX_PUBLIC_IP_URL".into(),
                format!("http://127.0.0.1:{my_ip}/"),
            ),
            ("ATBOX_RELAYS".into(), relays),
            ("ATBOX_RELAY_CHECK_INTERVAL_SECS".into(), "1".into()),
            ("ATBOX_LOG".into(), "warn".into()),
        ]
    };
    let relays = format!("127.0.0.1:{dead_relay}");
    let _server = Proc(
        Command::new(env!("CARGO_BIN_EXE_atbox"))
            .arg("serve")
            .envs(env(relays.clone()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{base}/xrpc/_health"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "atbox did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let created: serde_json::Value = client
        .post(format!("{base}/xrpc/com.atproto.server.createAccount"))
        .json(&serde_json::json!({"handle": format!("alice.{HOST}"), "email": "a@example.com", "password": "alice pw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let did = created["did"].as_str().expect("account created").to_owned();
    // Let the watchdog find the relay down.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let doctor = |relays: String| {
        let out = Command::new(env!("CARGO_BIN_EXE_atbox"))
            .arg("doctor")
            .envs(env(relays))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("{said}{}", String::from_utf8_lossy(&out.stderr));
        (out.status.success(), said)
    };
    let line = |said: &str, check: &str| -> String {
        said.lines()
            .find(|l| l.get(6..).is_some_and(|rest| rest.starts_with(check)))
            .unwrap_or_else(|| panic!("no {check} line in:\n{said}"))
            .to_owned()
    };

    // Broken: no DNS records, so nothing resolves or answers, and the relay is down.
    let (ok, said) = doctor(relays.clone());
    assert!(!ok, "failures make a non-zero exit");
    assert!(line(&said, "dns").starts_with("FAIL"), "{said}");
    assert!(said.contains("has no A or AAAA record") && said.contains("-> add an A record"));
    assert!(line(&said, "reachable").starts_with("FAIL"));
    assert!(said.contains("forward ports 80 and 443"));
    assert!(line(&said, &format!("identity alice.{HOST}")).starts_with("FAIL"));
    assert!(line(&said, &format!("relay {relays}")).starts_with("FAIL"));
    assert!(line(&said, "certificate").starts_with("SKIP"));

    // Fixed: the host name points here, the handle has its TXT record.
    dns.set(
        "add-a",
        serde_json::json!({"host": format!("{HOST}."), "addresses": ["127.0.0.1"]}),
    );
    dns.set(
        "set-txt",
        serde_json::json!({"host": format!("_atproto.alice.{HOST}."), "value": format!("did={did}")}),
    );
    let (_, said) = doctor(String::new());
    assert!(line(&said, "dns").starts_with("PASS"), "{said}");
    assert!(said.contains("this network's public address"));
    assert!(line(&said, "reachable").starts_with("PASS"));
    assert!(line(&said, &format!("identity alice.{HOST}")).starts_with("PASS"));
    assert!(
        line(&said, "relays").starts_with("WARN"),
        "no relay configured"
    );
    // The clock is whatever this machine's kernel says; never a crash.
    assert!(line(&said, "clock").len() > 6);
    // A stale record: the public address moved.
    dns.set("clear-a", serde_json::json!({"host": format!("{HOST}.")}));
    dns.set(
        "add-a",
        serde_json::json!({"host": format!("{HOST}."), "addresses": ["192.0.2.7"]}),
    );
    let (_, said) = doctor(String::new());
    let dns_line = line(&said, "dns");
    assert!(
        dns_line.starts_with("FAIL")
            && dns_line.contains("192.0.2.7")
            && dns_line.contains("127.0.0.1"),
        "{said}"
    );
}
