//! The one HTTP client for URLs that come from untrusted input: did:web documents,
//! handles' `/.well-known/atproto-did`, the services an `atproto-proxy` header names
//! (security review H2, H7, M3).
//!
//! - It resolves names itself and keeps only public addresses ([`is_public`]: no
//!   loopback, private, link-local, CGNAT, multicast, reserved or unspecified ranges,
//!   IPv4 or IPv6, mapped or NAT64 forms), and reqwest connects only to those: a name
//!   that rebinds between a check and the connection gets nowhere. A URL naming an
//!   address outright is checked the same way.
//! - It follows no redirects: a public server cannot bounce the box onto the LAN.
//! - Bodies are read up to a cap ([`Outbound::get_capped`]), within a time limit.
//!
//! What the owner configured (the PLC directory, the AppView, relays) is trusted and
//! uses the ordinary client. `proxy_allow_private` (development only) lifts the
//! address check, never the caps.

use hickory_resolver::TokioResolver;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0 // "this network", 0.0.0.0/8
                || (a == 100 && (b & 0xc0) == 64) // carrier-grade NAT, 100.64.0.0/10
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || (a == 198 && (b & 0xfe) == 18) // benchmarking, 198.18.0.0/15
                || a >= 240) // reserved, 240.0.0.0/4
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
            let v4 = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
            };
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return is_public(v4(s[6], s[7]));
            }
            if s[0] == 0x2002 {
                return is_public(v4(s[1], s[2]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible and other ::/96
        }
    }
}

/// Why a fetch failed, in words fit for an error message (no internal detail: the
/// caller may be anyone, and this must not be a LAN port scanner).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not an http(s) URL")]
    BadUrl(String),
    #[error("{0} is not a public address")]
    NotPublic(String),
    #[error("{0} could not be reached")]
    Unreachable(String),
    #[error("{0} answered {1}")]
    Status(String, u16),
    #[error("{0} answered with more than {1} bytes")]
    TooLarge(String, usize),
}

/// Looks names up and keeps only public addresses.
struct PublicOnly {
    dns: Option<TokioResolver>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.dns.clone();
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<IpAddr> = match dns {
                Some(dns) => dns.lookup_ip(name.as_str()).await?.iter().collect(),
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await?
                    .map(|a| a.ip())
                    .collect(),
            };
            let addrs: Vec<SocketAddr> = found
                .into_iter()
                .filter(|ip| allow_private || is_public(*ip))
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{} has no public address", name.as_str()).into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client for untrusted URLs.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

/// The root certificates of a PEM bundle (`outbound_ca_bundle`, `acme_ca_bundle`),
/// trusted on top of the public web's; `key` names the setting in errors.
pub fn extra_roots(key: &str, bundle: Option<&Path>) -> Result<Vec<reqwest::Certificate>, String> {
    let Some(bundle) = bundle else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(bundle)
        .map_err(|e| format!("{key}: cannot read {}: {e}", bundle.display()))?;
    reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{key}: {}: {e}", bundle.display()))
}

impl Outbound {
    pub fn new(
        dns: Option<TokioResolver>,
        allow_private: bool,
        roots: &[reqwest::Certificate],
    ) -> reqwest::Result<Outbound> {
        let mut client = reqwest::Client::builder()
            .user_agent(concat!("atbox/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .dns_resolver(std::sync::Arc::new(PublicOnly { dns, allow_private }));
        for root in roots {
            client = client.add_root_certificate(root.clone());
        }
        let client = client.build()?;
        Ok(Outbound {
            client,
            allow_private,
        })
    }

    /// Refuses URLs that are not http(s), or that name a non-public address outright
    /// (names are checked when they are resolved).
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, FetchError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| FetchError::BadUrl(url.into()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::BadUrl(url.into()));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(FetchError::BadUrl(url.into())),
        };
        if let Some(ip) = literal {
            if !self.allow_private && !is_public(ip) {
                return Err(FetchError::NotPublic(ip.to_string()));
            }
        }
        Ok(parsed)
    }

    /// The client itself, for requests that stream (proxying); callers check the URL
    /// with [`check_url`](Self::check_url) first.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// GETs `url` and reads at most `cap` bytes of a successful answer within `timeout`.
    pub async fn get_capped(
        &self,
        url: &str,
        cap: usize,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        let parsed = self.check_url(url)?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        let fetch = async {
            let res = self
                .client
                .get(parsed)
                .send()
                .await
                .map_err(|_| FetchError::Unreachable(host.clone()))?;
            read_capped(res, &host, cap).await
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| FetchError::Unreachable(host.clone()))?
    }
}

/// The body of a successful answer, up to `cap` bytes (refused past it, before it is
/// all read: a `Content-Length` over the cap is refused at once).
pub async fn read_capped(
    res: reqwest::Response,
    host: &str,
    cap: usize,
) -> Result<Vec<u8>, FetchError> {
    use futures_util::StreamExt;
    if !res.status().is_success() {
        return Err(FetchError::Status(host.into(), res.status().as_u16()));
    }
    if res.content_length().is_some_and(|n| n > cap as u64) {
        return Err(FetchError::TooLarge(host.into(), cap));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| FetchError::Unreachable(host.into()))?;
        if body.len() + chunk.len() > cap {
            return Err(FetchError::TooLarge(host.into(), cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Security review H2: every range the review named, and the forms that hide an
    /// IPv4 address in IPv6, are refused; ordinary public addresses are not.
    #[test]
    fn h2_only_public_addresses_are_contacted() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "198.18.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:192.168.1.1",
            "64:ff9b::7f00:1",
            "64:ff9b::c0a8:101",
            "2002:c0a8:0101::1",
            "2002:7f00:0001::1",
            "::127.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_naming_private_addresses_are_refused_before_any_request() {
        let out = Outbound::new(None, false, &[]).unwrap();
        for url in [
            "http://127.0.0.1/",
            "http://[::1]:8080/x",
            "https://192.168.1.1/admin",
            "http://[::ffff:10.0.0.1]/",
            "file:///etc/passwd",
        ] {
            assert!(out.check_url(url).is_err(), "{url}");
        }
        assert!(out.check_url("https://example.com/").is_ok());
    }

    /// Security review H7: a body over the cap is refused while it is read.
    #[tokio::test]
    async fn h7_bodies_over_the_cap_are_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                // A chunked answer that never says how long it is.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                for _ in 0..100 {
                    let chunk = vec![b'a'; 4096];
                    let _ = s
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await;
                    let _ = s.write_all(&chunk).await;
                    let _ = s.write_all(b"\r\n").await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        });
        // Loopback is the stand-in here: allow it, the cap still holds.
        let out = Outbound::new(None, true, &[]).unwrap();
        let url = format!("http://{addr}/.well-known/did.json");
        let got = out
            .get_capped(&url, 64 * 1024, Duration::from_secs(5))
            .await;
        assert!(matches!(got, Err(FetchError::TooLarge(_, _))), "{got:?}");
        let ok = out
            .get_capped(&url, 1024 * 1024, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(ok.len(), 409_600);
    }
}
