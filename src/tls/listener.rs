//! The HTTPS socket: accepts TCP, completes TLS handshakes (each in its own task, so a
//! slow client or an on-demand issuance never holds up the others), and hands finished
//! streams to `axum::serve` through its `Listener` trait — so HTTPS connections get the
//! same router, WebSocket upgrades and graceful shutdown as plain ones.
//!
//! The ClientHello is read before a certificate is chosen (`LazyConfigAcceptor`), which
//! lets the handshake wait for an on-demand certificate and answer TLS-ALPN-01
//! validation connections with the challenge certificate.

use rustls::server::{Acceptor, ServerConfig};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

/// Long enough for an on-demand issuance; short enough that idle sockets go away.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(90);

/// Chooses the server config for a handshake: `name` is the SNI host name (lowercase),
/// `acme` whether the client offered `acme-tls/1` (a TLS-ALPN-01 validation).
pub trait ChooseConfig: Send + Sync + 'static {
    fn config<'a>(
        &'a self,
        name: Option<&'a str>,
        acme: bool,
    ) -> Pin<Box<dyn Future<Output = Result<Arc<ServerConfig>, String>> + Send + 'a>>;
}

pub(crate) struct TlsListener {
    streams: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`.
    pub(crate) fn start(
        tcp: TcpListener,
        choose: Arc<dyn ChooseConfig>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, streams) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (sock, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("https accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // As the plain listener: responses go out as written (no Nagle).
                let _ = sock.set_nodelay(true);
                let tx = tx.clone();
                let choose = choose.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(sock, &*choose)).await {
                        Ok(Ok(Some(stream))) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer}: {e}"),
                        Err(_) => tracing::debug!("TLS handshake with {peer}: timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { streams, local })
    }
}

/// One handshake; `None` for a TLS-ALPN-01 validation (the handshake was the answer).
async fn handshake(
    sock: TcpStream,
    choose: &dyn ChooseConfig,
) -> std::io::Result<Option<TlsStream<TcpStream>>> {
    let start = LazyConfigAcceptor::new(Acceptor::default(), sock).await?;
    let hello = start.client_hello();
    let name = hello.server_name().map(str::to_ascii_lowercase);
    let acme = hello
        .alpn()
        .is_some_and(|mut protocols| protocols.any(|p| p == b"acme-tls/1"));
    let config = choose
        .config(name.as_deref(), acme)
        .await
        .map_err(std::io::Error::other)?;
    let stream = start.into_stream(config).await?;
    Ok((!acme).then_some(stream))
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(conn) => conn,
            // The accept task only stops with the runtime.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
