//! mDNS / DNS-SD on the LAN: `atbox.local`, `_http._tcp` and `_atproto-pds._tcp`.
//!
//! Built on the `mdns-sd` crate, which probes before announcing and, when another
//! device already owns the name, picks the next one as RFC 6762 §9 says
//! (`atbox-2.local`); we follow its name-change events so the screen shows the name
//! actually in use. Addresses are tracked automatically (`enable_addr_auto`): a
//! DHCP lease that arrives late, or changes, is announced without a restart.
//!
//! Off by default (`mdns = false`): multicast from a developer's laptop or a CI
//! machine would advertise a test server to the whole network. The image turns it on.

use mdns_sd::{DaemonEvent, IfKind, ServiceDaemon, ServiceInfo};
use std::sync::{Arc, Mutex};

const HTTP_SERVICE: &str = "_http._tcp.local.";
const PDS_SERVICE: &str = "_atproto-pds._tcp.local.";

/// The running advertiser; dropping it withdraws the records (goodbye packets).
pub struct Mdns {
    daemon: ServiceDaemon,
    instance: String,
    host: String,
    port: u16,
    name_in_use: Arc<Mutex<String>>,
    account: Mutex<Option<(String, String)>>,
}

/// What went wrong starting mDNS, as one line.
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct MdnsError(String);

fn err(e: mdns_sd::Error) -> MdnsError {
    MdnsError(e.to_string())
}

impl Mdns {
    /// Advertises `<name>.local` and both services on `port`.
    pub fn start(name: &str, port: u16) -> Result<Mdns, MdnsError> {
        let daemon = ServiceDaemon::new().map_err(err)?;
        // Only LAN addresses in our answers: a phone must never be told 127.0.0.1.
        daemon
            .disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
            .map_err(err)?;
        let host = format!("{name}.local.");
        let name_in_use = Arc::new(Mutex::new(format!("{name}.local")));
        let events = daemon.monitor().map_err(err)?;
        let shared = name_in_use.clone();
        let host_for_events = host.clone();
        std::thread::Builder::new()
            .name("mdns-events".into())
            .spawn(move || {
                while let Ok(event) = events.recv() {
                    match event {
                        DaemonEvent::NameChange(change)
                            if change.original.eq_ignore_ascii_case(&host_for_events) =>
                        {
                            let now = change.new_name.trim_end_matches('.').to_owned();
                            let mut current = shared.lock().expect("name lock");
                            if *current != now {
                                tracing::info!(
                                    "mDNS: {} is taken on this network; using {now}",
                                    change.original.trim_end_matches('.')
                                );
                                *current = now;
                            }
                        }
                        DaemonEvent::IpAdd(ip) => {
                            tracing::info!("mDNS: announcing new address {ip}")
                        }
                        DaemonEvent::Error(e) => tracing::debug!("mDNS: {e}"),
                        _ => {}
                    }
                }
            })
            .map_err(|e| MdnsError(e.to_string()))?;
        let mdns = Mdns {
            daemon,
            instance: name.to_owned(),
            host,
            port,
            name_in_use,
            account: Mutex::new(None),
        };
        let http = ServiceInfo::new(
            HTTP_SERVICE,
            name,
            &mdns.host,
            (),
            port,
            &[("path", "/")][..],
        )
        .map_err(err)?
        .enable_addr_auto();
        mdns.daemon.register(http).map_err(err)?;
        mdns.register_pds(None)?;
        Ok(mdns)
    }

    fn register_pds(&self, account: Option<&(String, String)>) -> Result<(), MdnsError> {
        let mut txt = vec![("v", "1"), ("path", "/xrpc")];
        if let Some((did, handle)) = account {
            txt.push(("did", did.as_str()));
            txt.push(("handle", handle.as_str()));
        }
        let info = ServiceInfo::new(
            PDS_SERVICE,
            &self.instance,
            &self.host,
            (),
            self.port,
            &txt[..],
        )
        .map_err(err)?
        .enable_addr_auto();
        self.daemon.register(info).map_err(err)
    }

    /// Publishes the first account (`did=`, `handle=` in the PDS service's TXT); a
    /// no-op when unchanged.
    pub fn set_account(&self, account: Option<(String, String)>) {
        let mut current = self.account.lock().expect("account lock");
        if *current == account {
            return;
        }
        if let Err(e) = self.register_pds(account.as_ref()) {
            tracing::warn!("{e}");
            return;
        }
        *current = account;
    }

    /// The host name in use, e.g. `atbox.local` (or `atbox-2.local` after a conflict).
    pub fn name_in_use(&self) -> String {
        self.name_in_use.lock().expect("name lock").clone()
    }
}

/// A PDS found on the LAN (`atbox lan`).
#[derive(Debug, Clone)]
pub struct FoundPds {
    pub instance: String,
    pub host: String,
    pub port: u16,
    pub addresses: Vec<std::net::IpAddr>,
    pub did: Option<String>,
    pub handle: Option<String>,
}

/// Looks for `_atproto-pds._tcp` services on the LAN for `wait`.
pub fn browse_pds(wait: std::time::Duration) -> Result<Vec<FoundPds>, MdnsError> {
    let daemon = ServiceDaemon::new().map_err(err)?;
    let events = daemon.browse(PDS_SERVICE).map_err(err)?;
    let deadline = std::time::Instant::now() + wait;
    let mut found: Vec<FoundPds> = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        if let mdns_sd::ServiceEvent::ServiceResolved(info) = event {
            let mut addresses: Vec<_> = info.addresses.iter().map(|a| a.to_ip_addr()).collect();
            addresses.sort();
            let txt = |k: &str| {
                info.txt_properties
                    .get_property_val_str(k)
                    .map(str::to_owned)
            };
            let mut pds = FoundPds {
                instance: info
                    .fullname
                    .trim_end_matches(PDS_SERVICE)
                    .trim_end_matches('.')
                    .to_owned(),
                host: info.host.trim_end_matches('.').to_owned(),
                port: info.port,
                addresses,
                did: txt("did"),
                handle: txt("handle"),
            };
            // Later answers for the same instance may carry only some of its
            // addresses; keep the union.
            if let Some(seen) = found.iter().position(|f| f.instance == pds.instance) {
                let old = found.remove(seen);
                pds.addresses.extend(old.addresses);
                pds.addresses.sort();
                pds.addresses.dedup();
            }
            found.push(pds);
        }
    }
    let _ = daemon.shutdown();
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(found)
}

/// Resolves a `.local` host name by mDNS (empty if nobody answers within `wait`).
pub fn resolve_host(
    name: &str,
    wait: std::time::Duration,
) -> Result<Vec<std::net::IpAddr>, MdnsError> {
    let daemon = ServiceDaemon::new().map_err(err)?;
    let host = format!("{}.", name.trim_end_matches('.'));
    let events = daemon
        .resolve_hostname(&host, Some(wait.as_millis() as u64))
        .map_err(err)?;
    // A host's A and AAAA records may arrive in separate answers (each
    // interface announces on its own), so after the first answer keep
    // listening briefly for the rest instead of reporting a partial set.
    let mut deadline = std::time::Instant::now() + wait + std::time::Duration::from_millis(500);
    let mut addresses = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(mdns_sd::HostnameResolutionEvent::AddressesFound(_, found)) => {
                addresses.extend(found.iter().map(|a| a.to_ip_addr()));
                let settle = std::time::Instant::now() + std::time::Duration::from_millis(700);
                deadline = deadline.min(settle);
            }
            Ok(mdns_sd::HostnameResolutionEvent::SearchTimeout(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = daemon.shutdown();
    addresses.sort();
    addresses.dedup();
    Ok(addresses)
}

impl Drop for Mdns {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}
