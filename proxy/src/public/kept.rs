//! Places kept in arrival order (issue 27): a newcomer past their address's
//! allowance of new places (`clients.places_per_minute`, `places_burst`) is not
//! refused. The place their arrival would have had is kept for them
//! ([`crate::store::Store::arrive_kept`]: it counts nowhere — no position, never
//! called, passed over for nothing — until its holder checks in), and they earn it:
//!
//! - by the page's own proof of work, whose difficulty grows with how far their
//!   address has gone past its allowance lately ([`difficulty`]: a few
//!   milliseconds of a phone for a crowd behind one carrier's NAT, rising fourfold
//!   each time the excess doubles), solved in the background; or
//! - without JavaScript, as their address's allowance comes back: the page comes
//!   back by itself every few seconds, and each place the allowance gives earns
//!   the kept place that asks then.
//!
//! Earned, it is theirs where it stands — arrival order, not address, decides the
//! place — or, if the head passed it meanwhile, in the returned lane, first. A
//! script asking for thousands of places gets its allowance, then places it must
//! pay for in work at a price that grows with its rate; those it never earns cost
//! the line nothing. Past [`crate::limits::KEPT`] kept places (what no crowd of
//! browsers does), a `429`.

use http::header::{HeaderValue, SET_COOKIE};
use http::{Request, Response};

use super::Public;
use crate::admission::{Decision, Kept, Presented};
use crate::clients::limit_key;
use crate::forward::Peer;
use crate::http::{self as h, Body};
use crate::token::Kind;

/// The fewest bits a kept place's work asks for (about 4,000 hashes: a few
/// milliseconds of a phone).
pub const KEPT_BITS: u32 = 12;

/// The work a kept place asks for when its address has asked `excess` places past
/// an allowance of `burst` lately: [`KEPT_BITS`], and two bits more (four times the
/// work) each time the excess doubles past the allowance. A crowd of 150 behind one
/// address asks for 16 bits; a script asking 10,000 times a minute, 26.
pub fn difficulty(excess: f64, burst: u32) -> u32 {
    let over = excess.max(0.0) / f64::from(burst.max(1));
    let doublings = (1.0 + over).log2().floor() as u32;
    (KEPT_BITS + 2 * doublings).min(crate::pow::MAX_DIFFICULTY)
}

/// What became of a request's token before anything else is asked.
pub(super) enum Redeemed {
    /// Go on with this (a kept place earned is a place now, and its cookie).
    As(Presented, Option<HeaderValue>),
    /// A kept place not earned yet: the page (or JSON) that earns it.
    Page(Response<Body>),
}

impl Public {
    /// When the visitor holds a kept place: earned by the work of its challenge,
    /// or by the address's allowance coming back, it is a place of theirs from now
    /// on (with its token to set); otherwise the page that earns it, again.
    pub(super) fn redeem<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        peer: Peer,
        presented: Presented,
    ) -> Redeemed {
        let line = self.admission.store().line_id();
        let kept = match &presented {
            Presented::Valid(c) if c.k == Kind::Kept && c.l == line => c.clone(),
            _ => return Redeemed::As(presented, None),
        };
        let tokens = self.admission.tokens();
        let answers = format!("{}_pow", self.cookie.name);
        let worked = h::cookies(req.headers(), &answers)
            .iter()
            .any(|a| crate::pow::ProofOfWork::accept_kept(tokens, a, line, kept.n));
        let client = limit_key(self.live().clients.client(peer.addr.ip(), req.headers()));
        let earned = if worked {
            "earned_work"
        } else if self.allowance(Some(kept.n), client) {
            "earned_allowance"
        } else {
            return Redeemed::Page(self.kept_page(req, client, kept.n, None));
        };
        self.metrics.kept(earned);
        let (claims, token) = self.admission.earned(&kept);
        let cookie = self.cookie_header(req, (Kind::Queue, token));
        Redeemed::As(Presented::Valid(claims), Some(cookie))
    }

    /// A newcomer past their address's allowance: a place kept for them and the
    /// page that earns it; or, under passthrough (or while the store is away),
    /// the decision for them as for any newcomer.
    pub(super) async fn keep<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        peer: Peer,
    ) -> Result<Response<Body>, Decision> {
        let client = limit_key(self.live().clients.client(peer.addr.ip(), req.headers()));
        match self.admission.keep().await {
            Ok(Kept::Place { seq, token }) => {
                self.metrics.kept("kept");
                let now = tokio::time::Instant::now();
                self.protection.excess.note(client, now);
                let cookie = self.cookie_header(req, (Kind::Kept, token));
                Ok(self.kept_page(req, client, seq, Some(cookie)))
            }
            Ok(Kept::Admitted(decision)) => Err(decision),
            // A newcomer's way while the store is away (a provisional place).
            Err(_) => Err(self.admission.decide(&Presented::Nothing).await),
        }
    }

    /// The page (for a JSON client, a `403` with the challenge) that earns kept
    /// place `seq` of `client`, with `cookie` set.
    fn kept_page<B: h::ReqBody>(
        &self,
        req: &Request<B>,
        client: std::net::IpAddr,
        seq: u64,
        cookie: Option<HeaderValue>,
    ) -> Response<Body> {
        let excess = self
            .protection
            .excess
            .level(client, tokio::time::Instant::now());
        let bits = difficulty(excess, self.protection.places.limit().burst);
        let line = self.admission.store().line_id();
        let challenge = self
            .admission
            .tokens()
            .issue_kept_challenge(line, seq, bits);
        let mut r = self.challenge_answer(req, &challenge, bits, true);
        if let Some(c) = cookie {
            r.headers_mut().append(SET_COOKIE, c);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_work_grows_fourfold_each_time_the_excess_doubles() {
        assert_eq!(difficulty(0.0, 30), KEPT_BITS);
        assert_eq!(difficulty(29.0, 30), KEPT_BITS);
        assert_eq!(difficulty(30.0, 30), KEPT_BITS + 2);
        assert_eq!(difficulty(120.0, 30), 16, "150 behind one address");
        assert_eq!(difficulty(10_000.0, 30), 28, "capped");
        assert_eq!(difficulty(6_300.0, 30), 26, "10,000 a minute");
        assert_eq!(
            difficulty(5.0, 0),
            KEPT_BITS + 4,
            "a burst of 0 counts as 1"
        );
    }
}
