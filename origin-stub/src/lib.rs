//! origin-stub: the registration site waitroom protects, with a finite capacity.
//!
//! # Layout
//! - [`overload`]: capacity, backlog, refusals and the collapse of throughput.
//! - [`registry`]: idempotent registrations and the outbox of confirmations.
//! - [`pages`]: the HTML a person sees.
//! - [`verify`]: optional check of waitroom admission tokens (JWKS).
//!
//! # Endpoints
//! Pages (`GET /`, `GET /register`, `POST /register`, `GET /check?nrn=`, anything
//! else) go through the overload model. The `/__*` endpoints do not:
//! `GET /__stats`, `GET /__outbox`, `POST /__reset`, `PUT /__capacity`, `/__echo`,
//! and `/__release`, `/__revoke` (answers carrying that `waitroom-command`).
//! Every response carries `x-served-by: origin-stub`.

pub mod overload;
pub mod pages;
pub mod registry;
pub mod verify;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub use overload::Options;
use overload::Overload;
use registry::Registry;
use verify::Verifier;

type Body = Full<Bytes>;

const MAX_BODY: usize = 64 * 1024;
/// The response header by which a site tells waitroom to end a visitor's session.
const COMMAND: &str = "waitroom-command";

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert("x-served-by", HeaderValue::from_static("origin-stub"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

fn json(value: serde_json::Value) -> Response<Body> {
    respond(StatusCode::OK, "application/json", value.to_string())
}

/// The site: its overload model, its registrations, and an optional token check.
pub struct Site {
    overload: Overload,
    registry: Registry,
    verifier: Option<Verifier>,
    /// Ends the visitor's waitroom session after a confirmed registration.
    release: bool,
}

impl Site {
    /// A site with this overload model.
    pub fn new(options: Options) -> Self {
        Self {
            overload: Overload::new(options),
            registry: Registry::default(),
            verifier: None,
            release: false,
        }
    }

    /// Answers a confirmed registration with `waitroom-command: release`, so the
    /// waiting room gives the visitor's slot to the next in line at once.
    pub fn releasing(mut self) -> Self {
        self.release = true;
        self
    }

    /// Keeps the registrations in `registry` (for example one in a file).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Refuses (403) page requests without a valid waitroom admission token.
    pub fn verifying(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) {
        let site = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => return,
            };
            let _ = stream.set_nodelay(true);
            let site = site.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let site = site.clone();
                    async move { Ok::<_, std::convert::Infallible>(site.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        if path.starts_with("/__") {
            return self.control(req, &path).await;
        }
        if let Some(v) = &self.verifier {
            if !v.admitted(req.headers()).await {
                return html(
                    StatusCode::FORBIDDEN,
                    pages::invalid("Please enter through the waiting room."),
                );
            }
        }
        let since = Instant::now();
        let _inside = self.overload.enter();
        let (parts, body) = req.into_parts();
        // Read the whole request, as a real application does before answering.
        let Ok(body) = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
        else {
            self.overload.counters.errors.fetch_add(1, Ordering::SeqCst);
            return html(
                StatusCode::BAD_REQUEST,
                pages::invalid("The request could not be read."),
            );
        };
        let slot = match self.overload.slot().await {
            Ok(s) => s,
            Err(_) => {
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "Service unavailable: the site is overloaded. Please try again later.",
                )
            }
        };
        tokio::time::sleep(slot.service_time).await;
        let response = self.page(&parts.method, &path, parts.uri.query(), &body);
        self.overload.served(since);
        response
    }

    fn page(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        body: &[u8],
    ) -> Response<Body> {
        let field = |bytes: &[u8], name: &str| {
            form_urlencoded::parse(bytes)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        match (method, path) {
            (&Method::GET, "/") => html(StatusCode::OK, pages::landing()),
            (&Method::GET, "/register") => html(StatusCode::OK, pages::form()),
            (&Method::POST, "/register") => {
                let nrn = field(body, "nrn");
                match self.registry.submit(&nrn, &field(body, "email")) {
                    Ok(s) => {
                        let mut r = html(
                            StatusCode::OK,
                            pages::confirmed(&nrn, &s.confirmation, s.new),
                        );
                        if self.release {
                            r.headers_mut()
                                .insert(COMMAND, HeaderValue::from_static("release"));
                        }
                        r
                    }
                    Err(e) => html(StatusCode::BAD_REQUEST, pages::invalid(e.message())),
                }
            }
            (&Method::GET, "/check") => {
                let nrn = field(query.unwrap_or("").as_bytes(), "nrn");
                let found = self.registry.lookup(&nrn);
                html(StatusCode::OK, pages::check(&nrn, found.as_deref()))
            }
            _ => html(StatusCode::OK, pages::other(path)),
        }
    }

    async fn control(&self, req: Request<Incoming>, path: &str) -> Response<Body> {
        match (req.method(), path) {
            (&Method::GET, "/__stats") => json(self.stats()),
            (&Method::GET, "/__outbox") => {
                json(serde_json::to_value(self.registry.outbox()).unwrap_or_default())
            }
            (_, "/__release" | "/__revoke") => {
                let mut r = json(serde_json::json!({ "command": &path[3..] }));
                let command = HeaderValue::from_str(&path[3..]).expect("a plain word");
                r.headers_mut().insert(COMMAND, command);
                r
            }
            (&Method::POST, "/__reset") => {
                self.overload.reset();
                self.registry.clear();
                json(self.stats())
            }
            (&Method::PUT | &Method::POST, "/__capacity") => {
                let body = Limited::new(req.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map(|b| b.to_bytes());
                let capacity = body
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["capacity"].as_u64())
                    .filter(|c| *c >= 1);
                match capacity {
                    Some(c) => {
                        self.overload.set_capacity(c as usize);
                        json(self.stats())
                    }
                    None => respond(
                        StatusCode::BAD_REQUEST,
                        "application/json",
                        r#"{"error":"body must be {\"capacity\": N} with N >= 1"}"#,
                    ),
                }
            }
            (_, "/__echo") => echo(req).await,
            _ => respond(
                StatusCode::NOT_FOUND,
                "application/json",
                r#"{"error":"no such endpoint"}"#,
            ),
        }
    }

    fn stats(&self) -> serde_json::Value {
        let c = &self.overload.counters;
        let (registrations, confirmations, resubmits) = self.registry.counts();
        serde_json::json!({
            "in_flight": c.in_flight.load(Ordering::SeqCst),
            "max_in_flight": c.max_in_flight.load(Ordering::SeqCst),
            "requests": c.requests.load(Ordering::SeqCst),
            "errors": c.errors.load(Ordering::SeqCst),
            "waiting": c.waiting.load(Ordering::SeqCst),
            "capacity": self.overload.capacity(),
            "latency_ms": self.overload.latency_ms(),
            "registrations": registrations,
            "confirmations": confirmations,
            "resubmits": resubmits,
        })
    }
}

/// `/__echo`: the request as the stub received it (method, URI, headers, body size).
async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let size = body.collect().await.map(|b| b.to_bytes().len()).ok();
    json(serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": size,
    }))
}

/// Serves a site with `options` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) {
    Site::new(options).serve(listener, shutdown).await
}
