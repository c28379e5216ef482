//! The official clients drive a real `atbox serve`: the TypeScript `@atproto/api`
//! scenario (tests/interop/client-scenario.mjs) and the Python `atproto` SDK scenario
//! (tests/python/scenario.py), each against its own server and the PLC stand-in, both
//! on 127.0.0.1. Every step asserts something; the exported repo is verified with
//! `@atproto/repo` against the key in the DID document.

use crate::common;

use common::server::{python, start_atbox, start_plc};
use std::process::Command;

fn run_scenario(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("\"ok\": false") || l.contains("\"ok\":false"))
        .collect();
    let summary = stdout.lines().last().unwrap_or("").to_owned();
    println!("{what}: {summary}");
    assert!(
        out.status.success() && failed.is_empty(),
        "{what} failed:\n{}\nstderr:\n{}",
        failed.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(summary.ends_with("0 failed"), "{what}: {summary}");
}

#[test]
fn typescript_client_scenario() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let mut cmd = Command::new("node");
    cmd.arg(common::interop_dir().join("client-scenario.mjs"))
        .args(["--pds", &atbox.server.url, "--plc", &plc.url]);
    run_scenario(cmd, "@atproto/api scenario");
}

#[test]
fn python_sdk_scenario() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[]);
    let mut cmd = Command::new(python());
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/scenario.py"
    ))
    .args(["--pds", &atbox.server.url, "--plc", &plc.url]);
    run_scenario(cmd, "atproto (Python) scenario");
}

#[test]
fn typescript_client_with_invites_required() {
    let plc = start_plc();
    let atbox = start_atbox(&plc.url, &[("ATBOX_INVITE_REQUIRED", "true")]);
    // The admin CLI makes the invite, on the running server's data directory.
    let code = atbox
        .cli(&plc.url, &["invite", "create", "--uses", "1"])
        .trim()
        .to_owned();
    assert!(code.starts_with("localhost-"), "{code}");
    let mut cmd = Command::new("node");
    cmd.arg(common::interop_dir().join("client-scenario.mjs"))
        .args([
            "--pds",
            &atbox.server.url,
            "--plc",
            &plc.url,
            "--invite",
            &code,
        ]);
    run_scenario(cmd, "@atproto/api scenario with an invite");
}
