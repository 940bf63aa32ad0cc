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
        if h::wants_json(req.headers()) {
            return Some(h::json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({
                    "error": "proof_of_work_required",
                    "challenge": challenge,
                    "difficulty": pow.difficulty(),
                    "cookie": answers,
                }),
            ));
        }
        let lang = self.language(req);
        let live = self.live();
        let text = |key| live.page.message(lang, key);
        let html = crate::pow::page(
            lang,
            &text("check_title"),
            &text("checking"),
            &text("needs_js"),
            &challenge,
            pow.difficulty(),
            &self.cookie.name,
        );
        Some(Self::page_response(StatusCode::OK, lang, "check", html))
    }

    /// A 429 when the request is over a limit: a newcomer whose client has taken
    /// its allowance of new places, or an admitted session used faster than a
    /// person does. Checked before the store is asked anything.
    pub(super) fn over_limit<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        peer: Peer,
        presented: &Presented,
    ) -> Option<Response<Body>> {
        let line = self.admission.store().line_id();
        let (limit, verdict) = match presented {
            Presented::Valid(c) if c.l == line && c.k == Kind::Admission => {
                ("session", self.protection.sessions.check(&c.n))
            }
            Presented::Valid(c) if c.l == line => return None,
            _ => {
                let client = self.live().clients.client(peer.addr.ip(), req.headers());
                ("places", self.protection.places.check(&limit_key(client)))
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
        Some(r)
    }
}
