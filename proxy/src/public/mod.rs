//! The public listener: routing, the `/_waitroom/*` endpoints, and acting on
//! admission decisions (forward, or show the line).

use http::header::{HeaderValue, RETRY_AFTER, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};

use crate::admission::{Admission, Decision, Presented, Standing};
use crate::clients::TrustedProxies;
use crate::config::CookieSecure;
use crate::forward::{Forwarder, Holder, Peer, Relay};
use crate::h1::{Client, Sent};
use crate::http::{self as h, Body, ProxyError};
use crate::limits::{Limit, Protection};
use crate::metrics::Metrics;
use crate::queue_page::{Notes, Page, Status, Trouble};
use crate::token::Kind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

pub(crate) mod command;
mod guard;
mod kept;
mod rooms;

pub use rooms::Rooms;

/// Reserved prefix of the waiting room's own endpoints.
pub const RESERVED: &str = "/_waitroom/";

/// When a visitor whose request the site could not answer should try again.
const RETRY_AFTER_SECS: u64 = 5;

/// The header telling the site (and the visitor's browser) how many seconds an
/// admitted session lasts without another request.
static SESSION_LAPSES_IN: http::header::HeaderName =
    http::header::HeaderName::from_static("waitroom-session-lapses-in");

/// The header naming which page of the waiting room an answer is.
static PAGE_KIND: http::header::HeaderName = http::header::HeaderName::from_static("waitroom-page");

/// How long a visitor's choice of language is kept (a year).
const LANGUAGE_KEPT_SECS: u64 = 365 * 24 * 3600;

/// A poll interval made up to a quarter longer at random: visitors who arrived in
/// the same second do not keep polling in step (never sooner than told: that may
/// be the time their claim slot comes, see [`crate::admission::line`]).
fn spread(poll_after_ms: u64) -> u64 {
    poll_after_ms + rand::random_range(0..=poll_after_ms / 4)
}

/// Marks a request that came over TLS (its cookie is `Secure` under `auto`).
#[derive(Clone, Copy, Debug)]
struct OverTls;

/// What an answer about a request needs once the request itself is gone.
struct Asked {
    lang: &'static str,
    /// The cookie that keeps the language the visitor just chose, if they did.
    chosen: Option<HeaderValue>,
    target: String,
    json: bool,
    /// A GET or HEAD: the page may send it again by itself.
    repeatable: bool,
}

/// Cookie settings.
#[derive(Clone, Debug)]
pub struct CookiePolicy {
    /// Cookie name.
    pub name: String,
    /// When to mark it `Secure`.
    pub secure: CookieSecure,
}

/// The public side of the proxy.
#[derive(Clone)]
pub struct Public {
    admission: Admission,
    cookie: CookiePolicy,
    metrics: Metrics,
    /// Poll interval suggested while the store cannot be reached.
    held_poll_ms: u64,
    /// What a reload of the configuration replaces (see [`Public::reload`]).
    live: Arc<RwLock<Arc<Live>>>,
    /// Once set, every request goes to the successor process (see [`Public::relay_after`]).
    relay: Option<(Arc<AtomicBool>, Forwarder)>,
    /// Rate limits per client and per session.
    protection: Arc<Protection>,
    /// The value of [`SESSION_LAPSES_IN`]: the session's length in seconds.
    session_lapses_in: HeaderValue,
    /// The cookie that keeps the visitor's choice of language (`<cookie name>_lang`).
    language_cookie: String,
}

/// The part of the public side a reload of the configuration replaces at once:
/// requests that start after it use the new one; a request under way at that very
/// moment may still use the old one for what it does next (its origin, or its page).
#[derive(Clone)]
pub struct Live {
    /// The origin, its timeout and its TLS.
    pub forwarder: Forwarder,
    /// Path prefixes forwarded without admission.
    pub bypass: Vec<String>,
    /// The queue page's template and catalogues.
    pub page: Arc<Page>,
    /// Whose forwarding headers are believed.
    pub clients: TrustedProxies,
}

impl Public {
    /// The public service.
    pub fn new(
        admission: Admission,
        forwarder: Forwarder,
        cookie: CookiePolicy,
        bypass: Vec<String>,
        metrics: Metrics,
        held_poll_ms: u64,
        page: Arc<Page>,
    ) -> Self {
        let live = Live {
            forwarder,
            bypass,
            page,
            clients: TrustedProxies::default(),
        };
        let session_lapses_in = HeaderValue::from(admission.store().session_ms() / 1000);
        let language_cookie = format!("{}_lang", cookie.name);
        Self {
            admission,
            session_lapses_in,
            language_cookie,
            cookie,
            metrics,
            held_poll_ms,
            live: Arc::new(RwLock::new(Arc::new(live))),
            relay: None,
            protection: Arc::new(Protection::new(Limit::OFF, Limit::OFF)),
        }
    }

    /// What is in force now.
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `live` in force for the requests that start from now on (every clone
    /// of this service shares it).
    pub fn reload(&self, live: Live) {
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(live);
    }

    /// Tells clients apart through `clients` and limits them with `protection`
    /// (without it: every peer is its own client, and nothing is limited).
    pub fn with_edge(mut self, clients: TrustedProxies, protection: Arc<Protection>) -> Self {
        let live = Live {
            clients,
            ..(*self.live()).clone()
        };
        self.reload(live);
        self.protection = protection;
        self
    }

    /// Once `handed_over` is set, passes every request on to `successor`: the
    /// process that took the line over (memory mode), so a request on a connection
    /// opened before the handover is answered with the line, not held.
    pub fn relay_after(mut self, handed_over: Arc<AtomicBool>, successor: Forwarder) -> Self {
        self.relay = Some((handed_over, successor));
        self
    }

    /// Answers one request.
    pub async fn handle<B: h::ReqBody>(&self, req: Request<B>, peer: Peer) -> Response<Body> {
        self.answer(req, peer, None).await.into_response()
    }

    /// Answers one request; an admitted visitor's answer from the origin is
    /// relayed straight to `client` when the request came by the fast lane.
    pub async fn answer<B: h::ReqBody>(
        &self,
        mut req: Request<B>,
        mut peer: Peer,
        client: Option<&mut Client>,
    ) -> Sent {
        let live = self.live();
        peer.trusted = live.clients.trusts(peer.addr.ip());
        if peer.tls {
            req.extensions_mut().insert(OverTls);
        }
        if let Some((handed_over, successor)) = &self.relay {
            if handed_over.load(Ordering::SeqCst) {
                let asked = self.asked(&req);
                let holder = Holder::Client(peer.addr.ip());
                return Sent::Response(
                    match Box::pin(successor.forward(req, peer, holder)).await {
                        Ok(r) => r,
                        Err(e) => self.failed(&asked, e),
                    },
                );
            }
        }
        if let Some(refused) = self.refused(&req) {
            return Sent::Response(refused);
        }
        let path = req.uri().path();
        if let Some(endpoint) = path.strip_prefix(RESERVED) {
            return Sent::Response(match (req.method(), endpoint) {
                (&Method::GET | &Method::HEAD, "status") => self.status(&req, peer).await,
                (&Method::GET | &Method::HEAD, "jwks.json") => {
                    let mut r = h::json(StatusCode::OK, &self.admission.tokens().keys().jwks());
                    r.headers_mut().insert(
                        http::header::CACHE_CONTROL,
                        HeaderValue::from_static("public, max-age=300"),
                    );
                    r
                }
                (&Method::GET | &Method::HEAD, "lottery") => {
                    h::json(StatusCode::OK, &self.admission.lottery_public())
                }
                (&Method::GET | &Method::HEAD, "logo") => match live.page.logo() {
                    Some(logo) => {
                        let mut r =
                            h::respond(StatusCode::OK, logo.content_type, logo.bytes.clone());
                        let headers = r.headers_mut();
                        headers.insert(
                            http::header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        );
                        // An SVG opened on its own runs no script of ours.
                        headers.insert(
                            http::header::CONTENT_SECURITY_POLICY,
                            HeaderValue::from_static(
                                "default-src 'none'; style-src 'unsafe-inline'",
                            ),
                        );
                        headers.insert(
                            http::header::X_CONTENT_TYPE_OPTIONS,
                            HeaderValue::from_static("nosniff"),
                        );
                        r
                    }
                    None => h::error(StatusCode::NOT_FOUND, "this waiting room has no logo"),
                },
                (_, "status" | "jwks.json" | "lottery" | "logo") => {
                    h::error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                }
                _ => h::error(StatusCode::NOT_FOUND, "no such waiting-room endpoint"),
            });
        }
        if live.bypass.iter().any(|p| path.starts_with(p.as_str())) {
            self.metrics.request("bypass");
            return Box::pin(self.forward(req, peer, &live, None, None, client)).await;
        }
        let (presented, earned) = match self.redeem(&req, peer, self.presented(&req)) {
            kept::Redeemed::As(presented, earned) => (presented, earned),
            kept::Redeemed::Page(page) => return Sent::Response(page),
        };
        if let Some(challenged) = self.challenged(&req, &presented) {
            return Sent::Response(challenged);
        }
        let decision = match self.over_limit(&req, peer, &presented) {
            Some(guard::Over::Refused(limited)) => return Sent::Response(limited),
            Some(guard::Over::Keep) => match self.keep(&req, peer).await {
                Ok(page) => return Sent::Response(page),
                Err(decision) => decision,
            },
            None => self.admission.decide(&presented).await,
        };
        let status = self.status_of(&decision);
        let Decision {
            standing,
            set_token,
            lapsed,
            ..
        } = decision;
        match standing {
            Standing::Admitted { sid } => {
                self.metrics.request("forwarded");
                let mut req = req;
                let cookie = set_token
                    .map(|t| {
                        // The origin sees the new token already (origins may verify it).
                        h::replace_cookie(req.headers_mut(), &self.cookie.name, &t.1);
                        self.cookie_header(&req, t)
                    })
                    .or(earned);
                // Boxed: the forward is most of this future's size, and a poll
                // or a page need not carry (and copy) it.
                Box::pin(self.forward(req, peer, &live, cookie, Some(sid), client)).await
            }
            _ => {
                self.metrics.request("queued");
                let cookie = set_token.map(|t| self.cookie_header(&req, t)).or(earned);
                let lapsed = lapsed.then(|| self.admission.store().session_ms().div_ceil(1000));
                Sent::Response(self.waiting(&req, status, cookie, lapsed))
            }
        }
    }

    /// Counts and logs a request refused for a path that cannot be read one way
    /// only (see [`crate::path`]).
    pub fn refused_path(&self, e: crate::path::PathError) {
        self.metrics.client_error("path");
        tracing::debug!(
            reason = e.label(),
            "refused a path that cannot be read one way only"
        );
    }

    fn status_of(&self, d: &Decision) -> Status {
        match d.standing {
            Standing::Admitted { .. } => Status::admitted(),
            Standing::Waiting(w) => {
                let now = self
                    .admission
                    .store()
                    .line_time(self.admission.clock().now_ms());
                let mut status = Status::waiting(&w, now)
                    .progress_from(d.first_position)
                    .lottery(self.admission.in_lottery_prequeue(), d.drawn);
                status.poll_after_ms = spread(status.poll_after_ms);
                status
            }
            Standing::Held => Status::held(spread(self.held_poll_ms)),
        }
    }

    fn presented<B: h::ReqBody>(&self, req: &Request<B>) -> Presented {
        self.admission
            .present(&h::cookies(req.headers(), &self.cookie.name))
    }

    async fn status<B: h::ReqBody>(&self, req: &Request<B>, peer: Peer) -> Response<Body> {
        self.metrics.request("status");
        let (presented, earned) = match self.redeem(req, peer, self.presented(req)) {
            kept::Redeemed::As(presented, earned) => (presented, earned),
            kept::Redeemed::Page(page) => return page,
        };
        if let Some(challenged) = self.challenged(req, &presented) {
            return challenged;
        }
        let d = match self.over_limit(req, peer, &presented) {
            Some(guard::Over::Refused(limited)) => return limited,
            Some(guard::Over::Keep) => match self.keep(req, peer).await {
                Ok(page) => return page,
                Err(decision) => decision,
            },
            None => self.admission.decide(&presented).await,
        };
        let before = crate::queue_page::steady::Before::from_query(req.uri());
        let mut r = self.status_response(&self.status_of(&d).steadied(before), req);
        if let Some(c) = d.set_token.map(|t| self.cookie_header(req, t)).or(earned) {
            r.headers_mut().append(SET_COOKIE, c);
        }
        r
    }

    /// The status JSON for `req`, with the page text of the room's event under way
    /// and the operator's notice in the visitor's language, if any (written
    /// straight from the status, without a JSON tree in between, when there are
    /// none: the answer to nearly every poll).
    fn status_response<B: h::ReqBody>(&self, status: &Status, req: &Request<B>) -> Response<Body> {
        let (message, notice) = (self.admission.event_message(), self.admission.notice());
        let body = if message.is_none() && notice.is_none() {
            status.json_bytes()
        } else {
            let mut json = status.to_json();
            if let Some(m) = message {
                json["message"] = serde_json::Value::from(&*m);
            }
            if let Some(n) = notice {
                json["notice"] = serde_json::Value::from(n.text(self.language(req)));
            }
            json.to_string().into_bytes()
        };
        h::respond(StatusCode::OK, "application/json", body)
    }

    /// The language a page for `req` is in: `?lang=`, then the one the visitor
    /// chose before (their language cookie), then `Accept-Language`.
    fn language<B: h::ReqBody>(&self, req: &Request<B>) -> &'static str {
        let query_lang = h::query_param(req.uri(), "lang");
        let chosen = h::cookies(req.headers(), &self.language_cookie);
        let accept = req
            .headers()
            .get(http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        self.live()
            .page
            .language(query_lang, chosen.first().copied(), accept)
    }

    /// The cookie that keeps the language chosen with `?lang=` in `req`, when it
    /// names one offered and is not what the cookie already says: a reload or the
    /// next visit without `?lang=` stays in it.
    fn remember_language<B: h::ReqBody>(&self, req: &Request<B>) -> Option<HeaderValue> {
        let asked = h::query_param(req.uri(), "lang")?;
        let lang = self.live().page.known_language(asked)?;
        if h::cookies(req.headers(), &self.language_cookie).first() == Some(&lang) {
            return None;
        }
        Some(h::set_cookie(
            &self.language_cookie,
            lang,
            LANGUAGE_KEPT_SECS,
            self.secure(req),
        ))
    }

    /// An HTML page of ours in `lang`, of `kind` (`queue`, `error`, `check` or
    /// `limited`, in the header `waitroom-page`: a load generator or a monitor
    /// tells the waiting room's pages from the site's by it).
    fn page_response(
        status: StatusCode,
        lang: &'static str,
        kind: &'static str,
        html: String,
    ) -> Response<Body> {
        let mut r = h::respond(status, "text/html; charset=utf-8", html);
        r.headers_mut()
            .insert(PAGE_KIND.clone(), HeaderValue::from_static(kind));
        r.headers_mut().insert(
            http::header::CONTENT_LANGUAGE,
            HeaderValue::from_static(lang),
        );
        r.headers_mut().insert(
            http::header::VARY,
            HeaderValue::from_static("Accept-Language, Cookie"),
        );
        r
    }

    /// The queue page (or the status JSON) for `req`, with `cookie` set; the
    /// visitor's session lapsed after `lapsed` seconds without a request, if so.
    fn waiting<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        status: Status,
        cookie: Option<HeaderValue>,
        lapsed: Option<u64>,
    ) -> Response<Body> {
        let mut r = if h::wants_json(req.headers()) {
            self.status_response(&status, req)
        } else {
            let message = self.admission.event_message();
            let notice = self.admission.notice();
            let lang = self.language(req);
            let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
            let html = self.live().page.render_noting(
                &status,
                lang,
                target,
                &Notes {
                    message: message.as_deref(),
                    notice: notice.as_deref().map(|n| n.text(lang)),
                    lapsed_after_secs: lapsed,
                    resend: !matches!(*req.method(), Method::GET | Method::HEAD),
                },
            );
            let mut r = Self::page_response(StatusCode::OK, lang, "queue", html);
            if let Some(c) = self.remember_language(req) {
                r.headers_mut().append(SET_COOKIE, c);
            }
            r
        };
        if let Some(c) = cookie {
            r.headers_mut().append(SET_COOKIE, c);
        }
        r
    }

    /// What an answer about `req` needs once the request itself is gone.
    fn asked<B: h::ReqBody>(&self, req: &Request<B>) -> Asked {
        Asked {
            lang: self.language(req),
            chosen: self.remember_language(req),
            target: req
                .uri()
                .path_and_query()
                .map_or("/", |pq| pq.as_str())
                .to_owned(),
            json: h::wants_json(req.headers()),
            repeatable: matches!(*req.method(), Method::GET | Method::HEAD),
        }
    }

    /// The answer when the site could not answer `asked`: in the visitor's language
    /// with `Retry-After`, a page that tries again by itself (for a GET) or says to
    /// send the form again; JSON for JSON clients. The session is untouched.
    fn failed(&self, asked: &Asked, e: ProxyError) -> Response<Body> {
        let status = e.status();
        if let ProxyError::SlowBody = e {
            self.metrics.client_error("body");
            self.metrics.client_cut("body_timeout");
            tracing::debug!("a client sent nothing of its request's body for limits.body_timeout");
            let mut r = h::error(status, "the request's body did not come in time");
            r.headers_mut()
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        if !e.is_origin() {
            self.metrics.client_error("body");
            tracing::debug!(error = %e, "the client's request body broke");
            return h::error(status, "the request's body was malformed or broke off");
        }
        let retry_secs = RETRY_AFTER_SECS;
        let mut r = if asked.json {
            h::json(
                status,
                &serde_json::json!({ "error": e.code(), "retry_after": retry_secs }),
            )
        } else {
            let trouble = match e {
                ProxyError::OriginTimeout => Trouble::Slow,
                _ => Trouble::Down,
            };
            let html = self.live().page.render_error(
                trouble,
                asked.lang,
                &asked.target,
                retry_secs,
                asked.repeatable,
            );
            let mut r = Self::page_response(status, asked.lang, "error", html);
            if let Some(c) = &asked.chosen {
                r.headers_mut().append(SET_COOKIE, c.clone());
            }
            r
        };
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_secs));
        r
    }

    /// Forwards to the origin with `cookie` (a renewed token) set on the answer, and
    /// carries out the origin's command about session `sid` (see [`command`]); by
    /// the fast lane when the request came by it and the origin is plain HTTP.
    async fn forward<B: h::ReqBody>(
        &self,
        mut req: Request<B>,
        peer: Peer,
        live: &Live,
        cookie: Option<HeaderValue>,
        sid: Option<u64>,
        client: Option<&mut Client>,
    ) -> Sent {
        let secure = self.secure(&req);
        // How long the session lasts without another request: the site may warn
        // before it lapses. Never the client's own.
        match sid {
            Some(_) => req
                .headers_mut()
                .insert(SESSION_LAPSES_IN.clone(), self.session_lapses_in.clone()),
            None => req.headers_mut().remove(&SESSION_LAPSES_IN),
        };
        if let Some(client) = client {
            match live.forwarder.exchange(&req, peer).await {
                Relay::Answered(answered) => {
                    let (cookie, lapses) = self
                        .after_origin(answered.command, sid, cookie, secure)
                        .await;
                    let status = answered.status;
                    let extra = cookie
                        .iter()
                        .map(|c| (&SET_COOKIE, c))
                        .chain(lapses.then_some((&SESSION_LAPSES_IN, &self.session_lapses_in)));
                    let kept = answered.relay(client, extra).await;
                    return Sent::Relayed { status, kept };
                }
                Relay::Failed(e) => return Sent::Response(self.failed(&self.asked(&req), e)),
                Relay::Not => {}
            }
        }
        let asked = self.asked(&req);
        // Whose turn at the origin this is: the session's, or (on a path that
        // needs no admission) the client's.
        let holder = match sid {
            Some(sid) => Holder::Session(sid),
            None => Holder::Client(live.clients.client(peer.addr.ip(), req.headers())),
        };
        let mut r = match Box::pin(live.forwarder.forward(req, peer, holder)).await {
            Ok(r) => r,
            Err(e) => self.failed(&asked, e),
        };
        let command = command::take(r.headers_mut());
        let (cookie, lapses) = self.after_origin(command, sid, cookie, secure).await;
        if let Some(c) = cookie {
            r.headers_mut().append(SET_COOKIE, c);
        }
        if lapses {
            r.headers_mut()
                .insert(SESSION_LAPSES_IN.clone(), self.session_lapses_in.clone());
        }
        Sent::Response(r)
    }

    /// Carries out the origin's `command` about session `sid`; returns the cookie
    /// the answer sets (`cookie`, a renewed token; or the admission cookie deleted
    /// when the origin revoked the session), and whether it says the session's
    /// length ([`SESSION_LAPSES_IN`]: while the session goes on).
    async fn after_origin(
        &self,
        command: Option<command::Command>,
        sid: Option<u64>,
        cookie: Option<HeaderValue>,
        secure: bool,
    ) -> (Option<HeaderValue>, bool) {
        if let (Some(command), Some(sid)) = (command, sid) {
            self.admission.end_session(sid, command.label()).await;
        }
        match (command, sid) {
            // The admission goes with this answer: the cookie is deleted.
            (Some(command::Command::Revoke), Some(_)) => {
                (Some(h::set_cookie(&self.cookie.name, "", 0, secure)), false)
            }
            _ => (cookie, sid.is_some() && command.is_none()),
        }
    }

    fn cookie_header<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        (kind, token): (Kind, String),
    ) -> HeaderValue {
        let ttl = self.admission.tokens().ttl_secs(kind);
        h::set_cookie(&self.cookie.name, &token, ttl, self.secure(req))
    }

    /// Whether the cookie set in the answer to `req` is `Secure`.
    fn secure<B: h::ReqBody>(&self, req: &Request<B>) -> bool {
        match self.cookie.secure {
            CookieSecure::Always => true,
            CookieSecure::Never => false,
            CookieSecure::Auto => {
                req.uri().scheme_str() == Some("https")
                    || req.extensions().get::<OverTls>().is_some()
                    || req
                        .headers()
                        .get("x-forwarded-proto")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
            }
        }
    }
}
