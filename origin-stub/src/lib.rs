//! origin-stub: a stand-in for the site waitroom protects, with a finite capacity.
//!
//! It serves at most `capacity` requests at once, each taking `service_time_ms`.
//! Beyond that, requests wait in a backlog (the queueing delay an overloaded
//! server shows); when the backlog is full, or a request has waited longer than
//! `queue_timeout_ms`, it is refused with `503`. Every response carries
//! `x-served-by: origin-stub`; `GET /__stats` reports what it saw, `POST /__reset`
//! clears the counters and `/__echo` answers with the request it received.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How the stub behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests served at once.
    pub capacity: usize,
    /// Time to serve one request.
    pub service_time: Duration,
    /// Requests that may wait for a free slot; more are refused at once.
    pub backlog: usize,
    /// Longest wait for a free slot before a `503`.
    pub queue_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            capacity: 50,
            service_time: Duration::from_millis(50),
            backlog: 200,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    waiting: AtomicU64,
}

struct Stub {
    options: Options,
    slots: Semaphore,
    counters: Counters,
}

/// Decrements `in_flight` however the request ends.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters) -> Self {
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

type Body = Full<Bytes>;

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

impl Stub {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() == "/__stats" {
            return self.stats();
        }
        if req.uri().path() == "/__reset" && req.method() == Method::POST {
            self.counters.max_in_flight.store(0, Ordering::SeqCst);
            self.counters.requests.store(0, Ordering::SeqCst);
            self.counters.errors.store(0, Ordering::SeqCst);
            return self.stats();
        }
        if req.uri().path() == "/__echo" {
            return echo(req).await;
        }
        let _in_flight = InFlight::enter(&self.counters);
        self.counters.requests.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        // Read the whole request, as a real application would before answering.
        if req.into_body().collect().await.is_err() {
            return self.refuse(StatusCode::BAD_REQUEST, "broken request body");
        }
        if self.counters.waiting.fetch_add(1, Ordering::SeqCst) >= self.options.backlog as u64 {
            self.counters.waiting.fetch_sub(1, Ordering::SeqCst);
            return self.refuse(StatusCode::SERVICE_UNAVAILABLE, "overloaded: backlog full");
        }
        let permit = tokio::time::timeout(self.options.queue_timeout, self.slots.acquire()).await;
        self.counters.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(Ok(_permit)) = permit else {
            return self.refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded: waited too long",
            );
        };
        tokio::time::sleep(self.options.service_time).await;
        respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Registration</title></head>\
                 <body><h1>Registration site</h1><p id=\"origin\">You reached {}</p></body></html>\n",
                html_escape(&path)
            ),
        )
    }

    fn refuse(&self, status: StatusCode, why: &'static str) -> Response<Body> {
        self.counters.errors.fetch_add(1, Ordering::SeqCst);
        respond(status, "text/plain", why)
    }

    fn stats(&self) -> Response<Body> {
        let c = &self.counters;
        let body = serde_json::json!({
            "in_flight": c.in_flight.load(Ordering::SeqCst),
            "max_in_flight": c.max_in_flight.load(Ordering::SeqCst),
            "requests": c.requests.load(Ordering::SeqCst),
            "errors": c.errors.load(Ordering::SeqCst),
            "waiting": c.waiting.load(Ordering::SeqCst),
            "capacity": self.options.capacity,
        });
        respond(StatusCode::OK, "application/json", body.to_string())
    }
}

/// `/__echo`: the request as the stub received it (method, path, headers, body size).
async fn echo(req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let headers: serde_json::Map<String, serde_json::Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let size = body.collect().await.map(|b| b.to_bytes().len()).ok();
    let answer = serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": size,
    });
    respond(StatusCode::OK, "application/json", answer.to_string())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Serves the stub on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    options: Options,
    shutdown: impl Future<Output = ()> + Send,
) {
    let stub = Arc::new(Stub {
        slots: Semaphore::new(options.capacity),
        options,
        counters: Counters::default(),
    });
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
        let stub = stub.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let stub = stub.clone();
                async move { Ok::<_, std::convert::Infallible>(stub.handle(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
