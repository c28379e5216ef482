//! mDNS end to end, on a private network this test builds: network namespaces joined
//! by veth pairs to a bridge (in a namespace of its own), so nothing multicasts on the
//! machine's real network.
//!
//! - box A advertises; an independent client (python-zeroconf, tests/python/) in
//!   another namespace resolves `atbox.local` and browses `_atproto-pds._tcp` and
//!   `_http._tcp`, with the TXT keys (`did=`/`handle=` once an account exists);
//! - box B, same name, in a third namespace, ends up as `atbox-2.local` and says so;
//! - an address added to box A after start is announced.
//!
//! Needs root (or CAP_NET_ADMIN) for `ip netns`; skips with a message where namespaces
//! cannot be created.

use crate::common;

use common::server::python;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The namespaces and links of the test network; removed when dropped.
struct Net {
    prefix: String,
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for n in ["hub", "a", "b", "c"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(n)])
                .status();
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// hub (a bridge) + hosts a (10.77.0.1), b (10.77.0.2), c (10.77.0.3, the client).
fn build_net() -> Result<Net, String> {
    let net = Net {
        prefix: format!("atbx{}", std::process::id()),
    };
    let hub = net.ns("hub");
    ip(&["netns", "add", &hub])?;
    ip(&[
        "-n",
        &hub,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["-n", &hub, "link", "set", "br0", "up"])?;
    for (host, addr) in [
        ("a", "10.77.0.1/24"),
        ("b", "10.77.0.2/24"),
        ("c", "10.77.0.3/24"),
    ] {
        let ns = net.ns(host);
        let port = format!("v{host}");
        ip(&["netns", "add", &ns])?;
        ip(&[
            "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &ns, "addr", "add", addr, "dev", "eth0"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(net)
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(ns: &str, program: &Path) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).arg(program);
    c
}

fn atbox_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_atbox"))
}

fn start_box(ns: &str, data: &Path, plc_url: &str) -> Proc {
    let child = in_ns(ns, &atbox_bin())
        .arg("serve")
        .env("ATBOX_LISTEN", "0.0.0.0:2583")
        .env("ATBOX_DATA_DIR", data)
        .env("ATBOX_PLC_URL", plc_url)
        .env("ATBOX_MDNS", "true")
        .env("ATBOX_LOG", "atbox=info,warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child)
}

/// The PLC stand-in inside box A's namespace (its loopback is its own).
fn start_plc_in(ns: &str) -> (Proc, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "node"])
        .arg(common::interop_dir().join("plc-standin.mjs"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    (Proc(child), v["url"].as_str().unwrap().to_owned())
}

/// Runs the zeroconf client in namespace c until `accept` likes its answer.
fn client_until(net: &Net, args: &[&str], what: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/mdns_client.py");
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = in_ns(&net.ns("c"), &python())
            .arg(&script)
            .args(args)
            .args(["--timeout", "4"])
            .output()
            .unwrap();
        last = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
            if accept(&v) {
                return v;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{what}: never seen; last answer: {last}");
}

fn has_address(v: &Value, addr: &str) -> bool {
    v["addresses"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == addr))
}

/// What a box says about its mDNS name (`/_atbox/status`, loopback inside its namespace).
fn name_in_use(ns: &str) -> Option<String> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "curl",
            "-s",
            "--max-time",
            "3",
            "http://127.0.0.1:2583/_atbox/status",
        ])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["mdnsName"].as_str().map(str::to_owned)
}

#[test]
fn atbox_local_is_discoverable_renamed_on_conflict_and_follows_addresses() {
    let net = match build_net() {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "SKIPPED: cannot create network namespaces here ({e}); run as root to test mDNS"
            );
            return;
        }
    };
    assert!(
        python().exists(),
        "run .ci/install first (tests/python/.venv)"
    );
    let (_plc, plc_url) = start_plc_in(&net.ns("a"));
    let data_a = tempfile::tempdir().unwrap();
    let data_b = tempfile::tempdir().unwrap();
    let _a = start_box(&net.ns("a"), data_a.path(), &plc_url);

    // The host name and both services, from another machine on the LAN.
    let host = client_until(&net, &["resolve", "atbox.local"], "atbox.local", |v| {
        has_address(v, "10.77.0.1")
    });
    eprintln!("resolved: {host}");
    let http = client_until(&net, &["browse", "_http._tcp"], "_http._tcp", |v| {
        v["services"][0]["txt"]["path"] == "/"
    });
    assert_eq!(http["services"][0]["port"], 2583);
    assert_eq!(http["services"][0]["server"], "atbox.local.");

    // An account: its DID and handle join the PDS service's TXT record.
    let out = in_ns(&net.ns("a"), &atbox_bin())
        .args([
            "account",
            "create",
            "--handle",
            "owner.test",
            "--email",
            "o@example.com",
            "--password",
            "pw-for-mdns",
        ])
        .env("ATBOX_DATA_DIR", data_a.path())
        .env("ATBOX_PLC_URL", &plc_url)
        .env("ATBOX_LISTEN", "0.0.0.0:2583")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pds = client_until(
        &net,
        &["browse", "_atproto-pds._tcp"],
        "_atproto-pds._tcp with did",
        |v| {
            v["services"][0]["txt"]["did"]
                .as_str()
                .is_some_and(|d| d.starts_with("did:plc:"))
        },
    );
    let svc = &pds["services"][0];
    eprintln!("browsed: {svc}");
    assert_eq!(svc["txt"]["v"], "1");
    assert_eq!(svc["txt"]["path"], "/xrpc");
    assert_eq!(svc["txt"]["handle"], "owner.test");
    assert_eq!(svc["port"], 2583);
    assert!(has_address(svc, "10.77.0.1"));

    // A second box with the same name takes the next one, and knows it.
    let _b = start_box(&net.ns("b"), data_b.path(), &plc_url);
    let renamed = client_until(&net, &["resolve", "atbox-2.local"], "atbox-2.local", |v| {
        has_address(v, "10.77.0.2")
    });
    eprintln!("conflict resolved: {renamed}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while name_in_use(&net.ns("b")).as_deref() != Some("atbox-2.local") {
        assert!(
            Instant::now() < deadline,
            "box B never reported atbox-2.local (says {:?})",
            name_in_use(&net.ns("b"))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(name_in_use(&net.ns("a")).as_deref(), Some("atbox.local"));
    let still = client_until(
        &net,
        &["resolve", "atbox.local"],
        "atbox.local after the conflict",
        |v| has_address(v, "10.77.0.1"),
    );
    assert!(
        !has_address(&still, "10.77.0.2"),
        "box B must not answer for atbox.local: {still}"
    );

    // `atbox lan` (our own browser) sees both boxes from the client's namespace.
    let lan = in_ns(&net.ns("c"), &atbox_bin())
        .args(["lan", "--seconds", "4", "--resolve", "atbox-2.local"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&lan.stdout);
    eprintln!("atbox lan:\n{said}");
    assert!(lan.status.success(), "{said}");
    assert!(said.contains("atbox-2.local: 10.77.0.2"), "{said}");
    assert!(
        said.contains("http://atbox.local.:2583") || said.contains("http://atbox.local:2583"),
        "{said}"
    );
    assert!(said.contains("owner.test did:plc:"), "{said}");
    assert!(said.contains("http://atbox-2.local:2583"), "{said}");

    // A late address (a second DHCP lease, say) is announced without a restart.
    ip(&[
        "-n",
        &net.ns("a"),
        "addr",
        "add",
        "10.77.0.11/24",
        "dev",
        "eth0",
    ])
    .unwrap();
    let late = client_until(&net, &["resolve", "atbox.local"], "the late address", |v| {
        has_address(v, "10.77.0.11")
    });
    eprintln!("after the new address: {late}");
}
