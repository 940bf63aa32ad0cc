//! The headers a forwarded request goes on with: hop-by-hop ones removed, the
//! `X-Forwarded-*` ones set; and the fast lane's request head, written straight
//! out with the same headers.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use http::Request;

use super::Peer;
use crate::h1::header;
use crate::h1::upstream::HOP_BY_HOP;

/// Removes hop-by-hop headers, including those named in `Connection`.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = crate::http::connection_tokens(headers)
        .filter_map(|name| HeaderName::from_bytes(name).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The `X-Forwarded-*` headers a request goes on with. What a trusted proxy
/// wrote before is kept (the peer appended); from anyone else, `X-Forwarded-For`,
/// `Forwarded` and `X-Real-IP` are not believed: the origin sees the peer alone.
struct Forwarding<'a> {
    headers: &'a HeaderMap,
    peer: Peer,
    /// `X-Forwarded-Proto`, unless a trusted proxy's is kept.
    proto: Option<&'static str>,
}

impl<'a> Forwarding<'a> {
    fn of(headers: &'a HeaderMap, peer: Peer) -> Self {
        // A trusted proxy that ended TLS says so; anyone else's word is replaced.
        let proto = (!(peer.trusted && headers.contains_key("x-forwarded-proto")))
            .then_some(if peer.tls { "https" } else { "http" });
        Self {
            headers,
            peer,
            proto,
        }
    }

    /// Writes the value of `X-Forwarded-For` to `out`.
    fn write_for(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        if self.peer.trusted {
            for earlier in self.headers.get_all("x-forwarded-for") {
                out.extend_from_slice(earlier.as_bytes());
                out.extend_from_slice(b", ");
            }
        }
        match self.peer.addr.ip().to_canonical() {
            // Most peers: four numbers, written without the formatting machinery.
            IpAddr::V4(v4) => {
                let mut digits = itoa::Buffer::new();
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    out.extend_from_slice(digits.format(octet).as_bytes());
                }
            }
            ip @ IpAddr::V6(_) => {
                let _ = write!(out, "{ip}");
            }
        }
    }

    /// Whether the request's own header `name` gives way to these.
    fn replaces(&self, name: &HeaderName) -> bool {
        name == "x-forwarded-for"
            || name == "x-forwarded-host"
            || (name == "x-forwarded-proto" && self.proto.is_some())
            || (!self.peer.trusted && (name == "forwarded" || name == "x-real-ip"))
    }
}

/// Sets `X-Forwarded-For`/`-Proto`/`-Host` (see [`Forwarding`]); `host` is the
/// host the client asked for.
pub(super) fn set_forwarded(headers: &mut HeaderMap, peer: Peer, host: Option<HeaderValue>) {
    let f = Forwarding::of(headers, peer);
    let mut xff = Vec::with_capacity(64);
    f.write_for(&mut xff);
    let proto = f.proto;
    if !peer.trusted {
        headers.remove("forwarded");
        headers.remove("x-real-ip");
    }
    if let Ok(v) = HeaderValue::from_bytes(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if let Some(proto) = proto {
        headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    }
    match host {
        Some(h) => {
            headers.insert("x-forwarded-host", h);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

/// Writes to `out` the request head the fast lane sends for `req` (which has no
/// body): what [`Forwarder::forward`] would send, written straight out, `Host`
/// the origin's.
pub(super) fn raw_head<B>(out: &mut Vec<u8>, req: &Request<B>, peer: Peer, authority: &str) {
    let headers = req.headers();
    let forwarding = Forwarding::of(headers, peer);
    let listed = |name: &HeaderName| {
        crate::http::connection_tokens(headers)
            .any(|l| l.eq_ignore_ascii_case(name.as_str().as_bytes()))
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    for piece in [
        req.method().as_str(),
        " ",
        path,
        " HTTP/1.1\r\nhost: ",
        authority,
        "\r\n",
    ] {
        out.extend_from_slice(piece.as_bytes());
    }
    let connection = headers.contains_key(CONNECTION);
    for (name, value) in headers {
        if name == HOST
            || HOP_BY_HOP.contains(&name.as_str())
            || forwarding.replaces(name)
            || (connection && listed(name))
        {
            continue;
        }
        header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    forwarding.write_for(out);
    out.extend_from_slice(b"\r\n");
    if let Some(proto) = forwarding.proto {
        header(out, b"x-forwarded-proto", proto.as_bytes());
    }
    if let Some(host) = headers.get(HOST) {
        header(out, b"x-forwarded-host", host.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;
    use std::net::SocketAddr;

    #[test]
    fn removes_hop_by_hop_and_sets_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-real-ip", HeaderValue::from_static("10.0.0.1"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        let mut peer = Peer {
            addr: "127.0.0.2:5000".parse().unwrap(),
            tls: false,
            trusted: false,
        };
        let mut untrusted = h.clone();
        set_forwarded(&mut untrusted, peer, None);
        assert_eq!(untrusted["x-forwarded-for"], "127.0.0.2");
        assert_eq!(untrusted["x-forwarded-proto"], "http");
        assert!(untrusted.get("x-real-ip").is_none());
        peer.trusted = true;
        set_forwarded(&mut h, peer, Some(HeaderValue::from_static("example.org")));
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        assert!(
            h.get("x-private").is_none()
                && h.get("upgrade").is_none()
                && h.get(CONNECTION).is_none()
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https", "a trusted proxy's word");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(h["accept"], "*/*");
    }

    #[test]
    fn the_peer_is_written_as_its_display_writes_it() {
        let cases = [
            ("0.0.0.0:1", "0.0.0.0"),
            ("10.200.3.45:1", "10.200.3.45"),
            ("255.255.255.255:1", "255.255.255.255"),
            ("[::ffff:192.0.2.7]:1", "192.0.2.7"),
            ("[2001:db8::1]:1", "2001:db8::1"),
            ("[::1]:1", "::1"),
        ];
        for (addr, written) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            let peer = Peer {
                addr,
                tls: false,
                trusted: false,
            };
            let mut out = Vec::new();
            Forwarding::of(&HeaderMap::new(), peer).write_for(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), written);
            assert_eq!(addr.ip().to_canonical().to_string(), written);
        }
    }

    #[test]
    fn the_fast_lanes_head_says_what_the_other_way_sends() {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/form?x=1")
            .header(HOST, "example.org")
            .header(CONNECTION, "keep-alive, x-private")
            .header("x-private", "1")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-real-ip", "10.0.0.1")
            .header("cookie", "waitroom=abc")
            .body(())
            .unwrap();
        let mut peer = Peer {
            addr: "127.0.0.2:5000".parse().unwrap(),
            tls: false,
            trusted: false,
        };
        let mut head = Vec::new();
        raw_head(&mut head, &req, peer, "127.0.0.1:8080");
        let head = String::from_utf8(head).unwrap();
        assert_eq!(
            head,
            "GET /form?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncookie: waitroom=abc\r\n\
             x-forwarded-for: 127.0.0.2\r\nx-forwarded-proto: http\r\n\
             x-forwarded-host: example.org\r\n\r\n"
        );
        peer.trusted = true;
        let mut head = Vec::new();
        raw_head(&mut head, &req, peer, "o:1");
        let head = String::from_utf8(head).unwrap();
        assert!(head.contains("x-real-ip: 10.0.0.1\r\n"), "{head}");
        assert!(
            head.contains("x-forwarded-for: 10.0.0.1, 127.0.0.2\r\n"),
            "{head}"
        );
    }
}
