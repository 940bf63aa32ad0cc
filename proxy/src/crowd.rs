//! A simulated crowd for `waitroom demo`: a few visitors in line before the first
//! real one arrives, so a newcomer opening a single tab sees their place behind
//! others and the line moving. Each simulated visitor takes a place, polls its
//! status as the queue page does, and once let in uses the site for a few seconds
//! and leaves through origin-stub's `/__release` (its session ends at once). New
//! ones arrive while fewer than [`Crowd::waiting`] are in line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, COOKIE, SET_COOKIE};
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::shutdown::Shutdown;

/// How large the crowd is.
#[derive(Clone, Copy, Debug)]
pub struct Crowd {
    /// Visitors in line at the start, and kept in line after.
    pub waiting: usize,
}

type Http = Client<HttpConnector, Empty<Bytes>>;

/// One simulated browser: the site's address and its cookie.
struct Visitor {
    http: Http,
    base: String,
    cookie: String,
}

impl Visitor {
    /// Takes a place (the first page, as a browser asks for it); `None` when the
    /// site did not give one.
    async fn arrive(http: &Http, base: &str) -> Option<Self> {
        let (headers, _) = get(http, &format!("{base}/"), None, "text/html").await?;
        let cookie = headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.starts_with("waitroom="))?
            .to_owned();
        Some(Self {
            http: http.clone(),
            base: base.to_owned(),
            cookie,
        })
    }

    /// Polls until let in (`true`), or gives up when the site stops answering.
    async fn wait_for_turn(&self, shutdown: &mut Shutdown) -> bool {
        loop {
            let url = format!("{}/_waitroom/status", self.base);
            let Some((_, body)) =
                get(&self.http, &url, Some(&self.cookie), "application/json").await
            else {
                return false;
            };
            let Ok(status) = serde_json::from_slice::<serde_json::Value>(&body) else {
                return false;
            };
            if status["state"] == "admitted" {
                return true;
            }
            let after = status["poll_after_ms"]
                .as_u64()
                .unwrap_or(2_000)
                .clamp(500, 5_000);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(after)) => {}
                _ = shutdown.wait() => return false,
            }
        }
    }

    /// Uses the site for `stay` (a page every few seconds), then leaves.
    async fn visit(&self, stay: Duration, shutdown: &mut Shutdown) {
        let until = tokio::time::Instant::now() + stay;
        while tokio::time::Instant::now() < until {
            let page = format!("{}/register", self.base);
            if get(&self.http, &page, Some(&self.cookie), "text/html")
                .await
                .is_none()
            {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
                _ = shutdown.wait() => return,
            }
        }
        let leave = format!("{}/__release", self.base);
        let _ = get(&self.http, &leave, Some(&self.cookie), "text/html").await;
    }
}

/// A GET of `url` with `cookie`; the answer's headers and body, `None` when it failed.
async fn get(
    http: &Http,
    url: &str,
    cookie: Option<&str>,
    accept: &'static str,
) -> Option<(http::HeaderMap, Bytes)> {
    let mut req = Request::get(url).header(ACCEPT, accept);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let req = req.body(Empty::new()).ok()?;
    let answer = tokio::time::timeout(Duration::from_secs(10), http.request(req))
        .await
        .ok()?
        .ok()?;
    let (parts, body) = answer.into_parts();
    let body = body.collect().await.ok()?.to_bytes();
    Some((parts.headers, body))
}

/// Starts the crowd at the waiting room on `public`: returns once the first
/// [`Crowd::waiting`] visitors have their places (so a visitor arriving after
/// finds them ahead), and keeps it going until `shutdown`.
pub async fn start(public: SocketAddr, crowd: Crowd, shutdown: Shutdown) -> usize {
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let base = format!("http://{public}");
    let in_line = Arc::new(AtomicUsize::new(0));
    let mut arrived = 0;
    for _ in 0..crowd.waiting {
        if let Some(v) = Visitor::arrive(&http, &base).await {
            arrived += 1;
            tokio::spawn(live(v, in_line.clone(), shutdown.clone()));
        }
    }
    tokio::spawn(keep_up(http, base, crowd, in_line, shutdown));
    arrived
}

/// One visitor's stay: in line, then on the site for 5 to 15 s.
async fn live(v: Visitor, in_line: Arc<AtomicUsize>, mut shutdown: Shutdown) {
    in_line.fetch_add(1, Ordering::SeqCst);
    let admitted = v.wait_for_turn(&mut shutdown).await;
    in_line.fetch_sub(1, Ordering::SeqCst);
    if admitted {
        let stay = Duration::from_millis(rand::random_range(5_000..15_000));
        v.visit(stay, &mut shutdown).await;
    }
}

/// Sends a newcomer every few seconds while fewer than the crowd's size wait.
async fn keep_up(
    http: Http,
    base: String,
    crowd: Crowd,
    in_line: Arc<AtomicUsize>,
    mut shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(rand::random_range(4_000..8_000))) => {}
            _ = shutdown.wait() => return,
        }
        if in_line.load(Ordering::SeqCst) >= crowd.waiting {
            continue;
        }
        if let Some(v) = Visitor::arrive(&http, &base).await {
            tokio::spawn(live(v, in_line.clone(), shutdown.clone()));
        }
    }
}
