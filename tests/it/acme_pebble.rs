//! Built-in HTTPS against a real ACME server: Debian's `pebble` and
//! `pebble-challtestsrv`, started here on 127.0.0.1 (the package ships no config or
//! listener certificate, so the test makes them). Challenges are really validated:
//! pebble connects back to atbox's plain socket (HTTP-01) or HTTPS socket
//! (TLS-ALPN-01), resolving every name to 127.0.0.1 through challtestsrv's DNS.
//!
//! Checked: issuance with HTTP-01 and with TLS-ALPN-01, the certificate a TLS client
//! sees, renewal of a short-lived certificate, on-demand issuance for a new handle,
//! refusal for a name that is not ours, the port-80 redirect, the firehose WebSocket
//! over TLS, and the expiry in `atbox status`.

use crate::common;

use futures_util::StreamExt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Pebble {
    _procs: Vec<Proc>,
    directory: String,
    /// Trust for pebble's own HTTPS (what atbox's ACME client needs).
    listener_ca: PathBuf,
    /// Pebble's issuing root (what clients of atbox need).
    issuing_root: Vec<u8>,
}

fn free_port() -> u16 {
    common::server::free_port()
}

/// pebble + challtestsrv, validating against `http_port` / `tls_port` on 127.0.0.1.
async fn start_pebble(dir: &Path, http_port: u16, tls_port: u16, validity_secs: u64) -> Pebble {
    // A CA and a listener certificate for pebble's own HTTPS.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let listener_ca = dir.join("pebble-ca.pem");
    std::fs::write(&listener_ca, ca.pem()).unwrap();
    std::fs::write(dir.join("pebble.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("pebble.key"), key.serialize_pem()).unwrap();
    let (port, mgmt, dns, dns_mgmt) = (free_port(), free_port(), free_port(), free_port());
    let config = serde_json::json!({"pebble": {
        "listenAddress": format!("127.0.0.1:{port}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("pebble.pem"),
        "privateKey": dir.join("pebble.key"),
        "httpPort": http_port,
        "tlsPort": tls_port,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
        "certificateValidityPeriod": validity_secs,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let log = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
    let dns_server = Proc(
        Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args([
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-defaultIPv6",
                "",
            ])
            .args(["-defaultIPv4", "127.0.0.1"])
            .stdout(log("challtestsrv.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (apt package pebble)"),
    );
    let pebble = Proc(
        Command::new("pebble")
            .arg("-config")
            .arg(dir.join("pebble.json"))
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log("pebble.log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble (apt package pebble)"),
    );
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let directory = format!("https://127.0.0.1:{port}/dir");
    let deadline = Instant::now() + Duration::from_secs(20);
    let issuing_root = loop {
        let root = async {
            client
                .get(format!("https://127.0.0.1:{mgmt}/roots/0"))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await
        }
        .await;
        if let (Ok(root), Ok(_)) = (root, client.get(&directory).send().await) {
            break root.to_vec();
        }
        assert!(Instant::now() < deadline, "pebble did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Pebble {
        _procs: vec![dns_server, pebble],
        directory,
        listener_ca,
        issuing_root,
    }
}

const HOST: &str = "pds.test";

fn start_atbox(
    pebble: &Pebble,
    data: &Path,
    http: u16,
    https: u16,
    challenge: &str,
    plc: &str,
) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .arg("serve")
        .env("ATBOX_HOSTNAME", HOST)
        .env("ATBOX_HANDLE_DOMAINS", format!(".{HOST}"))
        .env("ATBOX_LISTEN", format!("127.0.0.1:{http}"))
        .env("ATBOX_HTTPS_LISTEN", format!("127.0.0.1:{https}"))
        .env("ATBOX_TLS", "acme")
        .env("ATBOX_ACME_DIRECTORY", &pebble.directory)
        .env("ATBOX_ACME_CA_BUNDLE", &pebble.listener_ca)
        .env("ATBOX_ACME_CHALLENGE", challenge)
        .env("ATBOX_ACME_EMAIL", "owner@example.com")
        .env("ATBOX_DATA_DIR", data)
        .env("ATBOX_PLC_URL", plc)
        .env("ATBOX_LOG", "atbox=info,warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(data.with_extension("log")).unwrap())
        .spawn()
        .unwrap();
    Proc(child)
}

fn tls_config(root_pem: &[u8]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// A verified TLS connection to atbox for `name`, and the leaf certificate it showed.
async fn connect(
    config: &Arc<rustls::ClientConfig>,
    https: u16,
    name: &str,
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        Vec<u8>,
    ),
    String,
> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", https))
        .await
        .map_err(|e| e.to_string())?;
    let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(config.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((stream, leaf))
}

async fn leaf_until_ok(config: &Arc<rustls::ClientConfig>, https: u16, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match connect(config, https, name).await {
            Ok((_, leaf)) => return leaf,
            Err(e) => assert!(Instant::now() < deadline, "no certificate for {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn serial_and_names(der: &[u8]) -> (String, Vec<String>) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let names = cert
        .subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .map(|n| n.to_string())
                .collect()
        })
        .unwrap_or_default();
    (cert.raw_serial_as_string(), names)
}

fn log_of(data: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(data.with_extension("log")) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_issuance_renewal_on_demand_and_refusal_against_pebble_l6() {
    if Command::new("pebble").arg("-version").output().is_err() {
        panic!("pebble is not installed: run `bash .ci/install` (apt package pebble)");
    }
    let plc = common::server::start_plc();
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_port(), free_port());
    // 60-second certificates: renewal is due after 40.
    let pebble = start_pebble(dir.path(), http, https, 60).await;
    let client_tls = tls_config(&pebble.issuing_root);

    // HTTP-01 first (pebble validates over our plain socket).
    let data_http01 = dir.path().join("atbox-http01");
    {
        let _atbox = start_atbox(&pebble, &data_http01, http, https, "http-01", &plc.url);
        let leaf = leaf_until_ok(&client_tls, https, HOST).await;
        assert!(serial_and_names(&leaf).1.iter().any(|n| n.contains(HOST)));
        let log = log_of(&data_http01);
        assert!(
            !log.contains("trying"),
            "HTTP-01 must work by itself:\n{log}"
        );
    }

    // Then TLS-ALPN-01 (pebble validates over our HTTPS socket), on a fresh box.
    let data = dir.path().join("atbox");
    let _atbox = start_atbox(&pebble, &data, http, https, "tls-alpn-01", &plc.url);
    let leaf = leaf_until_ok(&client_tls, https, HOST).await;
    let (first_serial, names) = serial_and_names(&leaf);
    assert!(names.iter().any(|n| n.contains(HOST)), "{names:?}");
    assert!(
        !log_of(&data).contains("trying"),
        "TLS-ALPN-01 must work by itself:\n{}",
        log_of(&data)
    );

    // The PDS over HTTPS, as a client trusting only pebble's root sees it.
    let web = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pebble.issuing_root).unwrap())
        .resolve(HOST, format!("127.0.0.1:{https}").parse().unwrap())
        .resolve(
            &format!("alice.{HOST}"),
            format!("127.0.0.1:{https}").parse().unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://{HOST}:{https}");
    let health = web
        .get(format!("{base}/xrpc/_health"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());

    // Port 80: our names go to HTTPS, challenges and LAN addresses do not.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!("http://127.0.0.1:{http}/xrpc/_health?x=1"))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://{HOST}:{https}/xrpc/_health?x=1").as_str()
    );
    let r = plain
        .get(format!(
            "http://127.0.0.1:{http}/.well-known/acme-challenge/nope"
        ))
        .header("host", HOST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "challenge paths are never redirected");
    // The setup page's progress (over the LAN address) shows the certificate issued.
    let status: serde_json::Value = plain
        .get(format!("http://127.0.0.1:{http}/setup/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["tls"], "acme", "{status}");
    assert_eq!(status["certificate"]["name"], HOST, "{status}");
    assert!(
        status["certificate"]["notAfter"].as_i64().unwrap() > chrono::Utc::now().timestamp(),
        "{status}"
    );
    let r = plain
        .get(format!("http://127.0.0.1:{http}/xrpc/_health"))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "the LAN (an IP address) is served in plain HTTP"
    );

    // A name that is not ours gets no certificate (and no certificate is asked for).
    let refused = connect(&client_tls, https, &format!("bob.{HOST}")).await;
    assert!(refused.is_err(), "bob.{HOST} has no account");

    // A new account's handle gets its certificate on demand.
    let created = web
        .post(format!("{base}/xrpc/com.atproto.server.createAccount"))
        .json(&serde_json::json!({"handle": format!("alice.{HOST}"), "email": "alice@example.com", "password": "alice pw"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let created_body: serde_json::Value = created.json().await.unwrap();
    let leaf = leaf_until_ok(&client_tls, https, &format!("alice.{HOST}")).await;
    assert!(serial_and_names(&leaf)
        .1
        .iter()
        .any(|n| n.contains(&format!("alice.{HOST}"))));
    let did = web
        .get(format!(
            "https://alice.{HOST}:{https}/.well-known/atproto-did"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(did.starts_with("did:plc:"), "{did}");

    // Security review L6: a deactivated account's handle is no longer one of our names:
    // its handshakes are refused (and renewal drops its certificate).
    let token = created_body["accessJwt"].as_str().unwrap().to_owned();
    let deactivated = web
        .post(format!("{base}/xrpc/com.atproto.server.deactivateAccount"))
        .bearer_auth(&token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(deactivated.status().is_success());
    let refused = connect(&client_tls, https, &format!("alice.{HOST}")).await;
    assert!(refused.is_err(), "alice.{HOST} is deactivated");

    // The firehose over TLS.
    let (tls, _) = connect(&client_tls, https, HOST).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("wss://{HOST}:{https}/xrpc/com.atproto.sync.subscribeRepos?cursor=0"),
        tls,
    )
    .await
    .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a firehose frame")
        .unwrap()
        .unwrap();
    assert!(frame.is_binary());

    // The expiry shows in `atbox status`.
    let status = Command::new(env!("CARGO_BIN_EXE_atbox"))
        .arg("status")
        .env("ATBOX_DATA_DIR", &data)
        .env("ATBOX_TLS", "acme")
        .env("ATBOX_HOSTNAME", HOST)
        .env("ATBOX_LISTEN", format!("127.0.0.1:{http}"))
        .env("ATBOX_PLC_URL", &plc.url)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&status.stdout);
    assert!(
        said.contains(HOST) && said.contains("valid until"),
        "{said}"
    );

    // Renewal: before the 60-second certificate runs out, a new one is served.
    let deadline = Instant::now() + Duration::from_secs(75);
    loop {
        let leaf = leaf_until_ok(&client_tls, https, HOST).await;
        if serial_and_names(&leaf).0 != first_serial {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never renewed:\n{}",
            log_of(&data)
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
