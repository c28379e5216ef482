//! Plain HTTP request helpers that every face of the server shares (the XRPC routes,
//! the setup page, the TLS redirect, the firehose): the request's host, the client's
//! address behind trusted proxies, and XRPC query parameters. Nothing here knows the
//! PDS: it reads headers and nothing else.

mod params;
pub mod serve;

pub use params::Params;

use axum::http::{header, HeaderMap};
use std::net::{IpAddr, SocketAddr};

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

/// Headers by which a proxy or tunnel says whom it forwards for.
pub const FORWARDING_HEADERS: &[&str] = &[
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "cf-connecting-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
];

/// An address as one kind: IPv4-mapped IPv6 (`::ffff:a.b.c.d`, what a dual-stack
/// listener reports for IPv4 peers) becomes IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One hop as proxies write it: an address, with or without a port, IPv6 possibly in
/// brackets (`203.0.113.9`, `203.0.113.9:4711`, `[2001:db8::1]`, `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse().ok())
        .map(canonical)
}

/// The hops of `X-Forwarded-For` and `Forwarded` (`for=`), left (first client) to
/// right (nearest proxy); `None` if neither header is there, or if any hop does not
/// parse (`unknown`, an obfuscated name): then nobody can say who the client is.
pub fn forwarded_hops(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in value.to_str().ok()?.split(',') {
            let for_ = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            })?;
            hops.push(parse_hop(for_)?);
        }
    }
    for value in headers.get_all("x-forwarded-for") {
        for hop in value.to_str().ok()?.split(',') {
            hops.push(parse_hop(hop)?);
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// The client's address: the peer's, unless the peer is a trusted reverse proxy, in
/// which case the last forwarded hop that is not itself a trusted proxy (the proxy's
/// own address when it names none). IPv4-mapped addresses are read as IPv4.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| canonical(*t) == *ip);
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops = forwarded_hops(headers).unwrap_or_default();
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
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
