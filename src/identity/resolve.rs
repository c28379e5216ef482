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
/// Most documents kept (a PDS resolves its own accounts and the services it talks to),
/// and most bytes of them: whatever the documents, the cache stays small.
const CACHE_SIZE: usize = 10_000;
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// The largest DID document read, and the largest `/.well-known/atproto-did` answer.
pub const MAX_DID_DOCUMENT: usize = 64 * 1024;
const MAX_HANDLE_ANSWER: usize = 1024;

/// Resolves handles and DIDs over the network, caching DID documents.
#[derive(Clone)]
pub struct Resolver {
    /// For the PLC directory the owner configured.
    http: reqwest::Client,
    /// For everything named by others: did:web hosts, handles (see `outbound`).
    outbound: super::Outbound,
    plc_url: String,
    dns: Option<TokioResolver>,
    docs: Arc<Mutex<DocCache>>,
}

/// Cached documents, with their size (in bytes of JSON) and when they were fetched.
#[derive(Default)]
struct DocCache {
    docs: HashMap<String, (DidDocument, usize, Instant)>,
    bytes: usize,
}

impl DocCache {
    fn get(&self, did: &str) -> Option<(DidDocument, Instant)> {
        self.docs.get(did).map(|(d, _, at)| (d.clone(), *at))
    }

    fn insert(&mut self, did: String, doc: DidDocument, size: usize) {
        self.remove(&did);
        if self.docs.len() >= CACHE_SIZE || self.bytes + size > CACHE_BYTES {
            self.docs.retain(|_, (_, _, at)| at.elapsed() < FRESH_FOR);
            self.bytes = self.docs.values().map(|(_, n, _)| n).sum();
            if self.docs.len() >= CACHE_SIZE || self.bytes + size > CACHE_BYTES {
                self.docs.clear();
                self.bytes = 0;
            }
        }
        self.bytes += size;
        self.docs.insert(did, (doc, size, Instant::now()));
    }

    fn remove(&mut self, did: &str) {
        if let Some((_, n, _)) = self.docs.remove(did) {
            self.bytes -= n;
        }
    }
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
    pub fn new(
        http: reqwest::Client,
        outbound: super::Outbound,
        plc_url: &str,
        dns: Option<TokioResolver>,
    ) -> Self {
        Resolver {
            http,
            outbound,
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
        self.txt_did(&format!("_atproto.{}", handle.normalized()))
            .await
    }

    /// The DID in the `did=` TXT record at `name` (`_atproto.<handle>`,
    /// `_lexicon.<authority>`); none if there is none, or more than one (ambiguous:
    /// the specs say to fail).
    pub async fn txt_did(&self, name: &str) -> Option<Did> {
        let dns = self.dns.as_ref()?;
        let name = format!("{}.", name.trim_end_matches('.'));
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
        (dids.len() == 1).then(|| dids.into_iter().next().expect("one"))
    }

    async fn resolve_handle_https(&self, handle: &Handle) -> Option<Did> {
        let url = format!("https://{}/.well-known/atproto-did", handle.normalized());
        let body = self
            .outbound
            .get_capped(&url, MAX_HANDLE_ANSWER, Duration::from_secs(5))
            .await
            .ok()?;
        let text = String::from_utf8(body).ok()?;
        Did::new(text.lines().next()?.trim()).ok()
    }

    /// The DID document for `did`, from the cache when it is fresh. If the network
    /// fails, a document up to a day old is used rather than failing the caller.
    pub async fn resolve_did(&self, did: &Did) -> Result<DidDocument, IdentityError> {
        let cached = self
            .docs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(did.as_str());
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
        let (doc, size) = self.fetch_did(did).await?;
        self.docs.lock().unwrap_or_else(|p| p.into_inner()).insert(
            did.to_string(),
            doc.clone(),
            size,
        );
        Ok(doc)
    }

    /// The document and its size in bytes: from the PLC directory (trusted, still
    /// capped) or a did:web host (through the outbound client).
    async fn fetch_did(&self, did: &Did) -> Result<(DidDocument, usize), IdentityError> {
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
        let timeout = Duration::from_secs(10);
        let body = if did.method() == "plc" {
            let fetch = async {
                let res = self.http.get(&url).send().await.map_err(|_| {
                    super::outbound::FetchError::Unreachable("the PLC directory".into())
                })?;
                super::outbound::read_capped(res, "the PLC directory", MAX_DID_DOCUMENT).await
            };
            tokio::time::timeout(timeout, fetch)
                .await
                .map_err(|_| unresolved("the PLC directory did not answer in time".into()))?
        } else {
            self.outbound
                .get_capped(&url, MAX_DID_DOCUMENT, timeout)
                .await
        }
        .map_err(|e| unresolved(e.to_string()))?;
        let doc: DidDocument = serde_json::from_slice(&body)
            .map_err(|e| unresolved(format!("unreadable document: {e}")))?;
        if doc.id() != Some(did.as_str()) {
            return Err(IdentityError::BadDocument(
                did.to_string(),
                "its id is a different DID".into(),
            ));
        }
        Ok((doc, body.len()))
    }
}
