//! ACME (RFC 8555): getting and renewing certificates from Let's Encrypt (or any ACME
//! server: tests use pebble) with the `instant-acme` crate over our own reqwest client.
//!
//! A certificate is issued for the PDS host name at start and, on demand, for a handle
//! under it the first time a client asks for that name (the caller checks the name is
//! ours first). Challenges: TLS-ALPN-01 on the HTTPS socket (`acme_challenge`'s
//! default: it needs only port 443) or HTTP-01 on the plain socket; if the preferred
//! one fails the other is tried. One issuance per name at a time; a name that failed
//! waits (doubling, up to 6 hours) before it is tried again, which keeps a broken setup
//! within the CA's rate limits. Certificates are renewed when a third of their life is
//! left.

use crate::storage::certs::{server_config_unchecked, CertStore, Issued};
use crate::storage::write_durably;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeType,
    HttpClient, Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::server::ServerConfig;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Answers to pending challenges, for the HTTP and TLS listeners.
#[derive(Default)]
pub(crate) struct Challenges {
    /// HTTP-01: token → key authorization.
    http01: Mutex<HashMap<String, String>>,
    /// TLS-ALPN-01: host name → a config with the validation certificate.
    alpn: Mutex<HashMap<String, Arc<ServerConfig>>>,
}

impl Challenges {
    pub(crate) fn http01(&self, token: &str) -> Option<String> {
        self.http01
            .lock()
            .expect("challenge lock")
            .get(token)
            .cloned()
    }

    pub(crate) fn alpn(&self, name: &str) -> Option<Arc<ServerConfig>> {
        self.alpn.lock().expect("challenge lock").get(name).cloned()
    }
}

/// The TLS-ALPN-01 validation certificate (RFC 8737): self-signed for `name`, with the
/// key authorization's digest in the critical acmeIdentifier extension, served only
/// to clients that offer the `acme-tls/1` protocol.
fn alpn_config(name: &str, digest: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    server_config_unchecked(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        vec![b"acme-tls/1".to_vec()],
    )
}

/// instant-acme's HTTP through reqwest (which trusts `acme_ca_bundle` too).
struct Http(reqwest::Client);

impl HttpClient for Http {
    fn request(
        &self,
        req: axum::http::Request<BodyWrapper<bytes::Bytes>>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>,
    > {
        let client = self.0.clone();
        Box::pin(async move {
            let other = |e: reqwest::Error| instant_acme::Error::Other(Box::new(e));
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
                .await
                .map_err(|e| instant_acme::Error::Other(e.into()))?;
            let req = reqwest::Request::try_from(axum::http::Request::from_parts(parts, body))
                .map_err(other)?;
            let rsp = client.execute(req).await.map_err(other)?;
            Ok(BytesResponse::from(
                axum::http::Response::<reqwest::Body>::from(rsp),
            ))
        })
    }
}

pub(crate) struct Acme {
    directory: String,
    email: Option<String>,
    http: reqwest::Client,
    account_file: PathBuf,
    account: tokio::sync::OnceCell<Account>,
    prefer: ChallengeType,
    pub store: Arc<CertStore>,
    pub challenges: Arc<Challenges>,
    /// One issuance per name at a time.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Names that failed: (not before, failures so far).
    failures: Mutex<HashMap<String, (i64, u32)>>,
}

const FIRST_BACKOFF_SECS: i64 = 60;
const MAX_BACKOFF_SECS: i64 = 6 * 3600;

fn now() -> i64 {
    crate::storage::unix_now()
}

impl Acme {
    pub(crate) fn new(
        config: &crate::config::Config,
        store: Arc<CertStore>,
    ) -> Result<Acme, String> {
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("atbox/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30));
        let roots = crate::identity::outbound::extra_roots(
            "acme_ca_bundle",
            config.acme_ca_bundle.as_deref(),
        )?;
        for cert in roots {
            http = http.add_root_certificate(cert);
        }
        Ok(Acme {
            directory: config.acme_directory.clone(),
            email: config.acme_email.clone(),
            http: http.build().map_err(|e| e.to_string())?,
            account_file: config.data_dir.join("tls/acme-account.json"),
            account: Default::default(),
            prefer: match config.acme_challenge.as_str() {
                "http-01" => ChallengeType::Http01,
                _ => ChallengeType::TlsAlpn01,
            },
            challenges: Default::default(),
            store,
            inflight: Default::default(),
            failures: Default::default(),
        })
    }

    /// The ACME account: the stored one for this directory, or a new one (stored).
    async fn account(&self) -> Result<&Account, String> {
        self.account
            .get_or_try_init(|| async {
                let builder = || Account::builder_with_http(Box::new(Http(self.http.clone())));
                if let Ok(text) = std::fs::read_to_string(&self.account_file) {
                    let saved: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if saved["directory"] == self.directory.as_str() {
                        if let Ok(creds) = serde_json::from_value::<AccountCredentials>(
                            saved["credentials"].clone(),
                        ) {
                            return builder()
                                .from_credentials(creds)
                                .await
                                .map_err(|e| format!("ACME account: {e}"));
                        }
                    }
                }
                let contact = self.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, creds) = builder()
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot register with the ACME server {}: {e}",
                            self.directory
                        )
                    })?;
                let saved =
                    serde_json::json!({ "directory": self.directory, "credentials": creds });
                write_durably(&self.account_file, saved.to_string().as_bytes())
                    .map_err(|e| format!("cannot store the ACME account: {e}"))?;
                tracing::info!("tls: registered an ACME account with {}", self.directory);
                Ok(account)
            })
            .await
    }

    /// The certificate for `name`: the stored one, or a new one issued now. The caller
    /// has checked that `name` is ours.
    pub(crate) async fn certificate(&self, name: &str) -> Result<Arc<Issued>, String> {
        if let Some(c) = self.store.get(name) {
            return Ok(c);
        }
        self.issue(name, false).await
    }

    /// Issues (or, with `renew`, re-issues) the certificate for `name`.
    pub(crate) async fn issue(&self, name: &str, renew: bool) -> Result<Arc<Issued>, String> {
        let lock = self
            .inflight
            .lock()
            .expect("inflight lock")
            .entry(name.to_owned())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        // Someone else may have just done it.
        if let Some(c) = self.store.get(name) {
            if !renew || c.renew_at() > now() {
                return Ok(c);
            }
        }
        if let Some((not_before, _)) = self.failures.lock().expect("failures lock").get(name) {
            if *not_before > now() {
                return Err(format!(
                    "{name}: the last attempt failed; next try in {} s",
                    not_before - now()
                ));
            }
        }
        let other = match self.prefer {
            ChallengeType::Http01 => ChallengeType::TlsAlpn01,
            _ => ChallengeType::Http01,
        };
        let result = match self.order(name, self.prefer.clone()).await {
            Ok(c) => Ok(c),
            Err(first) => {
                tracing::info!("tls: {name}: {first}; trying {other:?}");
                self.order(name, other)
                    .await
                    .map_err(|second| format!("{first}; then {second}"))
            }
        };
        let mut failures = self.failures.lock().expect("failures lock");
        match &result {
            Ok(c) => {
                failures.remove(name);
                tracing::info!(
                    "tls: certificate for {name} valid until {}",
                    chrono::DateTime::from_timestamp(c.not_after, 0).unwrap_or_default()
                );
            }
            Err(e) => {
                let count = failures.get(name).map_or(0, |f| f.1) + 1;
                let wait = (FIRST_BACKOFF_SECS << (count - 1).min(10)).min(MAX_BACKOFF_SECS);
                failures.insert(name.to_owned(), (now() + wait, count));
                tracing::warn!("tls: no certificate for {name}: {e} (next try in {wait} s)");
            }
        }
        result
    }

    /// One order for `name`, answered with challenges of type `kind`.
    async fn order(&self, name: &str, kind: ChallengeType) -> Result<Arc<Issued>, String> {
        let account = self.account().await?;
        let ids = [Identifier::Dns(name.to_owned())];
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut tokens = Vec::new();
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the ACME server offers no {kind:?} challenge"))?;
            let key_auth = challenge.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    self.challenges
                        .http01
                        .lock()
                        .expect("challenge lock")
                        .insert(challenge.token.clone(), key_auth.as_str().to_owned());
                    tokens.push(challenge.token.clone());
                }
                _ => {
                    let config = alpn_config(name, key_auth.digest().as_ref())?;
                    self.challenges
                        .alpn
                        .lock()
                        .expect("challenge lock")
                        .insert(name.to_owned(), config);
                }
            }
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        let status = order
            .poll_ready(&RetryPolicy::new().timeout(Duration::from_secs(90)))
            .await;
        {
            let mut http = self.challenges.http01.lock().expect("challenge lock");
            for t in &tokens {
                http.remove(t);
            }
            self.challenges
                .alpn
                .lock()
                .expect("challenge lock")
                .remove(name);
        }
        let status = status.map_err(|e| format!("validation: {e}"))?;
        if status != OrderStatus::Ready {
            let why = order
                .state()
                .error
                .as_ref()
                .and_then(|p| p.detail.clone())
                .unwrap_or_else(|| format!("the order is {status:?}"));
            return Err(format!("{kind:?} validation failed: {why}"));
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params =
            rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| e.to_string())?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params.serialize_request(&key).map_err(|e| e.to_string())?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&RetryPolicy::new().timeout(Duration::from_secs(90)))
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        self.store.put(name, &chain, &key.serialize_pem())
    }

    /// When a name that failed may be tried again (0 if it has not failed).
    fn retry_at(&self, name: &str) -> i64 {
        self.failures
            .lock()
            .expect("failures lock")
            .get(name)
            .map_or(0, |f| f.0)
    }

    /// Keeps `names` (the PDS host name) certified and renews every stored certificate
    /// when a third of its life is left. Runs until the server stops.
    pub(crate) async fn renew_forever<F>(self: Arc<Self>, names: Vec<String>, still_ours: F)
    where
        F: Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>,
    {
        loop {
            let mut next = now() + 3600;
            for name in &names {
                if self.store.get(name).is_none() {
                    let _ = self.issue(name, false).await;
                }
            }
            for cert in self.store.all() {
                // A handle that changed, or an account gone or taken down: its
                // certificate goes rather than being renewed for ever.
                if !names.contains(&cert.name) && !still_ours(cert.name.clone()).await {
                    tracing::info!(
                        "tls: {} is no longer one of our names; dropping its certificate",
                        cert.name
                    );
                    self.store.remove(&cert.name);
                    continue;
                }
                if cert.renew_at() <= now() {
                    let _ = self.issue(&cert.name, true).await;
                }
                if let Some(c) = self.store.get(&cert.name) {
                    // A failed renewal waits for its backoff, not for the past due date.
                    next = next.min(c.renew_at().max(self.retry_at(&cert.name)));
                }
            }
            for name in &names {
                if self.store.get(name).is_none() {
                    next = next.min(self.retry_at(name));
                }
            }
            tokio::time::sleep(Duration::from_secs((next - now()).clamp(1, 3600) as u64)).await;
        }
    }
}
