//! Builders for integration tests: a real origin-stub, a real proxy, and visitors
//! that keep their cookie as a browser does. Everything binds 127.0.0.1:0.
#![allow(dead_code)]

pub mod nginx;
pub mod process;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use waitroom::config::Config;
use waitroom::shutdown::Trigger;
use waitroom::token::{KeyPair, Keyring};

pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Asks `f` every 100 ms until it holds; panics naming `what` after `limit` (for
/// what moves on the wall clock: a browser's page, an event's steps).
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting for {what}");
}

/// A port P with P+1 and P+2 free too (checked, then released): the demo's three.
pub fn three_free_ports() -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if p > 65_000 {
            continue;
        }
        let rest: Vec<_> = (1..=2)
            .filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)).ok())
            .collect();
        if rest.len() == 2 {
            return p;
        }
    }
    panic!("no three consecutive free ports");
}

/// A loopback port that was free a moment ago (for servers that cannot take `:0`:
/// a separate process, or one that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A token's claims, read without verifying (tests look at what they were given).
pub fn claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

/// A running origin-stub.
pub struct Origin {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts an origin-stub serving `capacity` at once, `service_ms` each.
pub async fn origin(capacity: usize, service_ms: u64) -> Origin {
    origin_at("127.0.0.1:0".parse().unwrap(), capacity, service_ms).await
}

/// An origin-stub that answers a confirmed registration with
/// `waitroom-command: release`.
pub async fn releasing_origin() -> Origin {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let site = origin_stub::Site::new(origin_stub::Options::default()).releasing();
    tokio::spawn(site.serve(listener, async move {
        let _ = stopped.await;
    }));
    Origin { addr, _stop: stop }
}

/// [`origin`] on `addr` (a site that comes up where the proxy expects it).
pub async fn origin_at(addr: SocketAddr, capacity: usize, service_ms: u64) -> Origin {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = origin_stub::Options {
        capacity,
        service_time: Duration::from_millis(service_ms),
        ..Default::default()
    };
    tokio::spawn(origin_stub::run(listener, options, async move {
        let _ = stopped.await;
    }));
    Origin { addr, _stop: stop }
}

impl Origin {
    /// The origin's `/__stats`.
    pub async fn stats(&self) -> serde_json::Value {
        let r = Http::new()
            .send(
                Method::GET,
                &format!("http://{}/__stats", self.addr),
                None,
                &[],
            )
            .await
            .unwrap();
        r.json()
    }
}

/// A proxy under construction: TOML sections added to a minimal config.
pub struct ProxyBuilder {
    origin: SocketAddr,
    sections: String,
    redis: Option<(String, String)>,
    store_extra: String,
    clients: String,
    listen_extra: String,
    origin_url: Option<String>,
    cookie_secure: &'static str,
    clock_skew_ms: i64,
}

/// The crowd tests' visitors all come from 127.0.0.1: without a word from the
/// test, the per-client place limit is off (tests of the limit turn it on).
const CLIENTS_DEFAULT: &str = "places_per_minute = 0\n";

/// A proxy in front of `origin`.
pub fn proxy(origin: &Origin) -> ProxyBuilder {
    ProxyBuilder {
        origin: origin.addr,
        sections: String::new(),
        redis: None,
        store_extra: String::new(),
        clients: CLIENTS_DEFAULT.to_owned(),
        listen_extra: String::new(),
        origin_url: None,
        cookie_secure: "never",
        clock_skew_ms: 0,
    }
}

impl ProxyBuilder {
    /// A proxy in front of whatever listens at `origin` (or nothing).
    pub fn to(origin: SocketAddr) -> Self {
        Self {
            origin,
            sections: String::new(),
            redis: None,
            store_extra: String::new(),
            clients: CLIENTS_DEFAULT.to_owned(),
            listen_extra: String::new(),
            origin_url: None,
            cookie_secure: "never",
            clock_skew_ms: 0,
        }
    }

    /// Runs the proxy with its clock `ms` ahead of the others' (behind if negative).
    pub fn clock_skew(mut self, ms: i64) -> Self {
        self.clock_skew_ms = ms;
        self
    }

    /// Keeps the line in Redis at `url`, as room `room` (keys shared there too).
    pub fn redis(mut self, url: &str, room: &str) -> Self {
        self.redis = Some((url.to_owned(), room.to_owned()));
        self
    }

    /// Sets the `[admission]` section.
    pub fn admission(mut self, per_minute: u32, max_active: u32, session: &str) -> Self {
        self.sections.push_str(&format!(
            "[admission]\nnew_users_per_minute = {per_minute}\nmax_active_users = {max_active}\nsession_duration = \"{session}\"\n"
        ));
        self
    }

    /// Adds raw TOML to the `[listen]` section (TLS files).
    pub fn listen_toml(mut self, text: &str) -> Self {
        self.listen_extra.push_str(text);
        self.listen_extra.push('\n');
        self
    }

    /// Sets the whole `[origin]` section (raw TOML: an https:// origin and its CA).
    pub fn origin_toml(mut self, text: &str) -> Self {
        self.origin_url = Some(text.to_owned());
        self
    }

    /// Sets `cookie.secure` (`"never"` unless told: the tests speak plain HTTP).
    pub fn cookie_secure(mut self, policy: &'static str) -> Self {
        self.cookie_secure = policy;
        self
    }

    /// Sets the `[clients]` section (raw TOML) instead of the tests' default.
    pub fn clients(mut self, text: &str) -> Self {
        self.clients = format!("{text}\n");
        self
    }

    /// Adds raw TOML to the `[store]` section.
    pub fn store_toml(mut self, text: &str) -> Self {
        self.store_extra.push_str(text);
        self.store_extra.push('\n');
        self
    }

    /// Adds raw TOML.
    pub fn toml(mut self, text: &str) -> Self {
        self.sections.push_str(text);
        self.sections.push('\n');
        self
    }

    /// Starts the proxy on port 0.
    pub async fn start(self) -> Proxy {
        let state = std::env::temp_dir().join(format!("waitroom-test-{}", rand::random::<u64>()));
        let store = match &self.redis {
            Some((url, room)) => format!(
                "kind = \"redis\"\nurl = \"{url}\"\nroom = \"{room}\"\nstate_dir = \"{}\"\n{}",
                state.display(),
                self.store_extra
            ),
            None => format!("state_dir = \"{}\"\n{}", state.display(), self.store_extra),
        };
        let origin = self
            .origin_url
            .clone()
            .unwrap_or_else(|| format!("url = \"http://{}\"", self.origin));
        let text = format!(
            "[listen]\npublic = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n{}[origin]\n{origin}\n[admin]\ntoken = \"{ADMIN_TOKEN}\"\n[cookie]\nsecure = \"{}\"\n[clients]\n{}[store]\n{store}\n{}",
            self.listen_extra,
            self.cookie_secure,
            self.clients,
            self.sections
        );
        let config = Config::from_toml(&text, None).unwrap();
        let public = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let (trigger, shutdown) = waitroom::shutdown::channel();
        let clock = waitroom::clock::Clock::starting_at(
            waitroom::clock::wall_ms().saturating_add_signed(self.clock_skew_ms),
        );
        let keys = match &self.redis {
            Some((url, room)) => {
                let (timing, settings) = (config.timing, config.settings);
                let target = waitroom::config::RedisTarget {
                    url: url.clone(),
                    cluster: false,
                    tls_ca: None,
                };
                let options = waitroom::app::Options {
                    keys: None,
                    clock,
                    reload: None,
                };
                tokio::spawn(async move {
                    let run = waitroom::app::run_with(config, public, admin, options, shutdown);
                    if let Err(e) = run.await {
                        panic!("proxy failed: {e}");
                    }
                });
                // The same initial settings as the proxy's (the first to arrive sets them).
                let store =
                    waitroom::store::redis::RedisStore::connect(&target, room, timing, settings)
                        .await
                        .unwrap();
                store.shared_keys().await.unwrap()
            }
            None => {
                let keys = Keyring::new(KeyPair::generate(), Vec::new());
                let options = waitroom::app::Options {
                    keys: Some(keys.clone()),
                    clock,
                    reload: None,
                };
                tokio::spawn(waitroom::app::run_with(
                    config, public, admin, options, shutdown,
                ));
                keys
            }
        };
        let proxy = Proxy {
            public: public_addr,
            admin: admin_addr,
            keys,
            _trigger: trigger,
        };
        // Ready once its store answers (the proxy connects in its own task).
        let ready = format!("http://{admin_addr}/readyz");
        for _ in 0..400 {
            let r = Http::new().send(Method::GET, &ready, None, &[]).await;
            if r.is_ok_and(|r| r.status == 200) {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the proxy never became ready");
    }
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub public: SocketAddr,
    pub admin: SocketAddr,
    /// The proxy's signing keys, to forge tokens that are valid but expired.
    pub keys: Keyring,
    _trigger: Trigger,
}

impl Proxy {
    /// A URL on the public listener.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }

    /// A raw GET to the public listener with these headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        Http::new()
            .send(Method::GET, &self.url(path), None, headers)
            .await
    }

    /// A new visitor with an empty cookie jar.
    pub fn visitor(&self, http: &Http) -> Visitor {
        Visitor::new(&format!("http://{}", self.public), http)
    }

    /// `GET /admin/state`.
    pub async fn state(&self) -> serde_json::Value {
        self.admin_call(Method::GET, "/admin/state", None)
            .await
            .json()
    }

    /// The status code of `GET /admin/state` (503 while the store is away).
    pub async fn state_status(&self) -> u16 {
        self.admin_call(Method::GET, "/admin/state", None)
            .await
            .status
            .as_u16()
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> String {
        Http::new()
            .send(
                Method::GET,
                &format!("http://{}/metrics", self.admin),
                None,
                &[],
            )
            .await
            .unwrap()
            .text()
    }

    /// The value of metric `name` (with its labels, as exported), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// `PATCH /admin/settings`.
    pub async fn patch(&self, body: serde_json::Value) -> Reply {
        self.admin_call(Method::PATCH, "/admin/settings", Some(body.to_string()))
            .await
    }

    /// Pauses the room (`PATCH {"paused": true}`).
    pub async fn pause(&self) {
        let r = self.patch(serde_json::json!({"paused": true})).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }

    /// A call to the admin listener with the bearer token.
    pub async fn admin_call(&self, method: Method, path: &str, body: Option<String>) -> Reply {
        admin_call(self.admin, method, path, body).await
    }
}

/// A call to the admin listener at `admin` with the bearer token.
pub async fn admin_call(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<String>,
) -> Reply {
    let auth = format!("Bearer {ADMIN_TOKEN}");
    Http::new()
        .send(
            method,
            &format!("http://{admin}{path}"),
            body,
            &[("authorization", auth.as_str())],
        )
        .await
        .unwrap()
}

/// An HTTP client (pooled), shared by many visitors.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// Whether the origin answered (rather than the waiting room).
    pub fn is_from_origin(&self) -> bool {
        self.headers
            .get("x-served-by")
            .is_some_and(|v| v == "origin-stub")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value set for cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    }
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(30), self.0.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| format!("request failed: {e}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A visitor: one browser with one cookie jar (the waitroom cookie).
pub struct Visitor {
    base: String,
    pub cookie: Option<String>,
    http: Http,
    /// The cookie it keeps (its room's).
    cookie_name: String,
    /// Where it asks for its status (its room's).
    status_path: String,
}

impl Visitor {
    /// A visitor of the site at `base` (`http://host:port`) with an empty jar.
    pub fn new(base: &str, http: &Http) -> Self {
        Self {
            base: base.to_owned(),
            cookie: None,
            http: http.clone(),
            cookie_name: "waitroom".into(),
            status_path: "/_waitroom/status".into(),
        }
    }

    /// A visitor of room `room` (not the default one): its cookie and status.
    pub fn in_room(mut self, room: &str) -> Self {
        self.cookie_name = format!("waitroom_{room}");
        self.status_path = format!("/_waitroom/status?room={room}");
        self
    }

    /// From now on uses connections of its own (as a browser that retries a
    /// request on a new connection after one closed under it).
    pub fn renew_connections(&mut self) {
        self.http = Http::new();
    }

    /// A GET as a browser sends it (asking for HTML), keeping the cookie.
    pub async fn get(&mut self, path: &str) -> Result<Reply, String> {
        self.request(Method::GET, path, "text/html,*/*;q=0.8").await
    }

    /// A status poll.
    pub async fn status(&mut self) -> Result<Reply, String> {
        let path = self.status_path.clone();
        self.request(Method::GET, &path, "application/json").await
    }

    /// Polls as a browser does (at most a second apart) until admitted; `false`
    /// after `polls` polls.
    pub async fn admitted_within(&mut self, polls: u32) -> bool {
        for _ in 0..polls {
            let status = self.status().await.unwrap().json();
            if status["state"] == "admitted" {
                return true;
            }
            let after = status["poll_after_ms"].as_u64().unwrap_or(1_000).min(1_000);
            tokio::time::sleep(Duration::from_millis(after)).await;
        }
        false
    }

    /// Any request, keeping the cookie.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        accept: &str,
    ) -> Result<Reply, String> {
        let cookie = self
            .cookie
            .as_ref()
            .map(|c| format!("{}={c}", self.cookie_name));
        let mut headers = vec![("accept", accept)];
        if let Some(c) = &cookie {
            headers.push(("cookie", c.as_str()));
        }
        let url = format!("{}{path}", self.base);
        let reply = self.http.send(method, &url, None, &headers).await?;
        if let Some(c) = reply.set_cookie(&self.cookie_name) {
            self.cookie = Some(c);
        }
        Ok(reply)
    }
}

/// What one visitor saw, for the crowd tests.
#[derive(Debug, Default, Clone)]
pub struct Journey {
    /// Seconds since the test's start.
    pub arrived: f64,
    /// When the waiting room let them in (seconds since start), if it did.
    pub admitted: Option<f64>,
    /// Whether they went straight in.
    pub direct: bool,
    /// Answers with a 5xx, and requests that failed outright.
    pub server_errors: u32,
    pub failures: Vec<String>,
    /// Requests answered by the origin after admission.
    pub origin_answers: u32,
    /// Status polls made while waiting.
    pub polls: u32,
    /// What each poll said: (seconds since start, position, eta_seconds, poll_after_ms).
    pub seen: Vec<(f64, u64, u64, u64)>,
}

impl Journey {
    pub fn note(&mut self, reply: &Result<Reply, String>) {
        match reply {
            Ok(r) if r.status.is_server_error() => self.server_errors += 1,
            Ok(_) => {}
            Err(e) => self.failures.push(e.clone()),
        }
    }
}

/// How a simulated visitor behaves.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Requests to the origin once admitted.
    pub requests_after: u32,
    /// Leave after this many status polls (None: stay until admitted).
    pub leave_after_polls: Option<u32>,
    /// Pause between requests once admitted.
    pub think: Duration,
}

/// One visitor's whole visit: arrive, wait as a browser does, then use the site.
pub async fn visit(
    proxy_visitor: &mut Visitor,
    start: std::time::Instant,
    b: Behaviour,
) -> Journey {
    let since = |s: std::time::Instant| s.elapsed().as_secs_f64();
    let mut j = Journey {
        arrived: since(start),
        ..Default::default()
    };
    let first = proxy_visitor.get("/register").await;
    j.note(&first);
    let Ok(first) = first else { return j };
    let mut poll_after = if first.is_from_origin() {
        j.admitted = Some(since(start));
        j.direct = true;
        j.origin_answers += 1;
        None
    } else {
        Some(
            proxy_visitor
                .status()
                .await
                .map(|r| r.json()["poll_after_ms"].as_u64().unwrap_or(1000))
                .unwrap_or(1000),
        )
    };
    while let Some(ms) = poll_after {
        if b.leave_after_polls.is_some_and(|n| j.polls >= n) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(ms)).await;
        let r = proxy_visitor.status().await;
        j.note(&r);
        j.polls += 1;
        match r {
            Ok(r) if r.status == StatusCode::OK => {
                let s = r.json();
                j.seen.push((
                    since(start),
                    s["position"].as_u64().unwrap_or(0),
                    s["eta_seconds"].as_u64().unwrap_or(0),
                    s["poll_after_ms"].as_u64().unwrap_or(0),
                ));
                if s["state"] == "admitted" {
                    j.admitted = Some(since(start));
                    poll_after = None;
                } else {
                    poll_after = Some(s["poll_after_ms"].as_u64().unwrap_or(1000));
                }
            }
            _ => poll_after = Some(1000),
        }
        if j.polls > 10_000 {
            return j;
        }
    }
    for _ in 0..b.requests_after {
        if !b.think.is_zero() {
            tokio::time::sleep(b.think).await;
        }
        let r = proxy_visitor.get("/register/form").await;
        j.note(&r);
        if let Ok(r) = &r {
            if r.is_from_origin() && r.status == StatusCode::OK {
                j.origin_answers += 1;
            }
        }
    }
    j
}

/// Sends `request` as raw bytes on a new connection to `addr` and reads until the
/// server closes it (or 20 s pass): for requests no well-behaved client sends.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw HTTP/1.1 answer (0 when there was none).
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
