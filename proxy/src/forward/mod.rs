//! Forwarding an admitted visitor's request to the origin.
//!
//! One pooled keep-alive hyper client; bodies stream both ways; hop-by-hop headers
//! are removed and `X-Forwarded-For`/`-Proto`/`-Host` are set ([`headers`]). Every
//! request passes the origin's circuit breaker ([`crate::breaker`]): while the
//! origin is failing, requests wait here for it to recover (up to the breaker's
//! `hold_requests`) instead of failing against it. A request's body is read from
//! the visitor under its own deadline ([`payload`]); one that is small (most are:
//! a page, a form) is kept, so that when the origin refused the connection
//! (nothing reached it) it is sent again once the origin is back. A request that
//! means the same sent twice (GET, HEAD, PUT, DELETE…; a POST to a path in
//! `origin.idempotent_paths`, or carrying an `Idempotency-Key` where
//! `origin.honours_idempotency_key` says the origin honours it) whose connection
//! broke under it is sent once more as well; any other, never. With
//! `origin.max_in_flight`, a request waits for a turn at the origin ([`turns`]),
//! which it holds until the origin's answer has been read off ([`ahead`]).

pub mod ahead;
mod headers;
pub mod payload;
pub mod turns;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONNECTION, HOST};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::{capture_connection, CaptureConnection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::breaker::{Breaker, BreakerConfig, Outcome, Pass, Ticket};
use crate::config::Config;
use crate::h1::has_body;
use crate::h1::upstream::{Answered, Failure, Pool};
use crate::http::{Body, ProxyError, ReqBody};
use crate::metrics::Metrics;
use headers::{raw_head, set_forwarded, strip_hop_by_hop};
use payload::Payload;
pub use turns::Holder;
use turns::Turns;

/// A client's promise that sending its request twice means sending it once
/// (draft-ietf-httpapi-idempotency-key-header).
const IDEMPOTENCY_KEY: &str = "idempotency-key";

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
    /// Turns at the origin (`origin.max_in_flight`).
    turns: Option<Arc<Turns>>,
    /// Path prefixes where a POST or PATCH means the same sent twice
    /// (`origin.idempotent_paths`).
    idempotent_paths: Arc<[String]>,
    /// Whether a client's `Idempotency-Key` makes a POST re-sendable
    /// (`origin.honours_idempotency_key`).
    honours_idempotency_key: bool,
    /// How long a client may send nothing of a body (`limits.body_timeout`).
    body_timeout: Duration,
    /// How long a client may take nothing of an answer (`limits.write_timeout`).
    write_timeout: Duration,
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

    /// The forwarder `config` describes, behind `breaker`.
    pub fn configured(
        config: &Config,
        metrics: Metrics,
        breaker: Breaker,
    ) -> Result<Self, crate::tls::TlsError> {
        let tls = match config.origin.scheme_str() {
            Some("https") => Some(crate::tls::origin_client_config(
                config.origin_tls_ca.as_deref(),
            )?),
            _ => None,
        };
        let mut forwarder = Self::new(
            config.origin.clone(),
            config.origin_timeout,
            metrics,
            breaker,
            tls,
        )
        .with_max_in_flight(
            config.origin_max_in_flight,
            config.origin_max_in_flight_per_visitor,
        )
        .with_idempotent_paths(&config.origin_idempotent_paths);
        forwarder.honours_idempotency_key = config.origin_honours_idempotency_key;
        forwarder.body_timeout = config.edge.body_timeout;
        forwarder.write_timeout = config.edge.write_timeout;
        Ok(forwarder)
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
                Pool::new(format!("{}:{port}", a.host()), metrics.clone())
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
            turns: None,
            idempotent_paths: Arc::new([]),
            honours_idempotency_key: false,
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            raw,
        }
    }

    /// Gives the origin at most `max` requests at once (0: no limit), at most
    /// `per_visitor` of them to one visitor: the others wait here in the order
    /// they came, up to the breaker's `hold_requests`, and a request keeps its
    /// turn until the origin's whole answer has been read off (see [`ahead`]).
    pub fn with_max_in_flight(mut self, max: u32, per_visitor: u32) -> Self {
        self.turns = (max > 0).then(|| Turns::new(max, per_visitor, self.metrics.clone()));
        self
    }

    /// Declares that at these path prefixes the origin treats a request sent twice
    /// as sent once (a registration keyed by the person's number, say), so a
    /// POST or PATCH whose connection broke under it may be sent once more.
    pub fn with_idempotent_paths(mut self, paths: &[String]) -> Self {
        self.idempotent_paths = paths.into();
        self
    }

    /// Whether the request means the same sent twice: by its method, or the
    /// operator's word (for its path, or for the client's `Idempotency-Key`).
    fn resendable(&self, head: &Head) -> bool {
        idempotent(&head.method)
            || (self.honours_idempotency_key && head.headers.contains_key(IDEMPOTENCY_KEY))
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
        let Some(pool) = self.raw.as_ref().filter(|_| self.turns.is_none()) else {
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
                .exchange(write_head, head_only, started, started + self.timeout)
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
                Err(Failure::Misbehaved(kind)) => {
                    drop(ticket);
                    return Relay::Failed(self.misbehaved(kind));
                }
            }
        }
    }

    /// Counts and logs an answer the origin framed against the protocol, which
    /// the visitor gets as a 502: the origin's doing, but not held against it
    /// by the breaker (it answers, and a visitor could steer it to such a page).
    fn misbehaved(&self, kind: &'static str) -> ProxyError {
        self.metrics.origin_misbehaved(kind);
        tracing::warn!(kind, "the origin's answer broke the protocol; answered 502");
        ProxyError::OriginProtocol(kind)
    }

    /// Sends `req` to the origin and returns its response, streaming; waits while
    /// the origin is failing (see the module docs).
    pub async fn forward<B: ReqBody>(
        &self,
        req: Request<B>,
        peer: Peer,
        holder: Holder,
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
            if parts.method == Method::HEAD && self.raw.is_some() {
                // An origin may send a HEAD's body anyway: the connection ends
                // with the answer (HTTP/1.1 only; see `poison` for the rest).
                parts
                    .headers
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let head = Head {
            method: parts.method,
            uri,
            version: Version::HTTP_11,
            headers: parts.headers,
        };
        // The body first, from the visitor and at the visitor's pace: no turn
        // at the origin is held meanwhile.
        let mut payload = Payload::of(body, self.body_timeout).await?;
        let deadline = Instant::now() + self.breaker.config().hold_requests;
        let turn = match &self.turns {
            Some(turns) => Some(
                turns
                    .take(holder, deadline)
                    .await
                    .ok_or(ProxyError::OriginHeld)?,
            ),
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
            let connection = capture_connection(&mut request);
            let started = Instant::now();
            // The origin's time runs while it is the one waited for: a visitor
            // sending a body slowly is not the origin being slow.
            let sent = tokio::select! {
                sent = self.client.request(request) => Ok(sent),
                _ = payload.origin_timeout(self.timeout) => Err(()),
            };
            match sent {
                Ok(Ok(response)) => {
                    if let Some(kind) = against_protocol(&response) {
                        poison(&connection);
                        drop(ticket);
                        return Err(self.misbehaved(kind));
                    }
                    if head.method == Method::HEAD || !has_body(response.status()) {
                        // Nothing says where it ends for an origin that sends a
                        // body anyway, late: the connection is not used again.
                        poison(&connection);
                    }
                    self.answered(response.status(), started, ticket);
                    let (mut parts, body) = response.into_parts();
                    strip_hop_by_hop(&mut parts.headers);
                    // Trailers are left out, as the fast lane leaves them out.
                    let body = body
                        .map_frame(|frame| match frame.into_data() {
                            Ok(data) => hyper::body::Frame::data(data),
                            Err(_) => hyper::body::Frame::data(Bytes::new()),
                        })
                        .map_err(Into::into)
                        .boxed();
                    let body = match turn {
                        Some(turn) => {
                            ahead::read_ahead(body, turn, self.write_timeout, self.metrics.clone())
                        }
                        None => body,
                    };
                    return Ok(Response::from_parts(parts, body));
                }
                Err(()) => {
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("timeout");
                    return Err(ProxyError::OriginTimeout);
                }
                Ok(Err(e)) if e.is_connect() => {
                    ticket.record(Outcome::Refused);
                    self.metrics.origin_error("connect");
                    // Nothing reached the origin: the request may go again once it
                    // is back, if its body was kept.
                    if payload.is_kept() && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    tracing::warn!(error = %e, "origin refused the connection");
                    return Err(ProxyError::OriginUnreachable(e.to_string()));
                }
                Ok(Err(e)) => {
                    if let Some(fault) = payload.clients_fault() {
                        // The client's body broke or stalled: the client's doing;
                        // the ticket is dropped without an outcome.
                        drop(ticket);
                        tracing::debug!(error = %e, "the client's body broke or stalled");
                        return Err(fault);
                    }
                    ticket.record(Outcome::Failure);
                    self.metrics.origin_error("broken");
                    // The origin went away under the request (killed, restarted):
                    // a request that means the same sent twice goes once more,
                    // when the breaker lets it; any other could have been acted on.
                    if !retried
                        && self.resendable(&head)
                        && payload.is_kept()
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

/// How an answer breaks the protocol, if it does (see
/// [`crate::metrics::MISBEHAVIOUR`]): switching protocols when no request of
/// ours asks to (`Upgrade` is not passed on), or a transfer coding other than
/// chunked when none is offered (`TE` is not passed on).
fn against_protocol<T>(response: &Response<T>) -> Option<&'static str> {
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        return Some("unasked_upgrade");
    }
    let mut codings = response
        .headers()
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => None,
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => None,
        _ => Some("transfer_coding"),
    }
}

/// Keeps the HTTP/1.1 connection the request went over out of the pool (an
/// HTTP/2 connection frames every answer exactly, and is shared).
fn poison(connection: &CaptureConnection) {
    if let Some(c) = connection.connection_metadata().as_ref() {
        if !c.is_negotiated_h2() {
            c.poison();
        }
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
