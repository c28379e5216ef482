//! HTTPS in the binary, so a box at home needs no reverse proxy to federate.
//!
//! `tls = "acme"`: certificates from an ACME CA ([`acme`]) for the host name and, on
//! demand, for handles under it; `tls = "files"`: a PEM chain and key, re-read on
//! SIGHUP; `tls = "off"`: plain HTTP only (behind a tunnel or proxy). The HTTPS socket
//! ([`listener`]) serves the same router as the plain one; in the TLS modes the plain
//! socket answers HTTP-01 challenges, redirects requests for our public names to
//! HTTPS, and keeps serving the LAN (an IP address or `atbox.local`: the setup page
//! lives there, and no CA certifies those names).

pub(crate) mod acme;
pub(crate) mod listener;

use crate::config::TlsMode;
use crate::pds::Ctx;
use crate::storage::certs::{CertStore, Issued};
use acme::{Acme, Challenges};
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use listener::{ChooseConfig, TlsListener};
use rustls::server::ServerConfig;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

/// Where handshakes get their certificate.
enum Certificates {
    Files {
        cert: PathBuf,
        key: PathBuf,
        current: RwLock<Arc<ServerConfig>>,
    },
    Acme {
        acme: Arc<Acme>,
        ctx: Ctx,
        /// On-demand issuance for names that have no certificate yet.
        new_names: crate::auth::ratelimit::Limit,
    },
}

fn load_files(cert: &std::path::Path, key: &std::path::Path) -> Result<Issued, String> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    Issued::from_pem("files", &read(cert)?, &read(key)?)
}

/// Whether `name` is one atbox may hold a certificate for: the host name, the handle of
/// one of our *active* accounts, or the host of an active did:web we serve (the "ask"
/// of on-demand TLS, and what renewal keeps). Nothing else, so no one can spend the
/// domain's CA quota on names of their choosing (security review L6).
pub(crate) async fn is_our_name(ctx: &Ctx, name: &str) -> bool {
    if name == ctx.config.hostname {
        return true;
    }
    if !ctx.config.is_local_handle(name) {
        return false;
    }
    let active = |a: &crate::storage::accounts::Account| {
        a.status == crate::storage::accounts::AccountStatus::Active
    };
    matches!(ctx.find_account(name).await, Ok(Some(a)) if a.handle == name && active(&a))
        || matches!(
            ctx.find_account(&format!("did:web:{name}")).await,
            Ok(Some(a)) if active(&a)
        )
}

/// New names (not yet holding a certificate) issued on demand, across the box: at most
/// this many a week, well inside Let's Encrypt's 50 per registered domain.
const NEW_NAMES_PER_WEEK: u32 = 20;

impl ChooseConfig for Certificates {
    fn config<'a>(
        &'a self,
        name: Option<&'a str>,
        acme_validation: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<ServerConfig>, String>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Certificates::Files { current, .. } => {
                    Ok(current.read().expect("tls config lock").clone())
                }
                Certificates::Acme {
                    acme,
                    ctx,
                    new_names,
                } => {
                    let host = ctx.config.hostname.as_str();
                    if acme_validation {
                        let name = name.ok_or("TLS-ALPN-01 without a server name")?;
                        return acme
                            .challenges
                            .alpn(name)
                            .ok_or_else(|| format!("no challenge pending for {name}"));
                    }
                    // No name (an IP address), or one of ours.
                    let name = match name {
                        Some(n) if n != host && !is_our_name(ctx, n).await => {
                            return Err(format!("{n} is not a name of this PDS"))
                        }
                        Some(n) => n,
                        None => host,
                    };
                    if name != host && acme.store.get(name).is_none() {
                        new_names
                            .check("new names")
                            .map_err(|_| format!("{name}: too many new names this week"))?;
                    }
                    Ok(acme.certificate(name).await?.config.clone())
                }
            }
        })
    }
}

/// A running HTTPS side, and what the plain socket needs from it.
pub(crate) struct Https {
    /// Pending ACME challenges (for the plain socket's HTTP-01 route).
    pub challenges: Arc<Challenges>,
}

/// Starts the HTTPS side for `ctx.config.tls`, serving `app`; `None` when HTTPS is off
/// (or cannot start yet: ACME without a public host name).
pub(crate) async fn start(
    ctx: &Ctx,
    app: Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<Https>> {
    let config = &ctx.config;
    let (certificates, challenges) = match &config.tls {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => {
            let issued = load_files(cert, key).map_err(|e| {
                anyhow::anyhow!("tls = \"files\": {e} (check tls_cert and tls_key)")
            })?;
            (
                Arc::new(Certificates::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    current: RwLock::new(issued.config.clone()),
                }),
                None,
            )
        }
        TlsMode::Acme => {
            if config.hostname.ends_with(".local") || config.hostname == "localhost" {
                tracing::warn!(
                    "tls: no certificate for {}: ACME needs the public host name (set hostname); serving plain HTTP meanwhile",
                    config.hostname
                );
                return Ok(None);
            }
            let store = Arc::new(CertStore::open(&config.data_dir)?);
            let acme = Arc::new(Acme::new(config, store).map_err(anyhow::Error::msg)?);
            let still_ours = {
                let ctx = ctx.clone();
                move |name: String| {
                    let ctx = ctx.clone();
                    Box::pin(async move { is_our_name(&ctx, &name).await })
                        as Pin<Box<dyn Future<Output = bool> + Send>>
                }
            };
            tokio::spawn(
                acme.clone()
                    .renew_forever(vec![config.hostname.clone()], still_ours),
            );
            let challenges = acme.challenges.clone();
            (
                Arc::new(Certificates::Acme {
                    acme,
                    ctx: ctx.clone(),
                    new_names: crate::auth::ratelimit::Limit::new(
                        NEW_NAMES_PER_WEEK,
                        std::time::Duration::from_secs(7 * 24 * 3600),
                    ),
                }),
                Some(challenges),
            )
        }
    };
    if matches!(*certificates, Certificates::Files { .. }) {
        tokio::spawn(reload_on_sighup(certificates.clone()));
    }
    let tcp = tokio::net::TcpListener::bind(config.https_listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {} for HTTPS: {e} (choose another with https_listen / ATBOX_HTTPS_LISTEN)",
                config.https_listen
            )
        })?;
    let listener = TlsListener::start(tcp, certificates)?;
    tracing::info!("HTTPS on {}", config.https_listen);
    let caps = crate::http::serve::Caps {
        exempt: config.trusted_proxies.clone(),
        ..Default::default()
    };
    tokio::spawn(crate::http::serve::serve(listener, app, caps, shutdown));
    Ok(Some(Https {
        challenges: challenges.unwrap_or_default(),
    }))
}

/// `tls = "files"`: SIGHUP re-reads the certificate and key (after a renewal by an
/// outside tool); a bad pair is logged and the old one kept.
async fn reload_on_sighup(certificates: Arc<Certificates>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        if let Certificates::Files { cert, key, current } = &*certificates {
            match load_files(cert, key) {
                Ok(issued) => {
                    *current.write().expect("tls config lock") = issued.config.clone();
                    tracing::info!(
                        "tls: reloaded {} (valid until {})",
                        cert.display(),
                        chrono::DateTime::from_timestamp(issued.not_after, 0).unwrap_or_default()
                    );
                }
                Err(e) => tracing::warn!("tls: SIGHUP: keeping the current certificate: {e}"),
            }
        }
    }
}

/// The plain-HTTP router while HTTPS runs: HTTP-01 answers, a redirect to HTTPS for our
/// public names, and the app itself for LAN names and addresses. Without HTTPS, the app.
pub(crate) fn plain_router(app: Router, ctx: Ctx, https: Option<&Https>) -> Router {
    let Some(https) = https else {
        return app;
    };
    let https_port = ctx.config.https_listen.port();
    let challenges = https.challenges.clone();
    Router::new()
        .route(
            "/.well-known/acme-challenge/{token}",
            get(http01).with_state(challenges),
        )
        .merge(app.layer(axum::middleware::from_fn_with_state(
            (ctx, https_port),
            redirect_public_names,
        )))
}

async fn http01(State(challenges): State<Arc<Challenges>>, Path(token): Path<String>) -> Response {
    match challenges.http01(&token) {
        Some(key_auth) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_auth,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such challenge").into_response(),
    }
}

async fn redirect_public_names(
    State((ctx, https_port)): State<(Ctx, u16)>,
    req: Request,
    next: Next,
) -> Response {
    let host = crate::http::request_host(req.headers());
    let public = host == ctx.config.hostname
        || host.ends_with(&format!(".{}", ctx.config.hostname))
        || ctx.config.is_local_handle(&host);
    if !public {
        return next.run(req).await;
    }
    let authority = if https_port == 443 {
        host
    } else {
        format!("{host}:{https_port}")
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        Ok(uri) => Redirect::permanent(&uri.to_string()).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "bad Host header").into_response(),
    }
}
