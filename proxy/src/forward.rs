//! Forwarding an admitted visitor's request to the origin.
//!
//! One pooled keep-alive hyper client; bodies stream both ways; hop-by-hop headers
//! are removed and `X-Forwarded-For`/`-Proto`/`-Host` are set.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::http::{Body, ProxyError};
use crate::metrics::Metrics;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client to the origin.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Incoming>,
    origin: Uri,
    timeout: Duration,
    metrics: Metrics,
    /// Pass requests on as they came (`Host`, `X-Forwarded-*`): to another waitroom.
    relay: bool,
}

/// Where a request came from, for the `X-Forwarded-*` headers.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
}

impl Forwarder {
    /// A forwarder to `origin` (scheme and authority only).
    pub fn new(origin: Uri, timeout: Duration, metrics: Metrics) -> Self {
        Self::build(origin, timeout, metrics, false)
    }

    /// A forwarder to another waitroom process at `to` that passes requests on as
    /// they came (the successor after a handover).
    pub fn relay(to: Uri, metrics: Metrics) -> Self {
        Self::build(to, Duration::from_secs(60), metrics, true)
    }

    fn build(origin: Uri, timeout: Duration, metrics: Metrics, relay: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1024)
            .build(connector);
        Self {
            client,
            origin,
            timeout,
            metrics,
            relay,
        }
    }

    /// Sends `req` to the origin and returns its response, streaming.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut uri = self.origin.clone().into_parts();
        uri.path_and_query = Some(
            path.parse()
                .map_err(|_| ProxyError::OriginUnreachable("bad path".into()))?,
        );
        parts.uri =
            Uri::from_parts(uri).map_err(|e| ProxyError::OriginUnreachable(e.to_string()))?;
        strip_hop_by_hop(&mut parts.headers);
        if !self.relay {
            let host = parts.headers.remove(HOST);
            set_forwarded(&mut parts.headers, peer, host);
        }
        parts.version = http::Version::HTTP_11;

        let started = Instant::now();
        let sent = tokio::time::timeout(
            self.timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await;
        let response = match sent {
            Err(_) => {
                self.metrics.origin_error("timeout");
                return Err(ProxyError::OriginTimeout);
            }
            Ok(Err(e)) => {
                self.metrics
                    .origin_error(if e.is_connect() { "connect" } else { "broken" });
                tracing::warn!(error = %e, "origin request failed");
                return Err(ProxyError::OriginUnreachable(e.to_string()));
            }
            Ok(Ok(r)) => r,
        };
        self.metrics.origin_latency(started.elapsed().as_secs_f64());
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(
            parts,
            body.map_err(Into::into).boxed(),
        ))
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn set_forwarded(headers: &mut HeaderMap, peer: Peer, host: Option<HeaderValue>) {
    let ip = peer.addr.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    let proto = if peer.tls { "https" } else { "http" };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    match host {
        Some(h) => {
            headers.insert("x-forwarded-host", h);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        let peer = Peer {
            addr: "127.0.0.2:5000".parse().unwrap(),
            tls: false,
        };
        set_forwarded(&mut h, peer, Some(HeaderValue::from_static("example.org")));
        assert!(
            h.get("x-private").is_none()
                && h.get("upgrade").is_none()
                && h.get(CONNECTION).is_none()
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.org");
        assert_eq!(h["accept"], "*/*");
    }
}
