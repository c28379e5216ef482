//! `tls = "files"`: HTTPS from a PEM certificate and key, re-read on SIGHUP (as after an
//! outside tool renewed them); a bad pair on reload keeps the old one serving.

use crate::common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn self_signed(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The leaf certificate atbox shows for `name`, trusting exactly `root_pem`.
async fn leaf(port: u16, name: &str, root_pem: &str) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap(),
            tcp,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(tls.get_ref().1.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn files_are_served_and_reloaded_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert1, key1) = self_signed("pds.example.net");
    std::fs::write(&cert_path, &cert1).unwrap();
    std::fs::write(&key_path, &key1).unwrap();
    let (http, https) = (common::server::free_port(), common::server::free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .arg("serve")
        .env("ATBOX_HOSTNAME", "pds.example.net")
        .env("ATBOX_LISTEN", format!("127.0.0.1:{http}"))
        .env("ATBOX_HTTPS_LISTEN", format!("127.0.0.1:{https}"))
        .env("ATBOX_TLS", "files")
        .env("ATBOX_TLS_CERT", &cert_path)
        .env("ATBOX_TLS_KEY", &key_path)
        .env("ATBOX_DATA_DIR", dir.path().join("data"))
        .env("ATBOX_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        match leaf(https, "pds.example.net", &cert1).await {
            Ok(l) => break l,
            Err(e) => assert!(Instant::now() < deadline, "no HTTPS: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A broken pair on SIGHUP: the old certificate stays.
    std::fs::write(&key_path, "not a key").unwrap();
    let hup = || {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    };
    hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(leaf(https, "pds.example.net", &cert1).await.unwrap(), first);
    // A renewed pair: served after SIGHUP.
    let (cert2, key2) = self_signed("pds.example.net");
    std::fs::write(&cert_path, &cert2).unwrap();
    std::fs::write(&key_path, &key2).unwrap();
    hup();
    let deadline = Instant::now() + Duration::from_secs(10);
    while leaf(https, "pds.example.net", &cert2).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not loaded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `tls = "acme"` before the box has a public host name (the image's first boot):
/// plain HTTP keeps working, with no redirect to an HTTPS that is not there.
#[test]
fn acme_without_a_public_name_serves_plain_http() {
    let plc = common::server::start_plc();
    let atbox = common::server::start_atbox(&plc.url, &[("ATBOX_TLS", "acme")]);
    let url = format!("{}/xrpc/_health", atbox.server.url);
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: localhost",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}
