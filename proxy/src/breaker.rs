//! The origin's health as this instance sees it: a circuit breaker on the answers
//! of the origin to forwarded requests.
//!
//! - **Closed** (healthy): requests go through. Every outcome is counted: a refused
//!   or broken connection, a timeout or a 5xx answer is a failure. The breaker
//!   opens after [`BreakerConfig::consecutive_failures`] failures in a row, when
//!   failures are at least [`BreakerConfig::failure_share`] of the last
//!   [`BreakerConfig::window`] (of at least [`BreakerConfig::min_requests`]), or
//!   when requests are in flight and none has been answered for
//!   [`BreakerConfig::stall_after`] (a hung origin).
//! - **Open**: requests wait here (up to [`BreakerConfig::hold_requests`]) instead
//!   of failing against a dead origin, and the line is held: nobody new is
//!   called (see [`crate::admission::line::Settings::held_until`]).
//! - **Half-open**, [`BreakerConfig::open_for`] after the last failure: one
//!   request at a time goes through as a probe; its success closes the breaker,
//!   its failure opens it again. Once closed, the line's outflow ramps up from a
//!   tenth of the rate (see [`crate::admission::line::RAMP_MS`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The breaker's settings (`[breaker]` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Whether the breaker acts at all (it always measures).
    pub enabled: bool,
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// Share of failures over the window that opens it…
    pub failure_share: f64,
    /// …counted once the window holds at least this many outcomes.
    pub min_requests: u32,
    /// The window over which the share is counted.
    pub window: Duration,
    /// How long it stays open after the last failure before probing.
    pub open_for: Duration,
    /// No answer for this long while requests are in flight opens it.
    pub stall_after: Duration,
    /// How long an admitted visitor's request waits for a failing origin before
    /// the visitor is answered with the retry page.
    pub hold_requests: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            consecutive_failures: 3,
            failure_share: 0.5,
            min_requests: 10,
            window: Duration::from_secs(5),
            open_for: Duration::from_secs(2),
            stall_after: Duration::from_secs(5),
            hold_requests: Duration::from_secs(12),
        }
    }
}

/// Where the breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Healthy: requests go through.
    Closed,
    /// Failing: requests wait, until this time at least.
    Open {
        /// When a probe may go.
        until: Instant,
    },
    /// A probe may go (or is under way).
    HalfOpen,
}

impl State {
    /// The value of the `waitroom_origin_breaker` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open { .. } => 1,
            Self::HalfOpen => 2,
        }
    }
}

/// How a forwarded request ended, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An answer below 500.
    Success,
    /// No answer (broken, timed out) or a 5xx.
    Failure,
    /// The origin refused the connection: a failure, but one that cost the origin
    /// nothing, so while it lasts the breaker probes again after
    /// [`REFUSED_PROBE_AFTER`] rather than [`BreakerConfig::open_for`], and a
    /// restarted origin gets the held requests as soon as it listens.
    Refused,
}

/// How soon a breaker opened by a refused connection probes again (at most
/// [`BreakerConfig::open_for`]).
pub const REFUSED_PROBE_AFTER: Duration = Duration::from_millis(250);

/// What a request may do now.
pub enum Pass {
    /// Go to the origin, and report the outcome on the ticket.
    Go(Ticket),
    /// Wait for a change (see [`Breaker::subscribe`]) and ask again.
    Wait,
}

/// A request under way to the origin. Its outcome is recorded with
/// [`Ticket::record`]; dropped without one (the client went away), it tells the
/// breaker nothing about the origin but frees its place (a probe's, too).
pub struct Ticket {
    breaker: Breaker,
    open: bool,
}

impl Ticket {
    /// Records how the request ended.
    pub fn record(self, outcome: Outcome) {
        self.record_at(outcome, Instant::now());
    }

    /// Records how the request ended, at `now`.
    pub fn record_at(mut self, outcome: Outcome, now: Instant) {
        self.open = false;
        self.breaker.record(outcome, now);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.open {
            self.breaker.abandon();
        }
    }
}

/// A shared circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
    state: watch::Sender<State>,
}

struct Inner {
    state: State,
    /// Failures in a row.
    in_a_row: u32,
    /// `(second since start, outcomes, failures)` over the window.
    buckets: Vec<(u64, u32, u32)>,
    /// Requests sent and not yet answered.
    in_flight: u32,
    /// The last answer, or the first request sent while none was in flight.
    last_progress: Instant,
    /// A probe is under way (half-open).
    probing: bool,
    started: Instant,
    /// Times it opened.
    opened: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let now = Instant::now();
        Self {
            config,
            inner: Arc::new(Mutex::new(Inner {
                state: State::Closed,
                in_a_row: 0,
                buckets: Vec::new(),
                in_flight: 0,
                last_progress: now,
                probing: false,
                started: now,
                opened: 0,
            })),
            state: watch::Sender::new(State::Closed),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where it stands now (noticing a stall or the end of the open time).
    pub fn state(&self) -> State {
        let mut inner = self.inner();
        self.refresh(&mut inner, Instant::now());
        inner.state
    }

    /// How many times it has opened.
    pub fn times_opened(&self) -> u64 {
        self.inner().opened
    }

    /// Whether a request may go to the origin now.
    pub fn pass(&self) -> Pass {
        self.pass_at(Instant::now())
    }

    /// Whether a request may go to the origin at `now` (the caller's reading of
    /// the clock, which it uses again).
    pub fn pass_at(&self, now: Instant) -> Pass {
        let mut inner = self.inner();
        self.refresh(&mut inner, now);
        let go = match inner.state {
            _ if !self.config.enabled => true,
            State::Closed => true,
            State::Open { .. } => false,
            State::HalfOpen if inner.probing => false,
            State::HalfOpen => {
                inner.probing = true;
                true
            }
        };
        if !go {
            return Pass::Wait;
        }
        if inner.in_flight == 0 {
            inner.last_progress = now;
        }
        inner.in_flight += 1;
        Pass::Go(Ticket {
            breaker: self.clone(),
            open: true,
        })
    }

    /// A request let go by [`Breaker::pass`] ended without telling anything about
    /// the origin (the client went away).
    fn abandon(&self) {
        let mut inner = self.inner();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.probing = false;
    }

    /// Records how a request let go by [`Breaker::pass`] ended, at `now`.
    fn record(&self, outcome: Outcome, now: Instant) {
        let mut inner = self.inner();
        inner.in_flight = inner.in_flight.saturating_sub(1);
        inner.last_progress = now;
        let sec = now.duration_since(inner.started).as_secs();
        let window = self.config.window.as_secs().max(1);
        inner.buckets.retain(|(s, _, _)| s + window > sec);
        match inner.buckets.last_mut() {
            Some((s, _, _)) if *s == sec => {}
            _ => inner.buckets.push((sec, 0, 0)),
        }
        let failed = outcome != Outcome::Success;
        if let Some((_, n, f)) = inner.buckets.last_mut() {
            *n += 1;
            *f += u32::from(failed);
        }
        let was_probe = std::mem::take(&mut inner.probing);
        if !failed {
            inner.in_a_row = 0;
            if was_probe || inner.state == State::HalfOpen {
                inner.buckets.clear();
                self.set(&mut inner, State::Closed);
            }
            return;
        }
        inner.in_a_row += 1;
        let (n, f) = inner
            .buckets
            .iter()
            .fold((0, 0), |(n, f), (_, bn, bf)| (n + bn, f + bf));
        let share_exceeded = n >= self.config.min_requests
            && f64::from(f) >= self.config.failure_share * f64::from(n);
        let trips = inner.in_a_row >= self.config.consecutive_failures || share_exceeded;
        let open_for = if outcome == Outcome::Refused {
            self.config.open_for.min(REFUSED_PROBE_AFTER)
        } else {
            self.config.open_for
        };
        match inner.state {
            // Still failing: the open time counts from the last failure.
            State::Open { .. } => self.open(&mut inner, now + open_for),
            State::HalfOpen => self.open(&mut inner, now + open_for),
            State::Closed if trips => self.open(&mut inner, now + open_for),
            State::Closed => {}
        }
    }

    /// Resolves when the state changes (or at once if it changed since the last
    /// call on this receiver).
    pub fn subscribe(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    fn open(&self, inner: &mut Inner, until: Instant) {
        if inner.state == State::Closed {
            inner.opened += 1;
            tracing::warn!("the origin is failing: holding the line and its requests");
        }
        self.set(inner, State::Open { until });
    }

    fn refresh(&self, inner: &mut Inner, now: Instant) {
        match inner.state {
            State::Open { until } if now >= until => {
                inner.probing = false;
                self.set(inner, State::HalfOpen);
            }
            State::Closed
                if inner.in_flight > 0
                    && now.duration_since(inner.last_progress) >= self.config.stall_after =>
            {
                tracing::warn!(
                    in_flight = inner.in_flight,
                    "the origin has answered nothing for a while"
                );
                self.open(inner, now + self.config.open_for);
            }
            _ => {}
        }
    }

    fn set(&self, inner: &mut Inner, state: State) {
        if inner.state == state {
            return;
        }
        if state == State::Closed {
            tracing::info!("the origin answers again");
        }
        inner.state = state;
        self.state.send_replace(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lets a request go and records `outcome`; false if it had to wait.
    fn go(b: &Breaker, outcome: Outcome) -> bool {
        match b.pass() {
            Pass::Go(ticket) => {
                ticket.record(outcome);
                true
            }
            Pass::Wait => false,
        }
    }

    fn waits(b: &Breaker) -> bool {
        matches!(b.pass(), Pass::Wait)
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failures_in_a_row_probes_and_closes() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..2 {
            assert!(go(&b, Outcome::Failure));
        }
        assert_eq!(b.state(), State::Closed, "two failures are not enough");
        assert!(go(&b, Outcome::Failure));
        assert!(matches!(b.state(), State::Open { .. }));
        assert!(waits(&b), "requests wait while it is open");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(b.state(), State::HalfOpen);
        let Pass::Go(probe) = b.pass() else {
            panic!("one probe")
        };
        assert!(waits(&b), "only one at a time");
        probe.record(Outcome::Failure);
        assert!(matches!(b.state(), State::Open { .. }), "the probe failed");
        tokio::time::advance(Duration::from_secs(2)).await;
        // A probe whose client went away frees its place for the next.
        let Pass::Go(gone) = b.pass() else { panic!() };
        drop(gone);
        assert!(go(&b, Outcome::Success));
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.times_opened(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_a_share_of_failures_and_on_a_stall() {
        let b = Breaker::new(BreakerConfig::default());
        for i in 0..10 {
            let outcome = if i % 2 == 0 {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            assert!(go(&b, outcome));
        }
        assert!(
            matches!(b.state(), State::Open { .. }),
            "half of 10 failed, never two in a row"
        );

        let b = Breaker::new(BreakerConfig::default());
        let Pass::Go(_hanging) = b.pass() else {
            panic!()
        };
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.state(), State::Closed);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(b.state(), State::Open { .. }), "no answer for 5 s");

        let off = Breaker::new(BreakerConfig {
            enabled: false,
            ..Default::default()
        });
        for _ in 0..5 {
            assert!(go(&off, Outcome::Failure));
        }
        assert!(
            go(&off, Outcome::Success),
            "a disabled breaker lets everything through"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusing_origin_is_probed_again_soon() {
        let b = Breaker::new(BreakerConfig::default());
        for _ in 0..3 {
            assert!(go(&b, Outcome::Refused));
        }
        assert!(matches!(b.state(), State::Open { .. }));
        tokio::time::advance(REFUSED_PROBE_AFTER).await;
        assert_eq!(
            b.state(),
            State::HalfOpen,
            "a refusal costs the origin nothing"
        );
        assert!(go(&b, Outcome::Failure), "the probe reached it and failed");
        tokio::time::advance(REFUSED_PROBE_AFTER).await;
        assert!(
            matches!(b.state(), State::Open { .. }),
            "an origin that answers badly gets the whole open time"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(go(&b, Outcome::Success));
        assert_eq!(b.state(), State::Closed);
    }
}
