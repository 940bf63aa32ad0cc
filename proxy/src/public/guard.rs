//! What is turned away before the line is asked anything: requests no browser
//! sends, newcomers without an answer to the proof-of-work challenge, and clients
//! or sessions over their rate limits.

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Method, Request, Response, StatusCode};

use super::Public;
use crate::admission::Presented;
use crate::clients::limit_key;
use crate::forward::Peer;
use crate::http::{self as h, Body};
use crate::limits::retry_after_secs;
use crate::queue_page::Trouble;
use crate::token::Kind;

impl Public {
    /// A request no browser sends, refused before anything else: `CONNECT` (this
    /// is not a forward proxy) and HTTP/1.1 without exactly one `Host` (RFC 9112
    /// §3.2: a request smuggled past another proxy often looks like that).
    pub(super) fn refused<B: h::ReqBody>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let hosts = req.headers().get_all(http::header::HOST).iter().count();
        let (status, reason) = if req.method() == Method::CONNECT {
            (StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served here")
        } else if hosts > 1 || (hosts == 0 && req.version() == http::Version::HTTP_11) {
            (
                StatusCode::BAD_REQUEST,
                "a request needs exactly one Host header",
            )
        } else {
            return None;
        };
        self.metrics.client_error("request");
        tracing::debug!(method = %req.method(), hosts, "refused a malformed request");
        let mut r = h::error(status, reason);
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        Some(r)
    }

    /// While the proof-of-work challenge is on: a newcomer without a good answer
    /// gets a challenge (a page that answers it and comes back; JSON `403` for
    /// JSON clients) instead of a place. Holders of places and admissions pass.
    pub(super) fn challenged<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        presented: &Presented,
    ) -> Option<Response<Body>> {
        let pow = &self.protection.pow;
        if !pow.enabled() {
            return None;
        }
        let line = self.admission.store().line_id();
        if matches!(presented, Presented::Valid(c) if c.l == line && c.k != Kind::Challenge) {
            return None;
        }
        let tokens = self.admission.tokens();
        let now = self.admission.clock().now_secs();
        let answers = format!("{}_pow", self.cookie.name);
        if h::cookies(req.headers(), &answers)
            .iter()
            .any(|answer| pow.accept(tokens, answer, now))
        {
            self.metrics.challenge("solved");
            return None;
        }
        self.metrics.challenge("issued");
        let challenge = pow.challenge(tokens);
        Some(self.challenge_answer(req, &challenge, pow.difficulty(), false))
    }

    /// Whether `client` may have a place (kept place `seq`, or a newcomer's) at
    /// once, without work: from the allowance of new places, or in a lottery's
    /// pre-queue from its few tickets (see [`crate::limits::Tickets`]). Counts it.
    pub(super) fn allowance(&self, seq: Option<u64>, client: std::net::IpAddr) -> bool {
        let places = &self.protection.places;
        match self.admission.ticket_opening(seq) {
            Some(opens) if places.limit().rate > 0 => self.protection.tickets.take(opens, client),
            _ => places.check(&client).is_ok(),
        }
    }

    /// The answer that asks for the work of `challenge` (at `bits`): a page that
    /// does it and comes back (for a kept place, one that also comes back by
    /// itself without JavaScript), or for JSON clients a `403` saying what to do.
    pub(super) fn challenge_answer<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        challenge: &str,
        bits: u32,
        kept: bool,
    ) -> Response<Body> {
        let answers = format!("{}_pow", self.cookie.name);
        if h::wants_json(req.headers()) {
            let mut json = serde_json::json!({
                "error": "proof_of_work_required",
                "challenge": challenge,
                "difficulty": bits,
                "cookie": answers,
            });
            if kept {
                json["kept"] = true.into();
            }
            return h::json(StatusCode::FORBIDDEN, &json);
        }
        let lang = self.language(req);
        let live = self.live();
        let text = |key| live.page.message(lang, key);
        let (checking, needs_js, refresh) = match kept {
            true => ("kept", "kept_no_js", Some(KEPT_REFRESH_SECS)),
            false => ("checking", "needs_js", None),
        };
        let html = crate::pow::page(
            lang,
            &crate::pow::Texts {
                title: &text("check_title"),
                checking: &text(checking),
                needs_js: &text(needs_js),
            },
            challenge,
            bits,
            &self.cookie.name,
            refresh,
        );
        Self::page_response(StatusCode::OK, lang, "check", html)
    }

    /// Whether the request is over a limit, checked before the store is asked
    /// anything: a newcomer whose client has taken its allowance of new places
    /// gets a place kept (see [`super::kept`]); a `429` for a client past even the
    /// places it may have kept, or an admitted session used faster than a person
    /// does.
    pub(super) fn over_limit<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        peer: Peer,
        presented: &Presented,
    ) -> Option<Over> {
        let line = self.admission.store().line_id();
        let (limit, verdict) = match presented {
            Presented::Valid(c) if c.l == line && c.k == Kind::Admission => {
                ("session", self.protection.sessions.check(&c.n))
            }
            Presented::Valid(c) if c.l == line => return None,
            _ => {
                let client = limit_key(self.live().clients.client(peer.addr.ip(), req.headers()));
                if self.allowance(None, client) {
                    return None;
                }
                if self.protection.kept.check(&client).is_ok() {
                    return Some(Over::Keep);
                }
                ("places", self.protection.kept.check(&client))
            }
        };
        let wait = verdict.err()?;
        self.metrics.rate_limited(limit);
        tracing::debug!(limit, peer = %peer.addr, "over a rate limit");
        let retry_secs = retry_after_secs(wait);
        let asked = self.asked(req);
        let mut r = if asked.json {
            h::json(
                StatusCode::TOO_MANY_REQUESTS,
                &serde_json::json!({ "error": "too_many_requests", "retry_after": retry_secs }),
            )
        } else {
            let html = self.live().page.render_error(
                Trouble::TooMany,
                asked.lang,
                &asked.target,
                retry_secs,
                asked.repeatable,
            );
            Self::page_response(StatusCode::TOO_MANY_REQUESTS, asked.lang, "limited", html)
        };
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_secs));
        Some(Over::Refused(r))
    }
}

/// How often a kept place's page comes back by itself without JavaScript.
const KEPT_REFRESH_SECS: u32 = 5;

/// What a request over a limit gets.
pub(super) enum Over {
    /// A place kept in arrival order, to be earned (a newcomer past the allowance).
    Keep,
    /// A `429`.
    Refused(Response<Body>),
}
