//! Per-client and per-session rate limits (keyed GCRA limiters from `governor`),
//! changeable at run time.
//!
//! - **New places per client** (`[clients] places_per_minute`, `places_burst`):
//!   the allowance given at once, 30 a minute with a burst of 30 by default. Past
//!   it a newcomer is not refused but has the place of their arrival kept, to be
//!   earned by work that grows with the client's excess ([`Excess`],
//!   [`crate::public`]): a carrier's NAT keeps its order, a farm pays per place.
//!   Past [`KEPT`] kept places, a `429`.
//! - **Requests per admitted session** (`[limits] session_requests_per_second`,
//!   `session_burst`): one admission is one person, not fifty machines sharing a
//!   cookie. A browser loading a page with its assets stays well inside it.
//!
//! A limit of 0 is off. State is kept per key and swept of keys that have fully
//! recovered ([`Limiter::sweep`]), so memory follows the clients active lately.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};

/// A rate: so many per period, with a burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    /// Events per period; 0 turns the limit off.
    pub rate: u32,
    /// How many may come at once.
    pub burst: u32,
}

/// The period a [`Limit`]'s rate counts over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
}

impl Limit {
    /// No limit.
    pub const OFF: Self = Self { rate: 0, burst: 0 };

    fn quota(self, per: Per) -> Option<Quota> {
        let rate = NonZeroU32::new(self.rate)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        let quota = match per {
            Per::Second => Quota::per_second(rate),
            Per::Minute => Quota::per_minute(rate),
        };
        Some(quota.allow_burst(burst))
    }
}

/// A keyed limiter whose limit can be changed while it runs (a change starts
/// every key afresh).
pub struct Limiter<K: Hash + Eq + Clone> {
    per: Per,
    state: RwLock<(Limit, Option<Arc<DefaultKeyedRateLimiter<K>>>)>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    /// A limiter of `limit` per `per`.
    pub fn new(limit: Limit, per: Per) -> Self {
        Self {
            per,
            state: RwLock::new((limit, Self::build(limit, per))),
        }
    }

    fn build(limit: Limit, per: Per) -> Option<Arc<DefaultKeyedRateLimiter<K>>> {
        limit
            .quota(per)
            .map(|q| Arc::new(DefaultKeyedRateLimiter::keyed(q)))
    }

    /// The limit in force.
    pub fn limit(&self) -> Limit {
        self.state.read().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Sets a new limit (every key starts afresh under it).
    pub fn set(&self, limit: Limit) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.0 != limit {
            *state = (limit, Self::build(limit, self.per));
        }
    }

    /// The limiter in force (`None`: the limit is off).
    fn in_force(&self) -> Option<Arc<DefaultKeyedRateLimiter<K>>> {
        self.state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Counts one event for `key`: `Err(wait)` when it is over the limit, with
    /// how long until the next would be allowed.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = self.in_force() else {
            return Ok(());
        };
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets keys that have fully recovered; returns how many are still kept.
    pub fn sweep(&self) -> usize {
        self.in_force().map_or(0, |l| {
            l.retain_recent();
            l.shrink_to_fit();
            l.len()
        })
    }
}

/// The limits of one instance, shared by the public side (which counts) and the
/// admin API (which changes them live).
pub struct Protection {
    /// New places per client (keyed by [`crate::clients::limit_key`]), per minute:
    /// the allowance given at once; past it, places are kept and earned.
    pub places: Limiter<std::net::IpAddr>,
    /// Places kept per client past its allowance ([`KEPT`]): past this, what no
    /// browser of a crowd does, a `429`.
    pub kept: Limiter<std::net::IpAddr>,
    /// How far each client went past its allowance lately.
    pub excess: Excess,
    /// Tickets each client is given at once in a lottery's pre-queue.
    pub tickets: Tickets,
    /// Requests per admitted session (keyed by session number), per second.
    pub sessions: Limiter<u64>,
    /// The proof-of-work challenge before a place.
    pub pow: crate::pow::ProofOfWork,
}

/// Places one client may have kept past its allowance: 100 a second, 1,000 at
/// once. A carrier's NAT of thousands arriving in one minute stays well inside;
/// a script asking for more only makes itself kept places it must earn, and past
/// this is refused.
pub const KEPT: Limit = Limit {
    rate: 6_000,
    burst: 1_000,
};

/// How far each client has gone past its allowance of new places lately: a count
/// of places asked past it, halved every [`EXCESS_HALF_LIFE`]. The work a kept
/// place asks for grows with it (see [`crate::public`]).
#[derive(Debug, Default)]
pub struct Excess {
    seen:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, tokio::time::Instant)>>,
}

/// Places one client is given at once in a lottery's pre-queue, for the whole
/// pre-queue: [`FREE_TICKETS`]. In arrival order a place taken later is worth
/// less, but in a draw every place is a ticket of its own and the holder uses the
/// best: the allowance of an ordinary line would be thirty tickets a minute. Past
/// these, a ticket is a kept place, earned by work (see [`crate::public`]), so
/// everybody behind one address gets one, and a script collecting tickets pays
/// for each.
#[derive(Debug, Default)]
pub struct Tickets {
    taken: std::sync::Mutex<std::collections::HashMap<(u64, std::net::IpAddr), u32>>,
}

/// Tickets a client is given at once per lottery opening.
pub const FREE_TICKETS: u32 = 2;

impl Tickets {
    /// Whether `client` may have one more ticket of the opening at `opens`
    /// without work (and counts it).
    pub fn take(&self, opens: u64, client: std::net::IpAddr) -> bool {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let n = taken.entry((opens, client)).or_insert(0);
        if *n >= FREE_TICKETS {
            return false;
        }
        *n += 1;
        true
    }

    /// Forgets the openings long past (`now_ms`, the line's time); returns how
    /// many clients are kept.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        taken.retain(|(opens, _), _| opens.saturating_add(24 * 3_600_000) > now_ms);
        taken.len()
    }
}

/// How fast a client's excess is forgotten.
pub const EXCESS_HALF_LIFE: Duration = Duration::from_secs(60);

impl Excess {
    /// Notes one more place asked past the allowance by `client` at `now`;
    /// returns the count, this one included.
    pub fn note(&self, client: std::net::IpAddr, now: tokio::time::Instant) -> f64 {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (count, at) = seen.entry(client).or_insert((0.0, now));
        *count = decayed(*count, *at, now) + 1.0;
        *at = now;
        *count
    }

    /// The count of `client` at `now`, noting nothing.
    pub fn level(&self, client: std::net::IpAddr, now: tokio::time::Instant) -> f64 {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.get(&client)
            .map_or(0.0, |(count, at)| decayed(*count, *at, now))
    }

    /// Forgets clients whose count has decayed below one; returns how many are kept.
    pub fn sweep(&self, now: tokio::time::Instant) -> usize {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, (count, at)| decayed(*count, *at, now) >= 1.0);
        seen.len()
    }
}

/// `count` noted at `at`, as it stands at `now`.
fn decayed(count: f64, at: tokio::time::Instant, now: tokio::time::Instant) -> f64 {
    let halves = now.saturating_duration_since(at).as_secs_f64() / EXCESS_HALF_LIFE.as_secs_f64();
    count * 0.5f64.powf(halves)
}

/// The limits as the admin API shows and takes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProtectionPatch {
    /// New places one client may take a minute (0: no limit).
    pub places_per_minute: Option<u32>,
    /// How many of them at once.
    pub places_burst: Option<u32>,
    /// Requests one admitted session may make a second (0: no limit).
    pub session_requests_per_second: Option<u32>,
    /// How many of them at once.
    pub session_burst: Option<u32>,
    /// Whether newcomers must answer a proof-of-work challenge before a place.
    pub proof_of_work: Option<bool>,
    /// How hard the challenge is: leading zero bits (1 to 28; each one doubles it).
    pub pow_difficulty: Option<u32>,
}

impl Protection {
    /// Limits of `places` new places per client a minute and `session` requests
    /// per session a second.
    pub fn new(places: Limit, session: Limit) -> Self {
        Self {
            places: Limiter::new(places, Per::Minute),
            kept: Limiter::new(KEPT, Per::Minute),
            excess: Excess::default(),
            tickets: Tickets::default(),
            sessions: Limiter::new(session, Per::Second),
            pow: crate::pow::ProofOfWork::new(false, DEFAULT_DIFFICULTY),
        }
    }

    /// With the proof-of-work challenge `enabled` or not, at `difficulty` bits.
    pub fn with_pow(mut self, enabled: bool, difficulty: u32) -> Self {
        self.pow = crate::pow::ProofOfWork::new(enabled, difficulty);
        self
    }

    /// The limits in force, every field set.
    pub fn current(&self) -> ProtectionPatch {
        let (p, s) = (self.places.limit(), self.sessions.limit());
        ProtectionPatch {
            places_per_minute: Some(p.rate),
            places_burst: Some(p.burst),
            session_requests_per_second: Some(s.rate),
            session_burst: Some(s.burst),
            proof_of_work: Some(self.pow.enabled()),
            pow_difficulty: Some(self.pow.difficulty()),
        }
    }

    /// Applies a change, checked as the configuration is: `Err` names the field
    /// and the reason.
    pub fn apply(&self, patch: ProtectionPatch) -> Result<ProtectionPatch, String> {
        let (p, s) = (self.places.limit(), self.sessions.limit());
        let places = Limit {
            rate: patch.places_per_minute.unwrap_or(p.rate),
            burst: patch.places_burst.unwrap_or(p.burst),
        };
        let session = Limit {
            rate: patch.session_requests_per_second.unwrap_or(s.rate),
            burst: patch.session_burst.unwrap_or(s.burst),
        };
        if places.rate > 0 && places.burst == 0 {
            return Err("places_burst: must be at least 1".into());
        }
        if session.rate > 0 && session.burst < 10 {
            return Err("session_burst: must be at least 10".into());
        }
        if patch
            .pow_difficulty
            .is_some_and(|d| !(1..=crate::pow::MAX_DIFFICULTY).contains(&d))
        {
            return Err(format!(
                "pow_difficulty: must be 1 to {} (bits)",
                crate::pow::MAX_DIFFICULTY
            ));
        }
        self.pow.set(patch.proof_of_work, patch.pow_difficulty);
        self.places.set(places);
        self.sessions.set(session);
        Ok(self.current())
    }

    /// Forgets clients and sessions that have fully recovered, and answers to
    /// challenges that expired.
    pub fn sweep(&self) {
        self.pow.sweep(crate::clock::wall_ms() / 1000);
        let clients = self.places.sweep();
        let kept = self.kept.sweep();
        let excess = self.excess.sweep(tokio::time::Instant::now());
        let tickets = self.tickets.sweep(crate::clock::wall_ms());
        let sessions = self.sessions.sweep();
        tracing::debug!(
            clients,
            kept,
            excess,
            tickets,
            sessions,
            "rate limits swept"
        );
    }
}

/// The proof-of-work difficulty unless configured: about a second of a phone's work.
pub const DEFAULT_DIFFICULTY: u32 = 18;

/// Seconds to put in `Retry-After` for a wait: at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits_and_others_are_unaffected() {
        let l = Limiter::new(Limit { rate: 30, burst: 5 }, Per::Minute);
        for _ in 0..5 {
            assert!(l.check(&1).is_ok());
        }
        let wait = l.check(&1).unwrap_err();
        assert!(wait <= Duration::from_secs(2), "{wait:?}");
        assert_eq!(retry_after_secs(wait), 2);
        assert!(l.check(&2).is_ok());
        assert_eq!(l.sweep(), 2);
    }

    #[test]
    fn excess_counts_and_halves_every_minute() {
        let e = Excess::default();
        let t = tokio::time::Instant::now();
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..99 {
            e.note(ip, t);
        }
        assert_eq!(e.note(ip, t), 100.0);
        let later = e.note(ip, t + EXCESS_HALF_LIFE);
        assert!((later - 51.0).abs() < 1e-9, "{later}");
        assert_eq!(e.sweep(t + EXCESS_HALF_LIFE * 3), 1);
        assert_eq!(e.sweep(t + EXCESS_HALF_LIFE * 10), 0);
    }

    #[test]
    fn a_client_gets_two_tickets_per_opening() {
        let t = Tickets::default();
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!(t.take(1_000, ip) && t.take(1_000, ip));
        assert!(!t.take(1_000, ip), "a third is earned");
        assert!(t.take(2_000, ip), "another opening");
        assert_eq!(t.sweep(1_000 + 24 * 3_600_000), 1);
    }

    #[test]
    fn off_and_changed_live() {
        let l = Limiter::new(Limit { rate: 0, burst: 0 }, Per::Second);
        for _ in 0..1000 {
            assert!(l.check(&"a").is_ok());
        }
        l.set(Limit { rate: 1, burst: 1 });
        assert!(l.check(&"a").is_ok());
        assert!(l.check(&"a").is_err());
        assert_eq!(l.limit(), Limit { rate: 1, burst: 1 });
    }
}
