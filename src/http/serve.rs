//! The connection loop both listeners (plain and HTTPS) run: hyper's HTTP/1 server with
//! the timeouts and caps a box on the open internet needs (security review H5).
//!
//! - **Headers** must arrive within [`HEADER_READ_TIMEOUT`] of the connection opening,
//!   or of the previous response on a kept-alive connection (hyper's own timer): a
//!   client dribbling its headers (slowloris), or an idle keep-alive connection, is
//!   closed.
//! - **Bodies** may pause at most [`BODY_IDLE_TIMEOUT`] between chunks
//!   (`tower_http`'s `TimeoutBody`): a stalled upload does not hold its buffer for ever.
//! - **Connections** are capped in all ([`Caps::total`]) and per client address
//!   ([`Caps::per_address`], trusted proxies excepted): past a cap a new connection is
//!   closed at once, so one address cannot take every file descriptor, and the box
//!   keeps answering others.
//!
//! Written against hyper directly (not `axum::serve`) because axum's server exposes
//! none of these settings; everything else is hyper's and tower-http's.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a client has to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may stall between chunks.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long open connections get to finish after the stop signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Connection caps.
#[derive(Debug, Clone)]
pub struct Caps {
    pub total: usize,
    pub per_address: usize,
    /// Addresses with no per-address cap (reverse proxies: every client comes from them).
    pub exempt: Vec<IpAddr>,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            total: 4096,
            per_address: 128,
            exempt: Vec::new(),
        }
    }
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    address: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total -= 1;
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

fn take_slot(open: &Arc<Mutex<Open>>, caps: &Caps, address: IpAddr) -> Option<Slot> {
    let address = super::canonical(address);
    let mut state = open.lock().unwrap_or_else(|p| p.into_inner());
    let mine = state.by_address.get(&address).copied().unwrap_or(0);
    if state.total >= caps.total || (mine >= caps.per_address && !caps.exempt.contains(&address)) {
        return None;
    }
    state.total += 1;
    *state.by_address.entry(address).or_default() += 1;
    Some(Slot {
        open: open.clone(),
        address,
    })
}

/// Serves `app` on every connection `listener` accepts until `stop` turns true, then
/// lets open connections finish (at most [`DRAIN`]).
pub async fn serve<L>(mut listener: L, app: Router, caps: Caps, mut stop: watch::Receiver<bool>)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let app = app.layer(axum::middleware::map_request(limit_body_idle));
    let open: Arc<Mutex<Open>> = Default::default();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        // Finished connections' tasks are reaped as we go.
        while tasks.try_join_next().is_some() {}
        let Some(slot) = take_slot(&open, &caps, peer.ip()) else {
            drop(io);
            continue;
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { tower::Service::call(&mut app, req).await }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut stop = stop.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
}

/// Resolves once the stop signal is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Every request body errors out if it stalls for [`BODY_IDLE_TIMEOUT`].
async fn limit_body_idle(req: axum::extract::Request) -> axum::extract::Request {
    req.map(|body| {
        axum::body::Body::new(tower_http::timeout::TimeoutBody::new(
            BODY_IDLE_TIMEOUT,
            body,
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_address_and_in_all_and_slots_come_back() {
        let open: Arc<Mutex<Open>> = Default::default();
        let caps = Caps {
            total: 3,
            per_address: 2,
            exempt: vec!["10.0.0.1".parse().unwrap()],
        };
        let a: IpAddr = "203.0.113.9".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().unwrap();
        let first = take_slot(&open, &caps, a).unwrap();
        let _second = take_slot(&open, &caps, mapped).unwrap();
        assert!(take_slot(&open, &caps, a).is_none(), "per address");
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let _third = take_slot(&open, &caps, proxy).unwrap();
        assert!(take_slot(&open, &caps, proxy).is_none(), "in all");
        drop(first);
        assert!(
            take_slot(&open, &caps, a).is_some(),
            "a closed one frees its slot"
        );
    }
}
