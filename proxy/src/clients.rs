//! Who the client is: the address a request came from, seen through the trusted
//! proxies (a load balancer, a CDN) in front of waitroom.
//!
//! When the peer is one of `[clients] trusted_proxies`, the client is the
//! right-most address of `X-Forwarded-For` that is not itself trusted (every
//! trusted proxy appends the address it saw, so entries left of the first
//! untrusted one may be forged by the client). Otherwise the client is the peer,
//! and whatever it wrote in `X-Forwarded-For`, `Forwarded` or `X-Real-IP` is not
//! believed (see [`crate::forward`]).

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts the proxies in `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .collect();
        // From the right: the first entry not trusted is the client. An entry that
        // is not an address ends the walk: the client is then the proxy that
        // wrote it (the one to its right).
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = parse_entry(entry) else {
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// One entry of `X-Forwarded-For`: `203.0.113.7`, `2001:db8::1`,
/// `203.0.113.7:4711` or `[2001:db8::1]:4711`.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    None
}

/// The key a per-client limit counts under: the address itself for IPv4, its
/// /64 for IPv6 (one subscriber is usually given a whole /64, so counting single
/// IPv6 addresses would let one machine be millions of clients).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(xff: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let t = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let h = headers(&["1.2.3.4"]);
        assert_eq!(t.client(ip("198.51.100.9"), &h), ip("198.51.100.9"));
        assert_eq!(
            TrustedProxies::default().client(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_right_most_untrusted_entry_is_the_client() {
        let t = TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
        ]);
        // The client forged the first entry; the load balancer appended the real one.
        let h = headers(&["6.6.6.6, 203.0.113.7", "10.1.1.1"]);
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("203.0.113.7"));
        assert_eq!(
            t.client(ip("::ffff:10.0.0.2"), &headers(&["[2001:db8::1]:4711"])),
            ip("2001:db8::1")
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(
            t.client(ip("10.0.0.2"), &headers(&["10.9.9.9"])),
            ip("10.9.9.9")
        );
        // Garbage ends the walk at the proxy that wrote it.
        assert_eq!(
            t.client(
                ip("10.0.0.2"),
                &headers(&["203.0.113.7, garbage, 10.3.3.3"])
            ),
            ip("10.3.3.3")
        );
        assert_eq!(t.client(ip("10.0.0.2"), &HeaderMap::new()), ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(
            limit_key(ip("2001:db8:1:2:aaaa::1")),
            limit_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            limit_key(ip("2001:db8:1:2::1")),
            limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limit_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    }
}
