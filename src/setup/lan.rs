//! Who is "on the LAN": the one decision that guards the setup page (claiming the box,
//! its status, the doctor, the owner's actions).
//!
//! A request is from the LAN only when its real client is, and it asked for the box by
//! a LAN name:
//! - **The Host** is an IP literal, a `*.local` name or `localhost`. A tunnel or a
//!   reverse proxy publishing the box carries its public name, and a DNS-rebinding page
//!   carries the attacker's: both are refused, whatever address they come from.
//! - **The client.** From a peer that is not a trusted proxy, any forwarding header
//!   (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`, `CF-Connecting-IP`, …) means a
//!   proxy or tunnel is in between: not LAN. From a trusted proxy, the first hop from
//!   the right that is not itself a trusted proxy is the client; a missing or
//!   unparseable hop means not LAN. The client must then be private, link-local or
//!   loopback (IPv4-mapped IPv6 addresses are read as IPv4 throughout).

use crate::http::{canonical, forwarded_hops, request_host, FORWARDING_HEADERS};
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is on a local network.
pub(crate) fn is_lan(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether `host` (from the Host header, port removed) names the box on the LAN.
pub(crate) fn is_lan_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || (host.ends_with(".local") && host.len() > ".local".len())
}

/// The client's address if the request is from the LAN (see the module doc).
pub(crate) fn lan_client(
    trusted: &[IpAddr],
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    if !is_lan_host(&request_host(headers)) {
        return None;
    }
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| canonical(*t) == ip);
    let peer = canonical(peer.ip());
    let client = if is_trusted(peer) {
        let hops = forwarded_hops(headers)?;
        *hops.iter().rev().find(|ip| !is_trusted(**ip))?
    } else {
        if FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h)) {
            return None;
        }
        peer
    };
    is_lan(client).then_some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    /// Security review H1 and L1: every request the review let through is refused.
    #[test]
    fn h1_setup_is_lan_only_behind_proxies_tunnels_and_rebinding() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lan_peer: SocketAddr = "192.168.1.20:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let host = ("host", "192.168.1.2");
        let ok = |t: &[IpAddr], p, h: &[(&str, &str)]| lan_client(t, p, &headers(h)).is_some();

        // A tunnel with no trusted proxies configured: loopback peer, forwarded header.
        assert!(!ok(&[], loopback, &[host, ("x-forwarded-for", "8.8.8.8")]));
        assert!(!ok(&[], loopback, &[host, ("cf-connecting-ip", "8.8.8.8")]));
        assert!(!ok(
            &[],
            loopback,
            &[host, ("forwarded", "for=192.168.1.5")]
        ));
        // A tunnel's public name, or a rebinding attacker's name, as the Host.
        assert!(!ok(&[], loopback, &[("host", "pds.example.com")]));
        assert!(!ok(&[], lan_peer, &[("host", "attacker-rebind.example")]));
        // Through a trusted proxy: unparseable hops and no header are not LAN.
        for xff in ["192.168.1.5, unknown", "192.168.1.5, garbage!"] {
            assert!(
                !ok(&trusted, loopback, &[host, ("x-forwarded-for", xff)]),
                "{xff}"
            );
        }
        assert!(!ok(&trusted, loopback, &[host]));
        assert!(!ok(
            &trusted,
            loopback,
            &[host, ("x-forwarded-for", "8.8.8.8")]
        ));
        // A forged LAN hop left of the real (public) client does not count.
        assert!(!ok(
            &trusted,
            loopback,
            &[host, ("x-forwarded-for", "192.168.1.5, 203.0.113.9")]
        ));
        // A dual-stack listener sees the trusted proxy as an IPv4-mapped address.
        assert!(!ok(
            &trusted,
            mapped,
            &[host, ("x-forwarded-for", "8.8.8.8")]
        ));

        // What the owner does: a phone on the Wi-Fi, the box itself, or through a
        // trusted proxy that names a LAN client (with a port, or bracketed IPv6).
        assert!(ok(&[], lan_peer, &[host]));
        assert!(ok(&[], lan_peer, &[("host", "atbox.local")]));
        assert!(ok(&[], loopback, &[("host", "localhost:2583")]));
        assert!(ok(&[], lan_peer, &[("host", "[fe80::1]")]));
        assert!(ok(
            &trusted,
            loopback,
            &[host, ("x-forwarded-for", "192.168.1.20:4711")]
        ));
        assert!(ok(
            &trusted,
            mapped,
            &[host, ("x-forwarded-for", "[fd00::7]")]
        ));
        assert!(ok(
            &trusted,
            loopback,
            &[host, ("forwarded", "for=\"[fd00::7]:80\";proto=http")]
        ));
        // A public peer is never LAN.
        assert!(!ok(&[], "203.0.113.9:1".parse().unwrap(), &[host]));
    }
}
