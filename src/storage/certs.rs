//! Certificates on disk and in memory: one PEM chain and key per host name under
//! `<data_dir>/tls/`, files 0600 written atomically (temp file, fsync, rename, fsync the
//! directory), and the rustls server config built from each, ready for the handshake.

use super::write_durably;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// One certificate, ready to serve.
pub struct Issued {
    pub name: String,
    pub config: Arc<ServerConfig>,
    /// Validity (unix seconds).
    pub not_before: i64,
    pub not_after: i64,
}

impl Issued {
    /// From a PEM chain (leaf first) and its PEM private key.
    pub fn from_pem(name: &str, chain_pem: &[u8], key_pem: &[u8]) -> Result<Issued, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the certificate is not PEM: {e}"))?;
        let leaf = chain.first().ok_or("no certificate in the PEM file")?;
        let (not_before, not_after) = validity(leaf)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("the private key is not PEM: {e}"))?;
        let config = server_config(chain, key, vec![b"http/1.1".to_vec()])?;
        Ok(Issued {
            name: name.to_owned(),
            config,
            not_before,
            not_after,
        })
    }

    /// Whether it is time to renew: less than a third of its lifetime left.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }
}

/// A rustls server config for one certificate, with the ring provider. The key must
/// match the certificate, and the certificate must be one rustls can parse.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| format!("the key does not fit the certificate: {e}"))?;
    config_for(provider, certified, alpn)
}

/// The same without looking inside the certificate: for the TLS-ALPN-01 validation
/// certificate, whose critical acmeIdentifier extension rustls does not know.
pub fn server_config_unchecked(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| e.to_string())?;
    config_for(provider, CertifiedKey::new(chain, signer), alpn)
}

fn config_for(
    provider: Arc<rustls::crypto::CryptoProvider>,
    certified: CertifiedKey,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<ServerConfig>, String> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneCertificate(Arc::new(certified))));
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// Every handshake on a config gets the same certificate (the choice by name was made
/// before the config was picked).
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for OneCertificate {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A certificate's validity period, in unix seconds.
pub fn validity(cert: &CertificateDer<'_>) -> Result<(i64, i64), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    let v = parsed.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// The certificates atbox holds, by host name.
pub struct CertStore {
    dir: PathBuf,
    certs: RwLock<HashMap<String, Arc<Issued>>>,
}

fn file_names(name: &str) -> (String, String) {
    (format!("{name}.crt.pem"), format!("{name}.key.pem"))
}

impl CertStore {
    /// Opens `<data_dir>/tls`, loading every certificate found there (unreadable ones
    /// are skipped with a warning and will be issued again).
    pub fn open(data_dir: &Path) -> std::io::Result<CertStore> {
        let dir = data_dir.join("tls");
        crate::storage::create_private_dir(&dir).map_err(std::io::Error::other)?;
        let mut certs = HashMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".crt.pem") else {
                continue;
            };
            let (crt, key) = file_names(name);
            let loaded = std::fs::read(dir.join(&crt))
                .and_then(|c| Ok((c, std::fs::read(dir.join(&key))?)))
                .map_err(|e| e.to_string())
                .and_then(|(c, k)| Issued::from_pem(name, &c, &k));
            match loaded {
                Ok(issued) => {
                    certs.insert(name.to_owned(), Arc::new(issued));
                }
                Err(e) => tracing::warn!("tls: ignoring the stored certificate for {name}: {e}"),
            }
        }
        Ok(CertStore {
            dir,
            certs: RwLock::new(certs),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<Issued>> {
        self.certs.read().expect("cert lock").get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Issued>> {
        let mut all: Vec<_> = self
            .certs
            .read()
            .expect("cert lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Stores a new certificate (durably) and starts serving it.
    pub fn put(&self, name: &str, chain_pem: &str, key_pem: &str) -> Result<Arc<Issued>, String> {
        let issued = Arc::new(Issued::from_pem(
            name,
            chain_pem.as_bytes(),
            key_pem.as_bytes(),
        )?);
        let (crt, key) = file_names(name);
        // Key first: a certificate file is only ever next to its own key.
        write_durably(&self.dir.join(key), key_pem.as_bytes()).map_err(|e| e.to_string())?;
        write_durably(&self.dir.join(crt), chain_pem.as_bytes()).map_err(|e| e.to_string())?;
        self.certs
            .write()
            .expect("cert lock")
            .insert(name.to_owned(), issued.clone());
        Ok(issued)
    }
}

impl CertStore {
    /// Stops serving `name` and deletes its files (a handle that is no longer ours).
    pub fn remove(&self, name: &str) {
        self.certs.write().expect("cert lock").remove(name);
        let (crt, key) = file_names(name);
        let _ = std::fs::remove_file(self.dir.join(crt));
        let _ = std::fs::remove_file(self.dir.join(key));
    }
}

/// Certificate expiry for `atbox status`: `(name, not_after)` of every stored one.
pub fn stored_certificates(data_dir: &Path) -> Vec<(String, i64)> {
    CertStore::open(data_dir)
        .map(|s| {
            s.all()
                .iter()
                .map(|c| (c.name.clone(), c.not_after))
                .collect()
        })
        .unwrap_or_default()
}
