//! Resolving handles to DIDs (`specs/handle#handle-resolution`: DNS TXT
//! `_atproto.<handle>` and `https://<handle>/.well-known/atproto-did`) and DIDs to
//! documents (did:plc through the directory, did:web through `/.well-known/did.json`).

use super::{DidDocument, IdentityError};
use crate::syntax::{Did, Handle};
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A cached document is used without asking again for this long...
const FRESH_FOR: Duration = Duration::from_secs(60 * 60);
/// ...and, when the network fails, still used up to this age.
const STALE_FOR: Duration = Duration::from_secs(24 * 60 * 60);
/// Most documents kept (a PDS resolves its own accounts and the services it talks to).
const CACHE_SIZE: usize = 10_000;

/// Resolves handles and DIDs over the network, caching DID documents.
#[derive(Clone)]
pub struct Resolver {
    http: reqwest::Client,
    plc_url: String,
    dns: Option<TokioResolver>,
    docs: Arc<Mutex<HashMap<String, (DidDocument, Instant)>>>,
}

/// A DNS resolver: the system's, or `server` (config `dns_server`).
pub fn dns_resolver(server: Option<std::net::SocketAddr>) -> Option<TokioResolver> {
    use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
    use hickory_resolver::name_server::TokioConnectionProvider;
    match server {
        None => TokioResolver::builder_tokio().ok().map(|b| b.build()),
        Some(addr) => {
            let servers = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            let config = ResolverConfig::from_parts(None, vec![], servers);
            Some(
                TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                    .build(),
            )
        }
    }
}

/// Lets reqwest look names up through the same resolver (so `dns_server` applies to
/// HTTPS fetches too).
pub struct HttpDns(pub TokioResolver);

impl reqwest::dns::Resolve for HttpDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.0.clone();
        Box::pin(async move {
            let found = dns.lookup_ip(name.as_str()).await?;
            let addrs: Vec<std::net::SocketAddr> = found
                .iter()
                .map(|ip| std::net::SocketAddr::new(ip, 0))
                .collect();
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Resolver {
    pub fn new(http: reqwest::Client, plc_url: &str, dns: Option<TokioResolver>) -> Self {
        Resolver {
            http,
            plc_url: plc_url.trim_end_matches('/').to_owned(),
            dns,
            docs: Default::default(),
        }
    }

    /// The addresses `host` resolves to (A and AAAA); empty if none or no DNS.
    pub async fn lookup_host(&self, host: &str) -> Vec<std::net::IpAddr> {
        let Some(dns) = &self.dns else {
            return Vec::new();
        };
        let name = format!("{}.", host.trim_end_matches('.'));
        match tokio::time::timeout(Duration::from_secs(5), dns.lookup_ip(name)).await {
            Ok(Ok(found)) => {
                let mut ips: Vec<_> = found.iter().collect();
                ips.sort();
                ips.dedup();
                ips
            }
            _ => Vec::new(),
        }
    }

    /// The DID a handle claims through DNS or HTTPS (not yet checked against the
    /// DID document: callers that need a verified handle compare both ways).
    pub async fn resolve_handle(&self, handle: &Handle) -> Option<Did> {
        if let Some(did) = self.resolve_handle_dns(handle).await {
            return Some(did);
        }
        self.resolve_handle_https(handle).await
    }

    async fn resolve_handle_dns(&self, handle: &Handle) -> Option<Did> {
        let dns = self.dns.as_ref()?;
        let name = format!("_atproto.{}.", handle.normalized());
        let lookup = tokio::time::timeout(Duration::from_secs(3), dns.txt_lookup(name))
            .await
            .ok()?
            .ok()?;
        let dids: Vec<Did> = lookup
            .iter()
            .filter_map(|txt| {
                let text: String = txt
                    .txt_data()
                    .iter()
                    .map(|d| String::from_utf8_lossy(d).into_owned())
                    .collect();
                text.strip_prefix("did=")
                    .and_then(|d| Did::new(d.trim()).ok())
            })
            .collect();
        // More than one DID is ambiguous: the spec says to fail.
        (dids.len() == 1).then(|| dids.into_iter().next().expect("one"))
    }

    async fn resolve_handle_https(&self, handle: &Handle) -> Option<Did> {
        let url = format!("https://{}/.well-known/atproto-did", handle.normalized());
        let res = self
            .http
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        if !res.status().is_success() {
            return None;
        }
        let text = res.text().await.ok()?;
        Did::new(text.lines().next()?.trim()).ok()
    }

    /// The DID document for `did`, from the cache when it is fresh. If the network
    /// fails, a document up to a day old is used rather than failing the caller.
    pub async fn resolve_did(&self, did: &Did) -> Result<DidDocument, IdentityError> {
        let cached = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(did.as_str())
            .cloned();
        if let Some((doc, at)) = &cached {
            if at.elapsed() < FRESH_FOR {
                return Ok(doc.clone());
            }
        }
        match self.resolve_did_fresh(did).await {
            Ok(doc) => Ok(doc),
            Err(e) => match cached {
                Some((doc, at)) if at.elapsed() < STALE_FOR => {
                    tracing::warn!(%did, "using a cached DID document: {e}");
                    Ok(doc)
                }
                _ => Err(e),
            },
        }
    }

    /// Drops a cached document (after this server changed it).
    pub fn forget(&self, did: &str) {
        self.docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(did);
    }

    /// The DID document for `did`, fetched now (and cached).
    pub async fn resolve_did_fresh(&self, did: &Did) -> Result<DidDocument, IdentityError> {
        let doc = self.fetch_did(did).await?;
        let mut docs = self.docs.lock().unwrap_or_else(|p| p.into_inner());
        if docs.len() >= CACHE_SIZE {
            docs.retain(|_, (_, at)| at.elapsed() < FRESH_FOR);
            if docs.len() >= CACHE_SIZE {
                docs.clear();
            }
        }
        docs.insert(did.to_string(), (doc.clone(), Instant::now()));
        Ok(doc)
    }

    async fn fetch_did(&self, did: &Did) -> Result<DidDocument, IdentityError> {
        let url = match did.method() {
            "plc" => format!("{}/{did}", self.plc_url),
            "web" => {
                let host = did.as_str().strip_prefix("did:web:").unwrap_or_default();
                if host.contains(':') {
                    // Ports (percent-encoded) and paths are not supported by atproto.
                    return Err(IdentityError::Unresolved(
                        did.to_string(),
                        "did:web with a port or path".into(),
                    ));
                }
                format!("https://{host}/.well-known/did.json")
            }
            m => {
                return Err(IdentityError::Unresolved(
                    did.to_string(),
                    format!("unsupported DID method {m:?}"),
                ))
            }
        };
        let unresolved = |why: String| IdentityError::Unresolved(did.to_string(), why);
        let res = self
            .http
            .get(&url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| unresolved(e.to_string()))?;
        if !res.status().is_success() {
            return Err(unresolved(format!("{url} answered {}", res.status())));
        }
        let doc: DidDocument = res
            .json()
            .await
            .map_err(|e| unresolved(format!("unreadable document: {e}")))?;
        if doc.id() != Some(did.as_str()) {
            return Err(IdentityError::BadDocument(
                did.to_string(),
                "its id is a different DID".into(),
            ));
        }
        Ok(doc)
    }
}
