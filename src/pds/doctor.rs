//! `atbox doctor`: can the world reach this PDS, and does the network see it?
//!
//! Self-hosting goes wrong in a handful of ways — a DNS record pointing elsewhere, a
//! port not forwarded, no certificate, a clock off, a DID document naming another
//! server, a handle that does not resolve, a relay that stopped crawling. Each check
//! here looks at one of them from the box itself and, when it fails, says what to do.
//! Only services the owner configured are asked (the PLC directory, the relays,
//! `public_ip_url`, DNS); nothing is sent to a third party behind their back.

use super::AppState;
use crate::config::TlsMode;
use crate::storage::{accounts, relays};
use crate::syntax::{Did, Handle};
use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
    /// Not applicable to this configuration.
    Skip,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone)]
pub struct Finding {
    pub check: String,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a failure or warning.
    pub fix: Option<String>,
}

fn finding(check: &str, verdict: Verdict, detail: String, fix: Option<&str>) -> Finding {
    Finding {
        check: check.to_owned(),
        verdict,
        detail,
        fix: fix.map(str::to_owned),
    }
}

/// The server runs the checks this long after starting (the network has had time to
/// come up)...
const WATCH_FIRST: Duration = Duration::from_secs(90);
/// ...and then this often, for the screen.
const WATCH_EVERY: Duration = Duration::from_secs(30 * 60);

/// Runs the checks periodically once an account exists, keeping the names of the
/// failing ones in `AppState::failing_checks`, where the screen's status snapshot
/// finds them. Clock and relays are left out: they have alerts of their own.
pub async fn watch(state: super::Ctx) {
    tokio::time::sleep(WATCH_FIRST).await;
    loop {
        let claimed = state
            .storage
            .read(|conn| Ok::<_, crate::storage::StorageError>(!accounts::list(conn)?.is_empty()))
            .await
            .unwrap_or(false);
        let failing: Vec<String> = if claimed {
            examine(&state)
                .await
                .into_iter()
                .filter(|f| f.verdict == Verdict::Fail)
                .filter(|f| f.check != "clock" && !f.check.starts_with("relay"))
                .map(|f| f.check)
                .collect()
        } else {
            Vec::new()
        };
        if !failing.is_empty() {
            tracing::warn!("doctor: failing checks: {}", failing.join(", "));
        }
        *state
            .failing_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = failing;
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Runs every check.
pub async fn examine(state: &AppState) -> Vec<Finding> {
    let mut out = vec![clock()];
    out.extend(dns(state).await);
    out.push(reachable(state).await);
    out.push(certificate(state));
    out.extend(identities(state).await);
    out.extend(relay_checks(state).await);
    out
}

fn clock() -> Finding {
    match crate::device::sysinfo::clock_synced() {
        Some(true) => finding("clock", Verdict::Pass, "synchronised (NTP)".into(), None),
        Some(false) => finding(
            "clock",
            Verdict::Fail,
            "not synchronised: signatures and certificates depend on the time".into(),
            Some("let the box reach NTP servers (UDP port 123); on the image, systemd-timesyncd does the rest"),
        ),
        None => finding("clock", Verdict::Warn, "the kernel does not say whether it is synchronised".into(), None),
    }
}

fn is_lan_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".local") || host.parse::<IpAddr>().is_ok()
}

/// The host name's address records, against this network's public address.
async fn dns(state: &AppState) -> Vec<Finding> {
    let host = &state.config.hostname;
    if is_lan_name(host) {
        return vec![finding(
            "dns",
            Verdict::Fail,
            format!("the host name is {host}, which only this LAN knows"),
            Some("set hostname to a public name you own (e.g. pds.example.com), with DNS records pointing at your home's public address"),
        )];
    }
    let resolved = state.resolver.lookup_host(host).await;
    if resolved.is_empty() {
        return vec![finding(
            "dns",
            Verdict::Fail,
            format!("{host} has no A or AAAA record"),
            Some("add an A record (and AAAA, if you have IPv6) for the host name pointing at your home's public address"),
        )];
    }
    let shown: Vec<String> = resolved.iter().map(ToString::to_string).collect();
    let Some(url) = &state.config.public_ip_url else {
        return vec![finding(
            "dns",
            Verdict::Pass,
            format!("{host} resolves to {}", shown.join(", ")),
            None,
        )];
    };
    let public = async {
        let text = state
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.trim().parse::<IpAddr>().ok()
    }
    .await;
    match public {
        None => vec![finding(
            "dns",
            Verdict::Warn,
            format!(
                "{host} resolves to {}; {url} did not tell this network's public address",
                shown.join(", ")
            ),
            Some("check public_ip_url: it must answer with an IP address as plain text"),
        )],
        Some(ip) if resolved.contains(&ip) => vec![finding(
            "dns",
            Verdict::Pass,
            format!(
                "{host} resolves to {}, this network's public address",
                shown.join(", ")
            ),
            None,
        )],
        Some(ip) => vec![finding(
            "dns",
            Verdict::Fail,
            format!(
                "{host} resolves to {}, but this network's public address is {ip}",
                shown.join(", ")
            ),
            Some(if ip.is_ipv6() {
                "set the host name's AAAA record to this address (or remove a stale one)"
            } else {
                "set the host name's A record to this address (dynamic DNS, if your provider changes it)"
            }),
        )],
    }
}

/// Whether the PDS answers at its public URL (through the router, when asked from the
/// LAN: routers without NAT loopback make this fail even when the world gets through,
/// which the relay check then settles).
async fn reachable(state: &AppState) -> Finding {
    let url = format!("{}/xrpc/_health", state.config.public_url);
    match state.http.get(&url).timeout(Duration::from_secs(10)).send().await {
        Ok(r) if r.status().is_success() => finding(
            "reachable",
            Verdict::Pass,
            format!("{} answers", state.config.public_url),
            None,
        ),
        Ok(r) => finding(
            "reachable",
            Verdict::Fail,
            format!("{url} answered {}: something else answers at that address", r.status()),
            Some("forward ports 80 and 443 on your router to this box, or fix the reverse proxy in front of it"),
        ),
        Err(e) => finding(
            "reachable",
            Verdict::Fail,
            format!("{url} does not answer: {}", causes(&e)),
            Some("forward ports 80 and 443 on your router to this box; if only this check fails while the relay check passes, your router lacks NAT loopback and all is well"),
        ),
    }
}

/// An error with its causes ("error sending request: ... : Connection refused"),
/// since the outermost message rarely says what actually went wrong.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text
}

fn certificate(state: &AppState) -> Finding {
    let host = &state.config.hostname;
    let not_after = match &state.config.tls {
        TlsMode::Off => {
            return finding(
                "certificate",
                Verdict::Skip,
                "tls = off: HTTPS is up to the proxy or tunnel in front".into(),
                None,
            )
        }
        TlsMode::Files { cert, .. } => std::fs::read(cert)
            .ok()
            .and_then(|pem| {
                use rustls::pki_types::pem::PemObject;
                let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
                    .next()?
                    .ok()?;
                crate::storage::certs::validity(&der).ok()
            })
            .map(|(_, after)| after),
        TlsMode::Acme => crate::storage::certs::stored_certificates(&state.config.data_dir)
            .into_iter()
            .find(|(name, _)| name == host)
            .map(|(_, after)| after),
    };
    let Some(not_after) = not_after else {
        return finding(
            "certificate",
            Verdict::Fail,
            format!("no certificate for {host} yet"),
            Some("the CA must reach the box: check the DNS record and that ports 80 and 443 are forwarded; atbox retries by itself"),
        );
    };
    let days = (not_after - crate::storage::unix_now()) as f64 / 86400.0;
    let until = chrono::DateTime::from_timestamp(not_after, 0).unwrap_or_default();
    if days <= 0.0 {
        finding(
            "certificate",
            Verdict::Fail,
            format!("expired on {until}"),
            Some("see the log (journalctl -u atbox) for why renewal fails"),
        )
    } else if days < 7.0 {
        finding(
            "certificate",
            Verdict::Warn,
            format!("expires in {days:.1} days ({until}) and should have been renewed"),
            Some("see the log (journalctl -u atbox) for why renewal fails"),
        )
    } else {
        finding(
            "certificate",
            Verdict::Pass,
            format!("valid for {days:.0} more days"),
            None,
        )
    }
}

/// For each account: its DID document names this PDS, and its handle resolves to it.
async fn identities(state: &AppState) -> Vec<Finding> {
    let list = state.storage.read(accounts::list).await.unwrap_or_default();
    if list.is_empty() {
        return vec![finding(
            "accounts",
            Verdict::Warn,
            "no account yet".into(),
            Some("create one (the setup page, or atbox account create)"),
        )];
    }
    let mut out = Vec::new();
    for account in list {
        let check = format!("identity {}", account.handle);
        let Ok(did) = Did::new(account.did.as_str()) else {
            continue;
        };
        match state.resolver.resolve_did_fresh(&did).await {
            Ok(doc) if doc.pds_endpoint().as_deref() == Some(state.config.public_url.as_str()) => {}
            Ok(doc) => {
                out.push(finding(
                    &check,
                    Verdict::Fail,
                    format!(
                        "the DID document of {did} names {} as its PDS, not {}",
                        doc.pds_endpoint().unwrap_or_else(|| "no server".into()),
                        state.config.public_url
                    ),
                    Some("update the #atproto_pds service in the DID document (for did:plc, a PLC operation signed by the rotation key)"),
                ));
                continue;
            }
            Err(e) => {
                out.push(finding(
                    &check,
                    Verdict::Fail,
                    format!("cannot resolve {did}: {e}"),
                    Some("check plc_url and the network"),
                ));
                continue;
            }
        }
        let resolved = match Handle::new(account.handle.as_str()) {
            Ok(h) => state.resolver.resolve_handle(&h).await,
            Err(_) => None,
        };
        out.push(match resolved {
            Some(d) if d.as_str() == did.as_str() => finding(
                &check,
                Verdict::Pass,
                format!("DID document points here; {} resolves to {did}", account.handle),
                None,
            ),
            Some(other) => finding(
                &check,
                Verdict::Fail,
                format!("{} resolves to {other}, not {did}", account.handle),
                Some("fix the _atproto TXT record (did=...) of the handle"),
            ),
            None => finding(
                &check,
                Verdict::Fail,
                format!("{} does not resolve (no _atproto TXT record, no /.well-known/atproto-did)", account.handle),
                Some("add a DNS TXT record _atproto.<handle> with did=<the DID>, or point the handle's name at this box (a wildcard *.hostname record)"),
            ),
        });
    }
    out
}

/// What the relay watchdog last found.
async fn relay_checks(state: &AppState) -> Vec<Finding> {
    if state.config.relays.is_empty() {
        return vec![finding(
            "relays",
            Verdict::Warn,
            "no relay configured: nobody will see your posts".into(),
            Some("set relays = \"bsky.network\""),
        )];
    }
    let rows = state.storage.read(relays::all).await.unwrap_or_default();
    state
        .config
        .relays
        .iter()
        .map(|relay| {
            let check = format!("relay {relay}");
            match rows.iter().find(|r| &r.relay == relay) {
                None => finding(&check, Verdict::Warn, "not checked yet".into(), Some("wait for the watchdog (relay_check_interval_secs), or run atbox relay crawl")),
                Some(r) if r.state == "ok" => finding(&check, Verdict::Pass, format!("crawling us: {}", r.detail), None),
                Some(r) if r.state == "lagging" => finding(&check, Verdict::Warn, format!("lagging: {}", r.detail), None),
                Some(r) => finding(
                    &check,
                    Verdict::Fail,
                    format!("{}: {}", r.state, r.detail),
                    Some("make sure the world reaches https://<hostname> (the checks above), then run atbox relay crawl"),
                ),
            }
        })
        .collect()
}
