//! Helpers shared by the integration tests: where the fixtures are and how to read them.

pub mod api;
pub mod inproc;
pub mod server;

use std::path::PathBuf;

/// The library's state on `dir`, with the development settings (in-process tests of
/// the pds boundary).
pub fn open_state(dir: &std::path::Path) -> atbox::pds::AppState {
    let mut config = atbox::config::development_default();
    config.data_dir = dir.to_owned();
    atbox::pds::AppState::open(config).unwrap()
}

/// Stores an active account directly (no PLC directory, no first commit): a did:web
/// whose document is local, with a fresh signing key.
pub async fn insert_account(
    state: &atbox::pds::AppState,
    did: &str,
    handle: &str,
    password_hash: String,
) {
    let account = atbox::storage::accounts::Account {
        did: did.into(),
        handle: handle.into(),
        email: None,
        password_hash,
        signing_key: atbox::crypto::Keypair::generate(atbox::crypto::KeyType::K256)
            .private_bytes()
            .to_vec(),
        created_at: "2024-01-01T00:00:00Z".into(),
        status: atbox::storage::accounts::AccountStatus::Active,
        email_confirmed: false,
    };
    state
        .storage
        .write(move |conn| atbox::storage::accounts::insert_account(conn, &account))
        .await
        .unwrap();
}

/// The in-repo copy of the public atproto interop vectors.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/atproto-interop-tests")
}

/// The lines of a vector file that are test cases: not blank, not `#` comments.
/// Lines are kept exactly as written (leading/trailing spaces are part of some cases).
pub fn vector_lines(rel: &str) -> Vec<String> {
    let text =
        std::fs::read_to_string(vectors_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

pub fn vector_json(rel: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(vectors_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Decodes base64 as the vectors write it (standard alphabet, padding optional).
pub fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(s.trim_end_matches('='))
        .unwrap()
}

/// Prints how many vectors a test checked (shown with `--nocapture`; quoted in notes).
pub fn report(what: &str, count: usize) {
    assert!(count > 0, "{what}: no vectors were checked");
    println!("vectors: {what}: {count} checked");
}

/// The reference-implementation oracle (tests/interop, Node): its directory, after
/// checking that `npm ci --prefix tests/interop` has been run.
pub fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/@atproto/repo").exists(),
        "the reference implementation is not installed: run `npm ci --prefix tests/interop` (bash .ci/run does)"
    );
    dir
}

/// [`run_node`] with no input, off the async threads (for async tests).
pub async fn run_node_async(script: &'static str, args: Vec<String>) -> (bool, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_node(script, &args, "")
    })
    .await
    .unwrap()
}

/// Runs a Node script of the oracle with `input` on stdin; returns its one JSON line.
pub fn run_node(script: &str, args: &[&str], input: &str) -> (bool, serde_json::Value) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = interop_dir();
    let mut child = Command::new("node")
        .arg(dir.join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node must be installed (Node 20+)");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| {
        panic!(
            "{script} printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let json = serde_json::from_str(line).unwrap_or_else(|e| panic!("{script}: {e}: {line}"));
    (out.status.success(), json)
}
