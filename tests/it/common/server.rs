//! Starting real servers for integration tests: the PLC directory stand-in (Node) and
//! `atbox serve` itself, each on a free port of 127.0.0.1, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when the test lets go of it.
pub struct Running {
    pub child: Child,
    pub url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody is listening on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the PLC directory stand-in; returns it with its URL.
pub fn start_plc() -> Running {
    start_standin("plc-standin.mjs", &[]).0
}

/// A Node stand-in from `tests/interop` (PLC, AppView, relay): running, and the JSON
/// line it printed on start (its `url`, and what else it announces).
pub fn start_standin(script: &str, args: &[&str]) -> (Running, serde_json::Value) {
    let mut child = Command::new("node")
        .arg(super::interop_dir().join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node must be installed");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{script} said {line:?}: {e}"));
    let running = Running {
        url: v["url"].as_str().unwrap().to_owned(),
        child,
    };
    (running, v)
}

/// A running `atbox serve` with its own data directory.
pub struct Atbox {
    pub server: Running,
    pub data_dir: tempfile::TempDir,
}

/// Starts `atbox serve` against `plc_url` with extra `ATBOX_*` settings.
pub fn start_atbox(plc_url: &str, extra_env: &[(&str, &str)]) -> Atbox {
    let data_dir = tempfile::tempdir().unwrap();
    let server = spawn_atbox(plc_url, data_dir.path(), extra_env);
    Atbox { server, data_dir }
}

/// Starts `atbox serve` on an existing data directory (e.g. again, after a kill).
pub fn spawn_atbox(
    plc_url: &str,
    data_dir: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> Running {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_atbox"));
    cmd.arg("serve")
        .env("ATBOX_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATBOX_DATA_DIR", data_dir)
        .env("ATBOX_PLC_URL", plc_url)
        .env("ATBOX_HOSTNAME", "localhost")
        .env("ATBOX_LOG", "atbox=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    // An empty value removes a variable set above.
    for (k, v) in extra_env {
        if v.is_empty() {
            cmd.env_remove(k);
        } else {
            cmd.env(k, v);
        }
    }
    let child = cmd.spawn().unwrap();
    wait_healthy(&format!("127.0.0.1:{port}"));
    Running {
        child,
        url: format!("http://localhost:{port}"),
    }
}

impl Atbox {
    /// Runs an admin command (`atbox account ...`) on this server's data directory;
    /// returns its stdout, failing the test if it fails.
    pub fn cli(&self, plc_url: &str, args: &[&str]) -> String {
        cli_on(self.data_dir.path(), plc_url, args)
    }
}

/// Runs `atbox <args>` on `data_dir` (the admin commands open it directly, beside a
/// running server); its stdout, failing the test if it fails.
pub fn cli_on(data_dir: &std::path::Path, plc_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .args(args)
        .env("ATBOX_DATA_DIR", data_dir)
        .env("ATBOX_PLC_URL", plc_url)
        .env("ATBOX_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "atbox {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn wait_healthy(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("atbox did not start listening on {addr}");
}

/// The Python interpreter of the test virtualenv (`.ci/install` creates it).
pub fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/.venv/bin/python");
    assert!(
        venv.exists(),
        "the Python SDK is not installed: run `bash .ci/install` (it creates tests/python/.venv)"
    );
    venv
}

/// A DNS server the test controls: `pebble-challtestsrv` answering DNS only, its
/// records set over its management API ([`Dns::set`]). No default address: a name
/// without records does not resolve.
pub struct Dns {
    /// The management API (`url`) and the process.
    pub server: Running,
    /// Where it answers DNS (`ATBOX_DNS_SERVER`).
    pub addr: String,
}

pub fn start_dns() -> Dns {
    let (dns, mgmt) = (free_port(), free_port());
    let child = Command::new("pebble-challtestsrv")
        .args(["-management", &format!("127.0.0.1:{mgmt}")])
        .args(["-dns01", &format!("127.0.0.1:{dns}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .args(["-defaultIPv4", "", "-defaultIPv6", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pebble-challtestsrv (apt package pebble): run bash .ci/install");
    wait_healthy(&format!("127.0.0.1:{mgmt}"));
    Dns {
        server: Running {
            child,
            url: format!("http://127.0.0.1:{mgmt}"),
        },
        addr: format!("127.0.0.1:{dns}"),
    }
}

impl Dns {
    /// Calls the management API, e.g. `set("set-txt", {"host": "_atproto.x.", "value": "did=..."})`.
    pub fn set(&self, path: &str, body: serde_json::Value) {
        let out = Command::new("curl")
            .args(["-sf", "-X", "POST", "-d", &body.to_string()])
            .arg(format!("{}/{path}", self.server.url))
            .output()
            .unwrap();
        assert!(out.status.success(), "challtestsrv {path} {body}: {out:?}");
    }
}
