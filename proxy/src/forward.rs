//! Forwarding an admitted visitor's request to the origin.
//!
//! One pooled keep-alive hyper client; bodies stream both ways; hop-by-hop headers
//! are removed and `X-Forwarded-For`/`-Proto`/`-Host` are set. Every request
//! passes the origin's circuit breaker ([`crate::breaker`]): while the origin is
//! failing, requests wait here for it to recover (up to the breaker's
//! `hold_requests`) instead of failing against it. A request whose body is small
//! and known (most are: a page, a form) is kept, so that when the origin refused
//! the connection (nothing reached it) it is sent again once the origin is back;
//! an idempotent request (GET, HEAD, PUT, DELETE…; a POST carrying an
//! `Idempotency-Key`, or to a path in `origin.idempotent_paths`) whose connection
//! broke under it is sent once more as well.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, Outcome, Pass, Ticket};
use crate::h1::header;
use crate::h1::upstream::{Answered, Failure, Pool, HOP_BY_HOP};
use crate::http::{Body, ProxyError, ReqBody};
use crate::metrics::Metrics;

/// A client's promise that sending its request twice means sending it once
/// (draft-ietf-httpapi-idempotency-key-header).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Bodies up to this size are kept to be sent again after a refused connection.
const KEEP_BODY: u64 = 64 * 1024;

/// The client to the origin.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    origin: Uri,
    timeout: Duration,
    metrics: Metrics,
    /// Pass requests on as they came (`Host`, `X-Forwarded-*`): to another waitroom.
    relay: bool,
    breaker: Breaker,
    /// At most this many requests at the origin at once (`origin.max_in_flight`).
    limit: Option<Arc<tokio::sync::Semaphore>>,
    /// Path prefixes where a POST or PATCH means the same sent twice
    /// (`origin.idempotent_paths`).
    idempotent_paths: Arc<[String]>,
    /// The fast lane's connections to a plain-HTTP origin ([`Forwarder::exchange`]).
    raw: Option<Arc<Pool>>,
}

/// What [`Forwarder::exchange`] did with a request.
pub enum Relay<'a> {
    /// The origin answered; its body is still to pass on.
    Answered(Answered<'a>),
    /// It failed in a way the visitor is told of.
    Failed(ProxyError),
    /// It is not for the fast lane, or the fast lane could not reach the origin:
    /// the request is for [`Forwarder::forward`] (which waits for the origin, and
    /// sends it again, as the module docs say).
    Not,
}

/// Where a request came from, for the `X-Forwarded-*` headers.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// Whether the peer is a trusted proxy, whose forwarding headers are kept.
    pub trusted: bool,
}

/// A request's head, kept to build the request again.
struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

/// The body as it will be sent: kept whole (can be sent again), or streamed once
/// (noting when the client's side of it broke, which is then not the origin's fault).
enum Payload {
    Kept(Bytes),
    Streamed(Option<Body>, Arc<AtomicBool>),
}

impl Payload {
    /// Keeps `body` when its size is known and small, or it has none.
    async fn of<B: ReqBody>(body: B) -> Result<Self, ProxyError> {
        match body.size_hint().exact() {
            Some(0) => Ok(Self::Kept(Bytes::new())),
            Some(n) if n <= KEEP_BODY => body
                .collect()
                .await
                .map(|b| Self::Kept(b.to_bytes()))
                .map_err(|e| ProxyError::BrokenRequest(e.into().to_string())),
            _ => Ok(Self::Streamed(
                Some(body.map_err(Into::into).boxed()),
                Arc::default(),
            )),
        }
    }

    /// Whether the client's body broke while it was streamed to the origin.
    fn broke(&self) -> bool {
        matches!(self, Self::Streamed(_, broke) if broke.load(Ordering::Relaxed))
    }

    /// The body for one attempt; `None` when a streamed body was sent already.
    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Kept(bytes) => Some(crate::http::full(bytes.clone())),
            Self::Streamed(body, broke) => body.take().map(|b| {
                let broke = broke.clone();
                b.map_err(move |e| {
                    broke.store(true, Ordering::Relaxed);
                    e
                })
                .boxed()
            }),
        }
    }
}

impl Forwarder {
    /// A forwarder to `origin` (scheme and authority only), behind `breaker`;
    /// `tls` checks an `https://` origin (HTTP/2 when it offers it).
    pub fn new(
        origin: Uri,
        timeout: Duration,
        metrics: Metrics,
        breaker: Breaker,
        tls: Option<rustls::ClientConfig>,
    ) -> Self {
        Self::build(origin, timeout, metrics, false, breaker, tls)
    }

    /// A forwarder to another waitroom process at `to` that passes requests on as
    /// they came (the successor after a handover).
    pub fn relay(to: Uri, metrics: Metrics) -> Self {
        let breaker = Breaker::new(BreakerConfig {
            enabled: false,
            ..Default::default()
        });
        Self::build(to, Duration::from_secs(60), metrics, true, breaker, None)
    }

    fn build(
        origin: Uri,
        timeout: Duration,
        metrics: Metrics,
        relay: bool,
        breaker: Breaker,
        tls: Option<rustls::ClientConfig>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.enforce_http(false);
        // A plain origin never uses the TLS configuration: an empty one will do.
        let tls = tls.unwrap_or_else(|| {
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let raw = (!relay && origin.scheme_str() == Some("http"))
            .then(|| origin.authority())
            .flatten()
            .map(|a| {
                let port = a.port_u16().unwrap_or(80);
                Pool::new(format!("{}:{port}", a.host()))
            });
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
            breaker,
            limit: None,
            idempotent_paths: Arc::new([]),
            raw,
        }
    }

    /// Gives the origin at most `max` requests at once (0: no limit): the others
    /// wait here in the order they came, up to the breaker's `hold_requests`, and a
    /// request keeps its place until the origin's whole answer has gone through.
    pub fn with_max_in_flight(mut self, max: u32) -> Self {
        self.limit = (max > 0).then(|| Arc::new(tokio::sync::Semaphore::new(max as usize)));
        self
    }

    /// Declares that at these path prefixes the origin treats a request sent twice
    /// as sent once (a registration keyed by the person's number, say), so a
    /// POST or PATCH whose connection broke under it may be sent once more.
    pub fn with_idempotent_paths(mut self, paths: &[String]) -> Self {
        self.idempotent_paths = paths.into();
        self
    }

    /// Whether the request means the same sent twice: by its method, the client's
    /// Idempotency-Key, or the operator's word for its path.
    fn resendable(&self, head: &Head) -> bool {
        idempotent(&head.method)
            || head.headers.contains_key(IDEMPOTENCY_KEY)
            || self
                .idempotent_paths
                .iter()
                .any(|p| crate::http::path_under(head.uri.path(), p))
    }

    /// The origin's circuit breaker.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Counts an answer with `status` from a request sent at `started`, and tells
    /// the breaker (a 5xx is a failure).
    fn answered(&self, status: http::StatusCode, started: Instant, ticket: Ticket) {
        let now = Instant::now();
        self.metrics
            .origin_latency(now.saturating_duration_since(started).as_secs_f64());
        self.metrics.origin_response(status);
        let failed = status.is_server_error();
        if failed {
            self.metrics.origin_error("status_5xx");
        }
        let outcome = if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        ticket.record_at(outcome, now);
    }

    /// Sends `req` (a GET or HEAD without a body) to a plain-HTTP origin over the
    /// fast lane's own connections and reads the answer's head; the body is then
    /// passed on by [`Answered::relay`]. Only when the origin takes it at once:
    /// with `origin.max_in_flight`, while the breaker holds requests, or when the
    /// origin cannot be reached, it is left for [`Self::forward`].
    pub async fn exchange<B>(&self, req: &Request<B>, peer: Peer) -> Relay<'_> {
        let Some(pool) = self.raw.as_ref().filter(|_| self.limit.is_none()) else {
            return Relay::Not;
        };
        let authority = pool.authority();
        let write_head = |out: &mut Vec<u8>| raw_head(out, req, peer, authority);
        let head_only = req.method() == Method::HEAD;
        let mut retried = false;
        loop {
            // One reading of the clock: the breaker's, the latency's start and
            // the deadline's.
            let started = Instant::now();
            let Pass::Go(ticket) = self.breaker.pass_at(started) else {
                return Relay::Not;
            };
            match pool
                .exchange(write_head, head_only, started + self.timeout)
                .await
            {
                Ok(answered) => {
                    self.answered(answered.status, started, ticket);
                    return Relay::Answered(answered);
                }
                Err(Failure::Refused(e)) => {
                    // Given to the other way without a verdict: it waits for the
                    // origin to come back, and counts what it finds.
                    tracing::debug!(error = %e, "fast lane could not reach the origin");
                    drop(ticket);
                    return Relay::Not;
                }
                Err(Failure::Broken(e)) => {
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("broken");
                    // The origin went away under the request: a GET or HEAD goes
                    // once more, as with the other way.
                    if !retried {
                        retried = true;
                        tracing::info!(error = %e, "origin request broke: sending it again");
                        continue;
                    }
                    tracing::warn!(error = %e, "origin request failed");
                    return Relay::Failed(ProxyError::OriginUnreachable(e.to_string()));
                }
                Err(Failure::TimedOut) => {
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("timeout");
                    return Relay::Failed(ProxyError::OriginTimeout);
                }
            }
        }
    }

    /// Sends `req` to the origin and returns its response, streaming; waits while
    /// the origin is failing (see the module docs).
    pub async fn forward<B: ReqBody>(
        &self,
        req: Request<B>,
        peer: Peer,
    ) -> Result<Response<Body>, ProxyError> {
        let (mut parts, body) = req.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut uri = self.origin.clone().into_parts();
        uri.path_and_query = Some(
            path.parse()
                .map_err(|_| ProxyError::OriginUnreachable("bad path".into()))?,
        );
        let uri = Uri::from_parts(uri).map_err(|e| ProxyError::OriginUnreachable(e.to_string()))?;
        strip_hop_by_hop(&mut parts.headers);
        if !self.relay {
            // HTTP/2 names the host in the URI (`:authority`), HTTP/1.1 in `Host`.
            let host = parts.headers.remove(HOST).or_else(|| {
                let authority = parts.uri.authority()?;
                HeaderValue::from_str(authority.as_str()).ok()
            });
            set_forwarded(&mut parts.headers, peer, host);
        }
        let head = Head {
            method: parts.method,
            uri,
            version: Version::HTTP_11,
            headers: parts.headers,
        };
        let mut payload = Payload::of(body).await?;
        let deadline = Instant::now() + self.breaker.config().hold_requests;
        // A turn at the origin first (a fair semaphore: in the order asked).
        let permit = match &self.limit {
            Some(limit) => match limit.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    // Counted as waiting only when it does wait.
                    let _waiting = self.metrics.queued_for_origin();
                    match tokio::time::timeout_at(deadline, limit.clone().acquire_owned()).await {
                        Ok(Ok(permit)) => Some(permit),
                        _ => return Err(ProxyError::OriginHeld),
                    }
                }
            },
            None => None,
        };
        let mut changes = self.breaker.subscribe();
        let mut retried = false;
        loop {
            let ticket = match self.breaker.pass() {
                Pass::Go(ticket) => ticket,
                Pass::Wait => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(ProxyError::OriginHeld);
                    }
                    let _waiting = self.metrics.holding_request();
                    let nap = (deadline - now).min(Duration::from_millis(250));
                    let _ = tokio::time::timeout(nap, changes.changed()).await;
                    continue;
                }
            };
            let Some(body) = payload.take() else {
                return Err(ProxyError::OriginUnreachable(
                    "the request's body was already sent".into(),
                ));
            };
            let mut request = Request::new(body);
            *request.method_mut() = head.method.clone();
            *request.uri_mut() = head.uri.clone();
            *request.version_mut() = head.version;
            *request.headers_mut() = head.headers.clone();
            let started = Instant::now();
            let sent = tokio::time::timeout(self.timeout, self.client.request(request)).await;
            match sent {
                Ok(Ok(response)) => {
                    self.answered(response.status(), started, ticket);
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    let body = body.map_err(Into::into).boxed();
                    let body = match permit {
                        Some(permit) => Holding {
                            body,
                            _permit: permit,
                        }
                        .boxed(),
                        None => body,
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(_) => {
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("timeout");
                    return Err(ProxyError::OriginTimeout);
                }
                Ok(Err(e)) if e.is_connect() => {
                    ticket.record(Outcome::Refused);
                    self.metrics.origin_error("connect");
                    // Nothing reached the origin: the request may go again once it
                    // is back, if its body was kept.
                    if matches!(payload, Payload::Kept(_)) && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    tracing::warn!(error = %e, "origin refused the connection");
                    return Err(ProxyError::OriginUnreachable(e.to_string()));
                }
                Ok(Err(e)) if payload.broke() => {
                    // The client's body broke (malformed chunks, cut short): the
                    // client's mistake; the ticket is dropped without an outcome.
                    drop(ticket);
                    return Err(ProxyError::BrokenRequest(e.to_string()));
                }
                Ok(Err(e)) => {
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("broken");
                    // The origin went away under the request (killed, restarted):
                    // a request that means the same sent twice goes once more,
                    // when the breaker lets it; any other could have been acted on.
                    if !retried
                        && self.resendable(&head)
                        && matches!(payload, Payload::Kept(_))
                        && Instant::now() < deadline
                    {
                        retried = true;
                        tracing::info!(error = %e, "origin request broke: sending it again");
                        continue;
                    }
                    tracing::warn!(error = %e, "origin request failed");
                    return Err(ProxyError::OriginUnreachable(e.to_string()));
                }
            }
        }
    }
}

/// A response body that keeps its request's turn at the origin until it is
/// through (or dropped).
struct Holding {
    body: Body,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl hyper::body::Body for Holding {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Whether sending a request with `method` twice means the same as sending it
/// once (RFC 9110, 9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Removes hop-by-hop headers, including those named in `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
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
fn set_forwarded(headers: &mut HeaderMap, peer: Peer, host: Option<HeaderValue>) {
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
fn raw_head<B>(out: &mut Vec<u8>, req: &Request<B>, peer: Peer, authority: &str) {
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
