//! The PDS's operations: what each XRPC method does, independent of HTTP.
//!
//! XRPC handlers (`crate::xrpc`) parse requests and call these; these compose storage
//! functions into reads and writer jobs, and call out to identity services. They hold
//! no SQL (that is `crate::storage`'s) and no HTTP framing (that is `crate::xrpc`'s).

pub mod accounts;
pub mod admin;
pub mod blobs;
pub mod delivery;
pub mod doctor;
pub mod identity;
pub mod import;
pub mod records;
pub mod sessions;
pub mod signed_in;
pub mod status;
pub mod sync;

use crate::auth::ratelimit::{FailureBudget, Limit, Limits};
use crate::auth::secrets::Secrets;
use crate::auth::tokens::TokenSigner;
use crate::config::Config;
use crate::crypto::{KeyType, Keypair};
use crate::error::{XrpcError, XrpcResult};
use crate::identity::plc::PlcClient;
use crate::identity::Resolver;
use crate::lexicon::Lexicons;
use crate::storage::accounts::{Account, AccountStatus};
use crate::storage::Storage;
use crate::syntax::TidGenerator;
use std::sync::Arc;
use std::time::Duration;

/// Repo exports (getRepo) that run at once; more wait their turn. Each holds a reader
/// connection and a few chunks, so a handful of relays resyncing never adds up.
pub const MAX_EXPORTS: usize = 2;

/// Everything a request may need, shared by all requests.
pub struct AppState {
    pub config: Config,
    pub storage: Storage,
    pub secrets: Secrets,
    pub tokens: TokenSigner,
    pub plc: PlcClient,
    pub resolver: Resolver,
    pub tids: TidGenerator,
    pub lexicons: Lexicons,
    /// For services the owner configured (PLC, relays, the AppView's DID document).
    pub http: reqwest::Client,
    /// For URLs taken from requests and documents others control (`identity::outbound`).
    pub outbound: crate::identity::Outbound,
    /// Rate limits (see `auth::ratelimit`).
    pub limits: Limits,
    /// Claim attempts on the LAN setup page, per client address; and wrong pairing
    /// codes from anyone (30, then 29 an hour: at most 725 a day, below a 1 in 1,000
    /// chance per day of guessing the 6-digit code).
    pub setup_attempts: Limit,
    pub pairing_failures: FailureBudget,
    /// When this process started (unix seconds) and its storage writes at that moment.
    pub started_at: i64,
    /// The doctor checks failing at the last periodic run (see `doctor::watch`).
    pub failing_checks: std::sync::Mutex<Vec<String>>,
    pub write_bytes_at_start: u64,
    /// The code on the screen that proves physical presence while the box is unclaimed.
    pub pairing: crate::auth::pairing::PairingCode,
    /// Asks `serve` to stop and start again in the same process (the setup page saved
    /// settings that the whole server must be rebuilt with).
    pub restart: tokio::sync::Notify,
    /// Why the claim saved across the last restart failed, for the setup page.
    pub claim_error: std::sync::Mutex<Option<String>>,
    /// The latest status snapshot (what the screen shows). `serve` connects this to
    /// the status collector; elsewhere it stays the start-up snapshot.
    pub snapshots: tokio::sync::watch::Receiver<crate::device::Snapshot>,
    /// Held by a sign-up from its invite check to its stored account (see
    /// `accounts::create_account`).
    pub signups: tokio::sync::Mutex<()>,
    /// Repo exports running at once (getRepo; see `sync::get_repo`).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// One repo import at a time (each holds a whole repo in memory while checked).
    pub imports: tokio::sync::Semaphore,
    /// Service-auth tokens already accepted (each is good once).
    pub service_jtis: crate::auth::service_jwt::ReplayCache,
    /// OAuth: DPoP nonces and replay cache, access tokens, pending sign-ins.
    pub oauth: crate::auth::oauth::OAuthState,
    /// Sends one-time codes by email (when `smtp_url` is set).
    pub mailer: Option<delivery::Mailer>,
    /// One-time codes on show on the screen and the LAN page (when not emailed).
    pub codes: delivery::CodeBoard,
    /// OAuth client metadata documents fetched lately: client_id → (fetched at, document).
    pub oauth_clients:
        std::sync::Mutex<std::collections::HashMap<String, (i64, serde_json::Value)>>,
}

pub type Ctx = Arc<AppState>;

impl AppState {
    /// Opens storage and secrets under the configured data directory.
    pub fn open(config: Config) -> anyhow::Result<AppState> {
        let options = crate::storage::WriterOptions {
            live_buffer: config.firehose_buffer_events,
            ..Default::default()
        };
        let storage = Storage::open(&config.data_dir, options)?;
        let secrets = Secrets::load_or_create(&config.data_dir)?;
        let dns = crate::identity::resolve::dns_resolver(config.dns_server);
        // No redirects even for the services the owner configured: none of them needs
        // one, and a compromised one must not bounce the box onto the LAN (H2, M3).
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("atbox/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30));
        if let (Some(_), Some(dns)) = (config.dns_server, &dns) {
            http = http.dns_resolver(Arc::new(crate::identity::resolve::HttpDns(dns.clone())));
        }
        let roots = crate::identity::outbound::extra_roots(
            "outbound_ca_bundle",
            config.outbound_ca_bundle.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        for root in &roots {
            http = http.add_root_certificate(root.clone());
        }
        let http = http.build()?;
        let outbound =
            crate::identity::Outbound::new(dns.clone(), config.proxy_allow_private, &roots)?;
        Ok(AppState {
            tokens: TokenSigner::new(&secrets.jwt_secret, &config.service_did()),
            plc: PlcClient::new(&config.plc_url, http.clone()),
            resolver: Resolver::new(http.clone(), outbound.clone(), &config.plc_url, dns),
            outbound,
            tids: TidGenerator::new(),
            mailer: delivery::Mailer::from_config(&config)?,
            codes: Default::default(),
            lexicons: Lexicons::embedded(),
            limits: Limits::default(),
            setup_attempts: Limit::new(10, Duration::from_secs(5 * 60)),
            pairing_failures: FailureBudget::new(30, Duration::from_secs(60 * 60)),
            started_at: crate::storage::unix_now(),
            failing_checks: Default::default(),
            write_bytes_at_start: crate::device::sysinfo::write_bytes(),
            pairing: Default::default(),
            restart: Default::default(),
            signups: Default::default(),
            service_jtis: Default::default(),
            oauth: crate::auth::oauth::OAuthState::new(
                &secrets.jwt_secret,
                config.public_url.trim_end_matches('/'),
                &config.service_did(),
            ),
            oauth_clients: Default::default(),
            imports: tokio::sync::Semaphore::new(1),
            exports: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
            claim_error: Default::default(),
            snapshots: tokio::sync::watch::channel(crate::device::Snapshot::booting(
                "opening the database",
                1,
                3,
            ))
            .1,
            config,
            storage,
            secrets,
            http,
        })
    }

    /// Counts a request from `client_ip` against `limit`, unless the address is one
    /// the owner exempted (`rate_limit_bypass`).
    pub fn check_limit(&self, limit: &Limit, client_ip: &str) -> XrpcResult<()> {
        let exempt = client_ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| self.config.rate_limit_bypass.contains(&ip));
        if exempt {
            return Ok(());
        }
        limit.check(client_ip)
    }

    /// What an OAuth scope grants, its permission sets (`include:`) taken from the
    /// embedded lexicons or, for others, the copies fetched from their publishers
    /// (`oauth::permission_sets`).
    pub fn scope_permissions(
        &self,
        scope: &str,
    ) -> Result<Arc<crate::auth::scopes::Permissions>, String> {
        let sets = |nsid: &str| {
            self.lexicons
                .def(nsid, "")
                .cloned()
                .or_else(|| self.oauth.remote_set(nsid))
        };
        self.oauth.permissions(scope, &sets)
    }

    /// The account for a DID or handle, or `None`.
    pub async fn find_account(&self, identifier: &str) -> XrpcResult<Option<Account>> {
        let id = identifier;
        self.storage.look_up(|conn| {
            use crate::storage::accounts::{by_did, by_email, by_handle};
            Ok::<_, XrpcError>(if id.starts_with("did:") {
                by_did(conn, id)?
            } else if id.contains('@') {
                by_email(conn, id)?
            } else {
                by_handle(conn, id)?
            })
        })
    }

    /// The account of a repo named in a request (DID or handle), which must exist here.
    pub async fn repo_account(&self, repo: &str) -> XrpcResult<Account> {
        self.find_account(repo)
            .await?
            .filter(|_| !repo.contains('@'))
            .ok_or_else(|| {
                XrpcError::named(
                    "RepoNotFound",
                    format!("could not find repo {repo:?} on this server"),
                )
            })
    }

    /// Like [`repo_account`](Self::repo_account), but the repo must also be active
    /// (sync endpoints refuse deactivated and taken-down repos with their own errors).
    pub async fn active_repo(&self, repo: &str) -> XrpcResult<Account> {
        let account = self.repo_account(repo).await?;
        match account.status {
            AccountStatus::Active => Ok(account),
            AccountStatus::Deactivated => Err(XrpcError::named(
                "RepoDeactivated",
                format!("repo {repo} is deactivated"),
            )),
            AccountStatus::Takendown => Err(XrpcError::named(
                "RepoTakendown",
                format!("repo {repo} has been taken down"),
            )),
        }
    }
}

/// The account's repo signing key.
///
/// Keys are kept once parsed: parsing derives the public key (a scalar multiplication,
/// as costly as signing), and every write needs the key. Keyed by the secret itself, so
/// an account whose key changes simply gets its new key.
pub fn signing_key(account: &Account) -> XrpcResult<Keypair> {
    static PARSED: std::sync::Mutex<Vec<(Vec<u8>, Keypair)>> = std::sync::Mutex::new(Vec::new());
    let mut parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, key)) = parsed.iter().find(|(s, _)| *s == account.signing_key) {
        return Ok(key.clone());
    }
    let key = Keypair::from_private_bytes(KeyType::K256, &account.signing_key).map_err(|e| {
        XrpcError::internal(format!(
            "stored signing key of {} is unreadable: {e}",
            account.did
        ))
    })?;
    if parsed.len() >= 64 {
        parsed.remove(0);
    }
    parsed.push((account.signing_key.clone(), key.clone()));
    Ok(key)
}
