//! A browser's HTTP side: a shared pooled client, one cookie jar per visitor.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How a request failed, as the report counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Could not connect (refused, reset before an answer).
    Connect,
    /// No answer within the request timeout.
    Timeout,
    /// A 4xx answer.
    Client4xx,
    /// A 5xx answer.
    Server5xx,
}

/// A complete answer.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Which page of a waiting room this answer is (`queue`, `error`, `check`,
    /// `limited`: waitroom's `waitroom-page` header), `None` for the site's own.
    pub fn waitroom_page(&self) -> Option<&str> {
        self.headers
            .get("waitroom-page")
            .map(|v| v.to_str().unwrap_or("other"))
    }

    /// The body as text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Seconds the answer asks to wait before trying again (`Retry-After`).
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The error kind of a 4xx/5xx answer.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        if self.status.is_server_error() {
            Some(ErrorKind::Server5xx)
        } else if self.status.is_client_error() {
            Some(ErrorKind::Client4xx)
        } else {
            None
        }
    }
}

/// The HTTP client all visitors share (a pool of keep-alive connections).
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Self { client, timeout }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Reply, ErrorKind> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ErrorKind::Connect)?;
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| ErrorKind::Connect)?
                .to_bytes();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        })
        .await;
        answer.unwrap_or(Err(ErrorKind::Timeout))
    }
}

/// One visitor's browser: the shared client and their own cookies.
pub struct Browser {
    http: Http,
    base: String,
    cookies: BTreeMap<String, String>,
    /// The address this browser would have on the internet, sent as
    /// `X-Forwarded-For` (believed by a waitroom that trusts the loadtest's host),
    /// with `--spread-addresses`; without, every visitor is the loadtest's host.
    address: Option<String>,
}

impl Browser {
    /// A browser with an empty jar, visiting `base` (`http://host:port`), as
    /// visitor number `id`; `spread`: with an address of its own, `10.x.y.z` from
    /// the number, so that a waitroom trusting the loadtest's host tells the
    /// visitors apart (as it does real ones behind a load balancer) and limits each
    /// on its own.
    pub fn new(http: Http, base: &str, id: u32, spread: bool) -> Self {
        let [_, x, y, z] = id.to_be_bytes();
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
            address: spread.then(|| format!("10.{x}.{y}.{z}")),
        }
    }

    /// A request as a browser sends it, keeping cookies from the answer.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        accept: &str,
        form: Option<String>,
    ) -> Result<Reply, ErrorKind> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut headers = vec![("accept", accept)];
        if let Some(address) = &self.address {
            headers.push(("x-forwarded-for", address));
        }
        if !cookie.is_empty() {
            headers.push(("cookie", cookie.as_str()));
        }
        if form.is_some() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        let url = format!("{}{path}", self.base);
        let reply = self.http.send(method, &url, &headers, form).await?;
        for v in reply.headers.get_all(http::header::SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            if let Some((k, val)) = v.split(';').next().and_then(|p| p.split_once('=')) {
                self.cookies
                    .insert(k.trim().to_owned(), val.trim().to_owned());
            }
        }
        Ok(reply)
    }

    /// Sets cookie `name` as a page's script would.
    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    /// A page load.
    pub async fn page(&mut self, path: &str) -> Result<Reply, ErrorKind> {
        self.request(
            Method::GET,
            path,
            "text/html,application/xhtml+xml,*/*;q=0.8",
            None,
        )
        .await
    }
}
