//! The admission decision: who goes through to the origin and who waits.
//!
//! [`Admission::decide`] turns what a visitor presents (no token, a refused token,
//! a place in line, an admission) into a [`Decision`], asking the [`Store`] to
//! apply the line's rules atomically. [`Admission::run_pump`] advances the line in
//! the background. Time comes from an injected [`Clock`].

pub mod gcra;
pub mod line;
pub mod lottery;
pub mod outage;
pub mod outflow;
pub mod rank;

use crate::queue_page::notice::Notice;
use std::sync::Arc;
use std::time::Duration;

use line::{Arrival, Poll, Snapshot, Wait};

use crate::clock::{Clock, Millis};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::token::{Claims, Kind, TokenError, Tokens};

/// How often the background pump advances the line (a store may ask for less often).
pub const PUMP_EVERY: Duration = Duration::from_millis(20);
/// Gauges are refreshed every this many pump rounds.
const SNAPSHOT_EVERY_ROUNDS: u64 = 10;
/// At most this many cookies of our name are verified per request.
const MAX_TOKENS_READ: usize = 4;
/// Refused tokens are summed up in one warning at most this often.
const REFUSALS_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// What a visitor presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Presented {
    /// No token at all.
    Nothing,
    /// A token that failed verification.
    Refused(TokenError),
    /// A verified token.
    Valid(Claims),
}

impl Presented {
    /// The claims of a valid token of line `line`; a token of another line counts
    /// as no token at all.
    fn claims_for(&self, line: u64) -> Option<&Claims> {
        match self {
            Self::Valid(c) if c.l == line && c.k != Kind::Challenge => Some(c),
            Self::Valid(c) => {
                tracing::debug!(token_line = c.l, line, "token from another line");
                None
            }
            _ => None,
        }
    }
}

/// Where the visitor stands after the decision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Standing {
    /// Let them through: an alive session.
    Admitted {
        /// The session number.
        sid: u64,
    },
    /// Keep them waiting.
    Waiting(Wait),
    /// The store cannot be reached: the line is held (shown as paused).
    Held,
}

/// The decision, with the token to set (if it changed).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Admitted or waiting.
    pub standing: Standing,
    /// A new token for the visitor's cookie, when they need one.
    pub set_token: Option<(Kind, String)>,
    /// Where a waiting visitor stood when they arrived, when known (their token says).
    pub first_position: Option<u64>,
    /// They came with an admission whose session lapsed lately: they are back in
    /// line, first (see [`line::Line::rejoin`]).
    pub lapsed: bool,
    /// Their place is one a lottery drew (its number is the draw's).
    pub drawn: bool,
}

/// A newcomer over their address's allowance of new places (see [`Admission::keep`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Kept {
    /// A place kept for them in arrival order, not theirs until earned.
    Place {
        /// The place.
        seq: u64,
        /// The token that holds it (a kept place's).
        token: String,
    },
    /// Admitted at once (under passthrough, as any newcomer).
    Admitted(Decision),
}

/// What to do while the store cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Hold the line: admitted visitors go on, waiting ones keep their places,
    /// newcomers get provisional places; nobody new is let in.
    Hold,
    /// Keep letting people in at this instance's share of the outflow (per minute),
    /// holders of places from before the outage first, in order, then newcomers
    /// (see [`outage`]); as in hold otherwise. Sessions opened this way are not
    /// counted against `max_active_users` and last as long as their token.
    Open {
        /// Admissions per minute this instance may make on its own.
        per_minute: u32,
        /// How long it first only notes who asks (every waiting holder polls within
        /// it), so that places from before go first, in order.
        gather_ms: u64,
    },
}

/// Session numbers of admissions made without the store (open mode) carry this bit.
pub const LOCAL_SESSION: u64 = 1 << 52;

/// The admission controller.
#[derive(Clone)]
pub struct Admission {
    store: Arc<dyn Store>,
    tokens: Tokens,
    clock: Clock,
    metrics: Metrics,
    on_failure: OnFailure,
    local: Arc<std::sync::Mutex<outage::OutageLine>>,
    lottery: Arc<std::sync::RwLock<LotteryState>>,
    /// The last snapshot the pump took, and when (this instance's clock).
    last_snapshot: Arc<std::sync::Mutex<Option<(Millis, Snapshot)>>>,
    /// The page text of the room's event under way (see [`crate::event`]).
    event_message: Arc<std::sync::RwLock<Option<Arc<str>>>>,
    /// The operator's notice, as last read from the store.
    notice: Arc<std::sync::RwLock<Option<Arc<Notice>>>>,
}

/// What this instance knows of lottery openings (refreshed with the gauges, see
/// [`Admission::note_lottery`]).
#[derive(Debug, Default)]
struct LotteryState {
    /// The room's settings and pre-queue as last seen; `None` until the first
    /// snapshot (then nobody's place is mapped: a queued visitor waits a moment).
    seen: Option<(line::Settings, Option<(u64, u64)>)>,
    /// Every draw seen, newest last: the store keeps the last one, this instance
    /// every one it saw (a few).
    draws: Vec<(Millis, Arc<lottery::Draw>)>,
}

/// Draws kept in memory at most.
const DRAWS_KEPT: usize = 8;

/// A failed decision: the store's error, the token to give the visitor, and where
/// they stand in this instance's own line meanwhile.
type Failed = (StoreError, Option<(Kind, String)>, outage::Key);

impl Admission {
    /// A controller over `store`, issuing tokens with `tokens`.
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, clock: Clock, metrics: Metrics) -> Self {
        Self {
            store,
            tokens,
            clock,
            metrics,
            on_failure: OnFailure::Hold,
            local: Arc::default(),
            lottery: Arc::default(),
            last_snapshot: Arc::default(),
            event_message: Arc::default(),
            notice: Arc::default(),
        }
    }

    /// The operator's notice, if one is up.
    pub fn notice(&self) -> Option<Arc<Notice>> {
        self.notice
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps the operator's notice as read from the store (see [`crate::event::run`]).
    pub fn set_notice(&self, notice: Option<Notice>) {
        *self.notice.write().unwrap_or_else(|p| p.into_inner()) = notice.map(Arc::new);
    }

    /// The page text of the room's event under way, if it has one.
    pub fn event_message(&self) -> Option<Arc<str>> {
        self.event_message
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Keeps the page text of the room's event under way (see [`crate::event::run`]).
    pub fn set_event_message(&self, message: Option<String>) {
        *self
            .event_message
            .write()
            .unwrap_or_else(|p| p.into_inner()) = message.map(Arc::from);
    }

    /// The last snapshot the pump took (every few hundred milliseconds) and when,
    /// so that readers such as the console's history cost the store nothing more.
    pub fn last_snapshot(&self) -> Option<(Millis, Snapshot)> {
        *self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seed of the lottery opening at `opens_at` (see [`lottery::seed`]).
    fn lottery_seed(&self, opens_at: Millis) -> [u8; 32] {
        let secret = self.tokens.keys().signing().derive(b"lottery");
        lottery::seed(&secret, self.store.line_id(), opens_at)
    }

    /// Follows the room's settings, pre-queue and last draw in `snap`.
    pub fn note_lottery(&self, snap: &Snapshot) {
        let known =
            |opens: Millis, lottery: &LotteryState| lottery.draws.iter().any(|(o, _)| *o == opens);
        let new_draw = snap.last_draw.filter(|(opens, _, _)| {
            !known(
                *opens,
                &self.lottery.read().unwrap_or_else(|p| p.into_inner()),
            )
        });
        let draw = new_draw.map(|(opens, first, last)| {
            let d = lottery::Draw::new(self.lottery_seed(opens), first, last);
            tracing::info!(first, last, seed = %lottery::hex(&d.seed), "the pre-queue is drawn");
            (opens, Arc::new(d))
        });
        let mut state = self.lottery.write().unwrap_or_else(|p| p.into_inner());
        state.seen = Some((snap.settings, snap.prequeue));
        if let Some((opens, d)) = draw {
            if !known(opens, &state) {
                state.draws.push((opens, d));
                if state.draws.len() > DRAWS_KEPT {
                    state.draws.remove(0);
                }
            }
        }
    }

    /// The place the holder of place `seq` holds now: its drawn place after a
    /// lottery; `None` while this instance cannot tell yet (before it first saw
    /// the room, or from a lottery opening until it has seen that opening's draw),
    /// so that no place is ever answered for two holders.
    fn drawn_place(&self, seq: u64) -> Option<u64> {
        let state = self.lottery.read().unwrap_or_else(|p| p.into_inner());
        if let Some((_, d)) = state
            .draws
            .iter()
            .find(|(_, d)| (d.first..=d.last).contains(&seq))
        {
            return Some(d.place_of(seq));
        }
        let (settings, prequeue) = state.seen?;
        match settings.opens_at {
            Some(opens)
                if settings.lottery
                    && self.store.line_time(self.clock.now_ms()) >= opens
                    && !state.draws.iter().any(|(o, _)| *o == opens)
                    && prequeue.is_none_or(|(first, _)| seq >= first) =>
            {
                None
            }
            _ => Some(seq),
        }
    }

    /// Whether place `seq` was in a lottery's draw (its holder now holds another).
    fn drawn_at_opening(&self, seq: u64) -> bool {
        let state = self.lottery.read().unwrap_or_else(|p| p.into_inner());
        state
            .draws
            .iter()
            .any(|(_, d)| (d.first..=d.last).contains(&seq))
    }

    /// Whether a lottery's pre-queue is taking places now (its order is drawn at
    /// the opening).
    pub fn in_lottery_prequeue(&self) -> bool {
        self.ticket_opening(None).is_some()
    }

    /// The lottery opening whose tickets a place is (see [`crate::limits::Tickets`]):
    /// for place `seq`, the opening that drew it or whose pre-queue holds it; for
    /// a newcomer (`None`), the opening whose pre-queue is taking places now.
    pub fn ticket_opening(&self, seq: Option<u64>) -> Option<Millis> {
        let state = self.lottery.read().unwrap_or_else(|p| p.into_inner());
        if let Some(seq) = seq {
            if let Some((opens, _)) = state
                .draws
                .iter()
                .find(|(_, d)| (d.first..=d.last).contains(&seq))
            {
                return Some(*opens);
            }
        }
        let (settings, prequeue) = state.seen?;
        let opens = settings.opens_at.filter(|_| settings.lottery)?;
        let before = self.store.line_time(self.clock.now_ms()) < opens;
        let in_prequeue = seq
            .is_some_and(|seq| prequeue.is_some_and(|(first, last)| (first..=last).contains(&seq)));
        (before || in_prequeue).then_some(opens)
    }

    /// What anybody may know of the lottery (`GET /_waitroom/lottery`): before the
    /// opening its commitment, after the draw the seed and the pre-queue's places too.
    pub fn lottery_public(&self) -> serde_json::Value {
        use serde_json::json;
        let how = "order the places first_place..=last_place by SHA-256(seed bytes followed by the place as 8 bytes, big endian), ascending: the first is called first";
        let state = self.lottery.read().unwrap_or_else(|p| p.into_inner());
        let Some((settings, _)) = state.seen else {
            return json!({ "lottery": false });
        };
        let opens = match settings.opens_at {
            Some(opens) if settings.lottery => opens,
            _ => return json!({ "lottery": false }),
        };
        match state.draws.iter().find(|(o, _)| *o == opens) {
            Some((_, d)) => json!({
                "lottery": true,
                "opens_at": crate::clock::format_rfc3339(opens),
                "commitment": lottery::hex(&lottery::commitment(&d.seed)),
                "seed": lottery::hex(&d.seed),
                "first_place": d.first,
                "last_place": d.last,
                "how": how,
            }),
            None => json!({
                "lottery": true,
                "opens_at": crate::clock::format_rfc3339(opens),
                "commitment": lottery::hex(&lottery::commitment(&self.lottery_seed(opens))),
                "how": how,
            }),
        }
    }

    /// Sets what happens while the store cannot be reached (hold by default).
    pub fn on_failure(mut self, policy: OnFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// Open mode: whether this instance lets the visitor at `key` in on its own now.
    fn admit_locally(&self, key: outage::Key) -> Option<Decision> {
        let OnFailure::Open {
            per_minute,
            gather_ms,
        } = self.on_failure
        else {
            return None;
        };
        let rate = gcra::Rate::with_default_burst(per_minute);
        let now = self.clock.now_ms();
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if !local.ask(key, rate, now, gather_ms) {
            return None;
        }
        drop(local);
        self.metrics.admitted("open");
        Some(self.admitted(LOCAL_SESSION | (rand::random::<u64>() >> 12)))
    }

    /// The store (for the admin API).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The token service.
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// The clock decisions use.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Verifies the values of the visitor's cookie into what they presented: with
    /// several cookies of our name (a stale one beside a fresh one, or garbage set
    /// by another site's script), the best valid token wins — an admission, then
    /// the earliest place, then a provisional place. Refusals are counted and
    /// logged at debug (the pump sums them up in a warning, see [`Self::run_pump`]).
    pub fn present(&self, tokens: &[&str]) -> Presented {
        let line = self.store.line_id();
        let mut best: Option<(u8, std::cmp::Reverse<u64>, Claims)> = None;
        let mut refused = None;
        // A request may carry a handful of cookies of our name, not a flood.
        for token in tokens.iter().take(MAX_TOKENS_READ) {
            match self.tokens.verify(token) {
                Ok(claims) => {
                    let rank = match (claims.l == line, claims.k) {
                        (false, _) | (_, Kind::Challenge) => 0,
                        (true, Kind::Provisional | Kind::Kept) => 1,
                        (true, Kind::Queue) => 2,
                        (true, Kind::Admission) => 3,
                    };
                    let key = (rank, std::cmp::Reverse(claims.n));
                    if best.as_ref().is_none_or(|(r, n, _)| key > (*r, *n)) {
                        best = Some((key.0, key.1, claims));
                    }
                }
                Err(e) => {
                    self.metrics.token_refused(e.label());
                    tracing::debug!(reason = e.label(), "refused token");
                    refused.get_or_insert(e);
                }
            }
        }
        match (best, refused) {
            (Some((_, _, claims)), _) => Presented::Valid(claims),
            (None, Some(e)) => Presented::Refused(e),
            (None, None) => Presented::Nothing,
        }
    }

    /// Ends session `sid` at the origin's `command` (`release` or `revoke`): its slot
    /// goes to the next in line at once. A session admitted without the store
    /// (open mode) has no slot to free. When the store cannot be reached the
    /// session lapses as usual; that is counted and logged.
    pub async fn end_session(&self, sid: u64, command: &'static str) {
        if sid & LOCAL_SESSION != 0 {
            return;
        }
        let now = self.clock.now_ms();
        match self.store.end_session(sid, now).await {
            Ok(alive) => {
                self.metrics.session_ended(command);
                tracing::debug!(
                    sid,
                    command,
                    was_alive = alive,
                    "the origin ended a session"
                );
            }
            Err(e) => {
                self.metrics.store_error("end");
                tracing::warn!(error = %e, sid, command, "store failed; the session lapses as usual");
            }
        }
    }

    /// Decides where the visitor stands. Never fails: when the store cannot be
    /// reached the line is held — an admitted visitor goes on with their token, a
    /// waiting one keeps their place, a newcomer gets a provisional place that is
    /// numbered when the store answers again — and the failure is counted and logged.
    pub async fn decide(&self, presented: &Presented) -> Decision {
        match self.try_decide(presented).await {
            Ok(d) => d,
            Err((e, set_token, key)) => {
                self.metrics.store_error("decide");
                tracing::warn!(error = %e, "store failed; the line is held");
                self.admit_locally(key).unwrap_or(Decision {
                    standing: Standing::Held,
                    set_token,
                    first_position: None,
                    lapsed: false,
                    drawn: false,
                })
            }
        }
    }

    async fn try_decide(&self, presented: &Presented) -> Result<Decision, Failed> {
        let now = self.clock.now_ms();
        let line = self.store.line_id();
        if let Some(claims) = presented.claims_for(line) {
            match claims.k {
                Kind::Admission if claims.n & LOCAL_SESSION != 0 => {
                    // Let in without the store (open mode): good for the token's life.
                    return Ok(Decision {
                        standing: Standing::Admitted { sid: claims.n },
                        set_token: None,
                        first_position: None,
                        lapsed: false,
                        drawn: false,
                    });
                }
                Kind::Admission => {
                    let alive = match self.store.touch_session(claims.n, now).await {
                        Ok(alive) => alive,
                        Err(e) => {
                            // Hold: an admitted visitor keeps going on their signed
                            // token while the store is away; nobody is thrown out.
                            self.metrics.store_error("touch");
                            tracing::warn!(error = %e, "store failed; admitting on the token");
                            true
                        }
                    };
                    if alive {
                        return Ok(Decision {
                            standing: Standing::Admitted { sid: claims.n },
                            set_token: self.refresh(claims, now),
                            first_position: None,
                            lapsed: false,
                            drawn: false,
                        });
                    }
                    // Lapsed: first in line for a while (the page says why).
                    let key = outage::Key::Newcomer(claims.iat, claims.n);
                    match self
                        .store
                        .rejoin(claims.n, now)
                        .await
                        .map_err(|e| (e, None, key))?
                    {
                        Poll::Admitted { sid } => {
                            self.metrics.admitted("claimed");
                            return Ok(self.admitted(sid));
                        }
                        Poll::Waiting(wait) => {
                            // A place token for the same number: their place in
                            // the returned lane, as any waiting visitor holds one.
                            let token = self.tokens.issue_place(line, claims.n, wait.position);
                            return Ok(Decision {
                                standing: Standing::Waiting(wait),
                                set_token: Some((Kind::Queue, token)),
                                first_position: Some(wait.position),
                                lapsed: true,
                                drawn: false,
                            });
                        }
                        // Lapsed longer ago, or ended by the origin: a new place
                        // (below), without a word about a lapse that may not be one.
                        Poll::Ended | Poll::Unknown => {}
                    }
                }
                Kind::Queue => match self
                    .store
                    .poll(
                        match self.drawn_place(claims.n) {
                            Some(place) => place,
                            // Being drawn: back in a moment, place kept.
                            None => {
                                return Ok(Decision {
                                    standing: Standing::Held,
                                    set_token: None,
                                    first_position: None,
                                    lapsed: false,
                                    drawn: false,
                                })
                            }
                        },
                        now,
                    )
                    .await
                    .map_err(|e| (e, None, outage::Key::Place(claims.n)))?
                {
                    Poll::Admitted { sid } => {
                        self.metrics.admitted("claimed");
                        let waited = self.clock.now_secs().saturating_sub(claims.iat);
                        self.metrics.waited(waited as f64);
                        return Ok(self.admitted(sid));
                    }
                    Poll::Waiting(wait) => {
                        return Ok(Decision {
                            standing: Standing::Waiting(wait),
                            set_token: None,
                            first_position: claims.p,
                            lapsed: false,
                            drawn: self.drawn_at_opening(claims.n),
                        })
                    }
                    Poll::Ended | Poll::Unknown => {}
                },
                Kind::Provisional => {
                    // Numbered now that the store answers; until then it stays provisional.
                    let key = outage::Key::Newcomer(claims.iat, claims.n);
                    return self.arrive(now, line).await.map_err(|e| (e, None, key));
                }
                // Never a place (claims_for leaves them out).
                Kind::Challenge => {}
                // Not theirs until earned (the public side sees to that first):
                // no new place for it either.
                Kind::Kept => {
                    return Ok(Decision {
                        standing: Standing::Held,
                        set_token: None,
                        first_position: claims.p,
                        lapsed: false,
                        drawn: false,
                    })
                }
            }
        }
        self.arrive(now, line).await.map_err(|e| {
            // A nonce, so that newcomers of the same second stay apart meanwhile.
            let nonce = rand::random::<u64>() >> 12;
            let provisional = self.tokens.issue(Kind::Provisional, line, nonce);
            let key = outage::Key::Newcomer(self.clock.now_secs(), nonce);
            (e, Some((Kind::Provisional, provisional)), key)
        })
    }

    /// Keeps a place in arrival order for a newcomer over their address's
    /// allowance ([`Store::arrive_kept`]): it counts nowhere until earned.
    pub async fn keep(&self) -> Result<Kept, StoreError> {
        let now = self.clock.now_ms();
        let line = self.store.line_id();
        Ok(match self.store.arrive_kept(now).await? {
            Arrival::Admitted { sid } => {
                self.metrics.admitted("direct");
                Kept::Admitted(self.admitted(sid))
            }
            Arrival::Queued { seq, wait } => Kept::Place {
                seq,
                token: self.tokens.issue_kept(line, seq, wait.position),
            },
        })
    }

    /// Kept place `kept`, earned: the claims and token of the place it is now.
    pub fn earned(&self, kept: &Claims) -> (Claims, String) {
        let token = self.tokens.issue_place(kept.l, kept.n, kept.p.unwrap_or(1));
        let claims = Claims {
            k: Kind::Queue,
            ..kept.clone()
        };
        (claims, token)
    }

    async fn arrive(&self, now: crate::clock::Millis, line: u64) -> Result<Decision, StoreError> {
        Ok(match self.store.arrive(now).await? {
            Arrival::Admitted { sid } => {
                self.metrics.admitted("direct");
                self.admitted(sid)
            }
            Arrival::Queued { seq, wait } => {
                self.metrics.queued();
                let token = self.tokens.issue_place(line, seq, wait.position);
                Decision {
                    standing: Standing::Waiting(wait),
                    set_token: Some((Kind::Queue, token)),
                    first_position: Some(wait.position),
                    lapsed: false,
                    drawn: false,
                }
            }
        })
    }

    fn admitted(&self, sid: u64) -> Decision {
        let token = self
            .tokens
            .issue(Kind::Admission, self.store.line_id(), sid);
        Decision {
            standing: Standing::Admitted { sid },
            set_token: Some((Kind::Admission, token)),
            first_position: None,
            lapsed: false,
            drawn: false,
        }
    }

    /// Re-issues an admission token past half its life (at `now`), so long
    /// sessions keep one.
    fn refresh(&self, claims: &Claims, now: Millis) -> Option<(Kind, String)> {
        let half = self.tokens.ttl_secs(Kind::Admission) / 2;
        (now / 1000 >= claims.iat + half).then(|| {
            (
                Kind::Admission,
                self.tokens.issue(Kind::Admission, claims.l, claims.n),
            )
        })
    }

    /// Advances the line every [`Store::pump_every`] until shutdown, keeping gauges current.
    pub async fn run_pump(self, mut shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.store.pump_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut refusals = (tokio::time::Instant::now(), self.metrics.tokens_refused());
        for round in 0u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            if refusals.0.elapsed() >= REFUSALS_SUMMARY_EVERY {
                let total = self.metrics.tokens_refused();
                if total > refusals.1 {
                    tracing::warn!(
                        refused = total - refusals.1,
                        "tokens refused in the last minute (each one was treated as a \
                         newcomer); waitroom_tokens_refused_total has the reasons"
                    );
                }
                refusals = (tokio::time::Instant::now(), total);
            }
            let now = self.clock.now_ms();
            let result = async {
                let report = self.store.pump(now).await?;
                self.metrics.pumped(report);
                if round % SNAPSHOT_EVERY_ROUNDS == 0 {
                    let snap = self.store.snapshot(now).await?;
                    self.metrics.observe(&snap);
                    self.note_lottery(&snap);
                    *self.last_snapshot.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((now, snap));
                }
                Ok::<_, StoreError>(())
            }
            .await;
            self.metrics.store_up(result.is_ok());
            match result {
                Ok(()) if failing => {
                    tracing::info!("store answers again");
                    failing = false;
                    self.local.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                Ok(()) => {}
                Err(e) => {
                    self.metrics.store_error("pump");
                    if !failing {
                        tracing::warn!(error = %e, "pump failed; will retry");
                        failing = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
