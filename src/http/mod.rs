//! Plain HTTP request helpers that every face of the server shares (the XRPC routes,
//! the setup page, the TLS redirect, the firehose): the request's host, the client's
//! address behind trusted proxies, and XRPC query parameters. Nothing here knows the
//! PDS: it reads headers and nothing else.

mod params;

pub use params::Params;

use axum::http::{header, HeaderMap};
use std::net::SocketAddr;

/// The host a request was sent to (its `Host` header), lowercase, without a port (but
/// a bracketed IPv6 literal keeps its colons).
pub fn request_host(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    };
    host.to_ascii_lowercase()
}

/// The client's address: the peer's, unless the peer is a trusted reverse proxy, in
/// which case the last `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[std::net::IpAddr],
) -> Option<std::net::IpAddr> {
    let peer = peer?.ip();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !trusted.contains(ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9, 10.0.0.2".parse().unwrap());
        let proxy = "10.0.0.1:5000".parse().ok();
        let trusted = ["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
        // From a trusted proxy: the last hop that is not one of ours.
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        // From anyone else, the header is ignored (it is trivially forged).
        let stranger = "198.51.100.7:4000".parse().ok();
        assert_eq!(
            client_ip(stranger, &headers, &trusted),
            Some("198.51.100.7".parse().unwrap())
        );
        // No proxies configured: never believed.
        assert_eq!(
            client_ip(proxy, &headers, &[]),
            Some("10.0.0.1".parse().unwrap())
        );
        // A trusted proxy without the header is the client.
        assert_eq!(
            client_ip(proxy, &HeaderMap::new(), &trusted),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
