//! The line itself: places, the outflow and capacity limits, sessions and abandonment.
//!
//! [`Line`] is a pure state machine: every operation takes the current time in
//! milliseconds and nothing else, so its semantics are tested without a clock and a
//! store applies each operation atomically (the memory store under one lock).
//!
//! Vocabulary:
//! - a *place* (`seq`) is handed out in arrival order; `head` is the first place not
//!   yet called or passed over; places in `[head, next_seq)` are *waiting*;
//! - a waiting place whose holder stopped polling past its deadline has *departed*:
//!   it no longer counts in anybody's position, and when it reaches the head it is
//!   *passed over* without using an admission;
//! - the pump *calls* the head of the line when both limits allow; a called place
//!   holds a capacity slot until its holder comes back and *claims* it, which opens
//!   a *session* (sliding: every request renews it);
//! - a passed-over holder who comes back within `return_grace` of being passed over
//!   joins the *returned* lane: their turn has passed, so they do not go to the
//!   back. The lane takes at most `returned_share` of the calls while the main line
//!   waits, so a hoard of old places presented at once cannot stop the line; a
//!   holder who comes back later takes a new place (a hoard is worth nothing).

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::gcra::{Gcra, Rate};
use super::outflow::Outflow;
use super::rank::Rank;
use crate::clock::Millis;

/// Settings an operator can change at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// The outflow: admissions per minute.
    pub new_users_per_minute: u32,
    /// Admitted sessions alive at once (including called places not yet claimed).
    pub max_active_users: u32,
    /// While paused nobody is admitted; everybody queues.
    pub paused: bool,
    /// When it was paused (Unix ms), while paused; unknown (`None`) for a pause
    /// from before this was kept, or after a shared store lost its data.
    #[serde(default, with = "crate::clock::rfc3339")]
    pub paused_at: Option<Millis>,
    /// While closed nobody is admitted either; the page says the room is closed.
    #[serde(default)]
    pub closed: bool,
    /// A scheduled opening (Unix ms): before it nobody is admitted, everybody who
    /// arrives takes a place, and the page counts down.
    #[serde(default, with = "crate::clock::rfc3339")]
    pub opens_at: Option<Millis>,
    /// Not the operator's: until this time (Unix ms) nobody is called because the
    /// origin is failing (an instance's circuit breaker holds the line, see
    /// [`crate::forward::breaker`]); after it the outflow ramps up again over
    /// [`RAMP_MS`].
    #[serde(default, with = "crate::clock::rfc3339")]
    pub held_until: Option<Millis>,
    /// Everybody takes a place, even while there is room (for an opening: the
    /// first arrivals do not go straight in ahead of the announcement's crowd).
    #[serde(default)]
    pub queue_all: bool,
    /// Everybody goes straight through, the line is let in at once, neither limit
    /// applies (the night is over); still measured. Paused, closed, a scheduled
    /// opening and a hold for the origin still stop it.
    #[serde(default)]
    pub passthrough: bool,
    /// The scheduled opening is a lottery: the places taken before it (the
    /// pre-queue) are called in an order drawn at the opening, not in arrival
    /// order (see [`crate::admission::lottery`]); later arrivals queue behind them.
    #[serde(default)]
    pub lottery: bool,
}

/// After the origin recovers, the outflow starts at a tenth of the configured rate
/// and reaches all of it over this long.
pub const RAMP_MS: Millis = 10_000;

/// Whether the line moves, as the settings say at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Admissions run.
    Open,
    /// Paused for a moment by the operator (since when, if known).
    Paused {
        /// When it was paused (Unix ms).
        since: Option<Millis>,
    },
    /// Closed by the operator.
    Closed,
    /// Opens at this time (Unix ms).
    Scheduled {
        /// When the first admissions happen.
        opens_at: Millis,
    },
    /// Held while the origin is failing, at least until this time (Unix ms).
    Held {
        /// When calls may resume if the origin has recovered.
        until: Millis,
    },
}

/// A partial update of [`Settings`]; absent fields stay as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// New outflow, if given.
    pub new_users_per_minute: Option<u32>,
    /// New capacity, if given.
    pub max_active_users: Option<u32>,
    /// Pause or resume, if given.
    pub paused: Option<bool>,
    /// Close or reopen, if given.
    pub closed: Option<bool>,
    /// Schedule an opening (RFC 3339 text), or cancel it (`null`), if given.
    #[serde(
        default,
        deserialize_with = "crate::clock::rfc3339::deserialize_change"
    )]
    pub opens_at: Option<Option<Millis>>,
    /// Queue everybody, or stop doing so, if given.
    pub queue_all: Option<bool>,
    /// Let everybody through, or stop doing so, if given.
    pub passthrough: Option<bool>,
    /// Make the scheduled opening a lottery, or not, if given.
    pub lottery: Option<bool>,
}

impl Settings {
    /// An open room letting `new_users_per_minute` in, `max_active_users` at once,
    /// nothing else set.
    pub const fn open(new_users_per_minute: u32, max_active_users: u32) -> Self {
        Self {
            new_users_per_minute,
            max_active_users,
            paused: false,
            paused_at: None,
            closed: false,
            opens_at: None,
            held_until: None,
            queue_all: false,
            passthrough: false,
            lottery: false,
        }
    }

    /// Applies a patch.
    pub fn apply(&mut self, patch: SettingsPatch) {
        if let Some(v) = patch.new_users_per_minute {
            self.new_users_per_minute = v;
        }
        if let Some(v) = patch.max_active_users {
            self.max_active_users = v;
        }
        if let Some(v) = patch.paused {
            self.paused = v;
        }
        if let Some(v) = patch.closed {
            self.closed = v;
        }
        if let Some(v) = patch.opens_at {
            self.opens_at = v;
        }
        if let Some(v) = patch.queue_all {
            self.queue_all = v;
        }
        if let Some(v) = patch.passthrough {
            self.passthrough = v;
        }
        if let Some(v) = patch.lottery {
            self.lottery = v;
        }
    }

    /// The gate at `now`: closed before paused before a scheduled opening before a
    /// hold for the origin.
    pub fn gate(&self, now: Millis) -> Gate {
        match (self.opens_at, self.held_until) {
            _ if self.closed => Gate::Closed,
            _ if self.paused => Gate::Paused {
                since: self.paused_at,
            },
            (Some(opens_at), _) if now < opens_at => Gate::Scheduled { opens_at },
            (_, Some(until)) if now < until => Gate::Held { until },
            _ => Gate::Open,
        }
    }

    /// The outflow in force at `now`: the configured one, or part of it while it
    /// ramps up after a hold for the origin (a tenth at first).
    pub fn per_minute_at(&self, now: Millis) -> u32 {
        let rate = self.new_users_per_minute;
        match self.held_until {
            Some(until) if now >= until && now - until < RAMP_MS => {
                let share = 0.1 + 0.9 * (now - until) as f64 / RAMP_MS as f64;
                ((f64::from(rate) * share) as u32).max(1)
            }
            _ => rate,
        }
    }
}

/// Timing parameters fixed at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// A session lapses after this long without a request.
    pub session_ms: Millis,
    /// Admissions allowed back to back; `None` means a tenth of a second's worth of
    /// the outflow, at least 2 (so the 20 ms pump never loses throughput).
    pub burst: Option<u32>,
    /// Shortest poll interval handed out (people at the front).
    pub poll_min_ms: Millis,
    /// Longest poll interval handed out (people far back).
    pub poll_max_ms: Millis,
    /// A waiting holder has departed after missing this many poll intervals…
    pub abandon_polls: u32,
    /// …but never sooner than this after their last poll.
    pub abandon_min_ms: Millis,
    /// A passed-over holder may come back to the returned lane this long after
    /// being passed over; later they take a new place.
    #[serde(default = "default_return_grace")]
    pub return_grace_ms: Millis,
    /// The share of calls (per mille, 1..=1000) the returned lane may take while
    /// the main line waits.
    #[serde(default = "default_returned_share")]
    pub returned_share_permille: u32,
}

fn default_return_grace() -> Millis {
    Timing::default().return_grace_ms
}

fn default_returned_share() -> u32 {
    Timing::default().returned_share_permille
}

/// How many of the returned lane are called before the `k`-th place of the main
/// line, while both wait: the returned lane's share of the calls, first call
/// theirs (see [`Line::next_candidate`]).
fn returned_before_main(k: u64, share_permille: u32) -> u64 {
    let s = u64::from(share_permille.clamp(1, 1000));
    if s >= 1000 {
        return u64::MAX;
    }
    (k * s).div_ceil(1000 - s)
}

/// The position of the main line's place with `rank_before` live places ahead of
/// it, with `returned` in the returned lane.
pub fn main_position(rank_before: u64, returned: u64, share_permille: u32) -> u64 {
    rank_before + 1 + returned.min(returned_before_main(rank_before + 1, share_permille))
}

/// The position of the returned lane's `index`-th place (from 0), with `live`
/// places waiting in the main line.
pub fn returned_position(index: u64, live: u64, share_permille: u32) -> u64 {
    let s = u64::from(share_permille.clamp(1, 1000));
    index + 1 + live.min(index * (1000 - s) / s)
}

impl Default for Timing {
    /// The configuration's defaults.
    fn default() -> Self {
        Self {
            session_ms: 600_000,
            burst: None,
            poll_min_ms: 1_000,
            poll_max_ms: 20_000,
            abandon_polls: 3,
            abandon_min_ms: 5_000,
            return_grace_ms: 300_000,
            returned_share_permille: 500,
        }
    }
}

impl Timing {
    /// What a holder at `position` is told at `now`: the ETA at the outflow
    /// measured while a line existed (admissions per second) or, without enough
    /// history, the configured one; once capacity is taken, at no more than the
    /// sessions can turn over; plus the time left before a scheduled opening. The
    /// poll interval is an eighth of it, within the bounds.
    pub fn wait(&self, position: u64, flow: Flow, settings: &Settings, now: Millis) -> Wait {
        let configured = f64::from(settings.new_users_per_minute) / 60.0;
        let per_sec = flow
            .measured_per_sec
            .filter(|r| *r > 0.0)
            .unwrap_or(configured);
        // A session lasts at least `session_ms` (it lapses only after that long
        // without a request), so once capacity is taken the line moves no faster
        // than `max_active_users` per session length: the places still free go at
        // the outflow, the rest at most at that turnover.
        let max_active = u64::from(settings.max_active_users);
        let turnover = max_active as f64 * 1000.0 / self.session_ms.max(1) as f64;
        let fast = position.min(max_active.saturating_sub(flow.active));
        let slow = position - fast;
        let mut eta_ms = if per_sec > 0.0 {
            let secs = fast as f64 / per_sec + slow as f64 / per_sec.min(turnover);
            (secs * 1000.0) as u64
        } else {
            u64::MAX / 4
        };
        let gate = settings.gate(now);
        if let Gate::Scheduled { opens_at } = gate {
            eta_ms = eta_ms.saturating_add(opens_at - now);
        }
        let poll_after_ms = match gate {
            Gate::Paused { .. } | Gate::Closed | Gate::Held { .. } => self.poll_max_ms,
            Gate::Open | Gate::Scheduled { .. } => {
                (eta_ms / 8).clamp(self.poll_min_ms, self.poll_max_ms)
            }
        };
        Wait {
            position,
            eta_ms,
            poll_after_ms,
            gate,
        }
    }

    /// How soon a visitor is asked back while the store cannot be reached (the
    /// line is held): well inside the shortest deadline a waiting place can have
    /// (`abandon_min`), so that an answer from an instance cut off from the store
    /// never costs a place that the line, run by other instances meanwhile, would
    /// have kept — a third of it, so that two such answers in a row, spread by a
    /// quarter, still fit — and never sooner than `poll_min` nor later than
    /// `poll_max` or 5 s.
    pub fn held_poll_ms(&self) -> Millis {
        (self.abandon_min_ms / 3)
            .min(self.poll_max_ms)
            .min(5_000)
            .max(self.poll_min_ms)
    }

    /// When a holder told `wait` at `now` has departed if they do not check in again.
    pub fn deadline(&self, now: Millis, wait: &Wait) -> Millis {
        now + (u64::from(self.abandon_polls) * wait.poll_after_ms).max(self.abandon_min_ms)
    }

    /// The outflow limit for `settings` at `now`: the burst defaults to a tenth of
    /// a second's worth, at least 2 (so the 20 ms pump never loses throughput).
    pub fn rate(&self, settings: &Settings, now: Millis) -> Rate {
        let rate = Rate::with_default_burst(settings.per_minute_at(now));
        match self.burst {
            Some(burst) => Rate {
                burst: burst.max(1),
                ..rate
            },
            None => rate,
        }
    }
}

/// What the line knows of its movement when a holder checks in.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flow {
    /// Admissions per second measured while a line existed, once measured.
    pub measured_per_sec: Option<f64>,
    /// Sessions alive plus places called: what capacity counts.
    pub active: u64,
}

/// What a waiting holder is told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wait {
    /// 1-based position among the people still waiting.
    pub position: u64,
    /// Estimated time until admission, from the measured outflow.
    pub eta_ms: u64,
    /// When to poll again.
    pub poll_after_ms: u64,
    /// Whether the line moves.
    pub gate: Gate,
}

/// The outcome of a newcomer's arrival.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Arrival {
    /// Nobody waits and the limits allow: straight in, with a new session.
    Admitted {
        /// The session (and place) number.
        sid: u64,
    },
    /// A place in line.
    Queued {
        /// The place number, carried in the queue token.
        seq: u64,
        /// Where that place stands.
        wait: Wait,
    },
}

/// The outcome of a holder of a place checking in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Poll {
    /// Their turn has come (or they hold an alive session): let them in.
    Admitted {
        /// The session number.
        sid: u64,
    },
    /// Still waiting.
    Waiting(Wait),
    /// They were admitted and their session has lapsed: they are a newcomer again.
    Ended,
    /// The line does not know this place (for example a store that lost its state).
    Unknown,
}

/// What one pump did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PumpReport {
    /// Places called (admissions granted).
    pub called: u32,
    /// Departed places passed over at the head.
    pub passed_over: u32,
}

/// A view of the line for operators.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// People waiting (departed ones excluded).
    pub queue_length: u64,
    /// Sessions alive plus places called and not yet claimed: what capacity counts.
    pub active_users: u64,
    /// Places called whose holders have not come back yet.
    pub called_pending: u64,
    /// Places in line handed out so far (direct admissions take none).
    pub places_issued: u64,
    /// Admissions per minute measured while a line existed, if measured.
    pub measured_per_minute: Option<f64>,
    /// The first and last place taken before the scheduled opening (the
    /// pre-queue), if any was, until the opening.
    pub prequeue: Option<(u64, u64)>,
    /// The last lottery drawn: its opening (Unix ms), its pre-queue's first and
    /// last place (`first > last`: nobody came). Recorded once, kept.
    pub last_draw: Option<(Millis, u64, u64)>,
    /// The current settings.
    pub settings: Settings,
}

/// Places called in one pump round at most (only passthrough comes near it).
pub const CALLS_PER_ROUND: u32 = 2_000;

/// Claims allowed back to back (see [`Line::claim`]).
pub const CLAIM_BURST: u32 = 2;

const DEPARTED: u64 = 1 << 63;
const SCAN_EVERY_MS: Millis = 100;

/// Pump rounds further apart than this mean that nobody could be heard meanwhile
/// (see [`Line::at`]): rounds come every 20 to 50 ms in service.
pub const QUIET_MS: Millis = 1_000;

/// Membership bits over place numbers: who has claimed an admission.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Bits(Vec<u64>);

impl Bits {
    fn set(&mut self, i: u64) {
        let word = (i / 64) as usize;
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (i % 64);
    }
    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
}

/// The queue state of one waiting room. See the module docs for the vocabulary.
///
/// It serializes (for the memory store's state file) whole but for the rank, which
/// is rebuilt ([`Line::restored`]): with the timings it ran with and its clock, so
/// that replaying the operations journaled after a save gives back exactly the
/// line that was running (see [`crate::store::journal`]).
///
/// Its clock only moves forward: an operation stamped earlier than one already
/// applied is applied at the later time (a late caller is answered from the
/// present, never replays the past).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Line {
    #[serde(default)]
    timing: Timing,
    settings: Settings,
    next_seq: u64,
    head: u64,
    /// Deadline of each waiting place `head + i`, with [`DEPARTED`] set once noticed.
    records: VecDeque<u64>,
    /// Counts waiting places that have not departed, for positions.
    #[serde(skip)]
    rank: Rank,
    live: u64,
    /// Places to check for departure, by the second their deadline falls in.
    deadlines: BTreeMap<u64, Vec<u64>>,
    returned: VecDeque<u64>,
    returned_deadline: HashMap<u64, Millis>,
    /// Called places and the time by which their holder must claim them.
    called: HashMap<u64, Millis>,
    /// Called places whose holder came back too soon after others: when they may
    /// claim (see [`Line::claim`]).
    #[serde(default)]
    claim_slots: HashMap<u64, Millis>,
    /// Spaces claims at the outflow.
    #[serde(default)]
    claims: Gcra,
    /// Alive sessions and when they lapse.
    sessions: HashMap<u64, Millis>,
    /// Sessions that lapsed (not ended by the origin) and when, for `return_grace`:
    /// their holder may come back first (see [`Line::rejoin`]).
    #[serde(default)]
    lapsed: HashMap<u64, Millis>,
    claimed: Bits,
    gcra: Gcra,
    #[serde(default)]
    outflow: Outflow,
    #[serde(default)]
    next_scan: Millis,
    /// The latest time an operation was applied at.
    #[serde(default)]
    last_now: Millis,
    /// Where the head was when (at most one mark a second, back to `return_grace`
    /// ago): whether a passed-over place was passed over recently enough.
    #[serde(default)]
    head_marks: VecDeque<(Millis, u64)>,
    /// Per mille: the returned lane is called while this is not negative (see
    /// [`Line::next_candidate`]).
    #[serde(default)]
    returned_credit: i64,
    /// Places in line handed out (a line saved before this was counted starts at 0).
    #[serde(default)]
    places_issued: u64,
    /// The first and last place taken before the scheduled opening.
    #[serde(default)]
    prequeue: Option<(u64, u64)>,
    /// The last lottery drawn: its opening (Unix ms) and its pre-queue's first and
    /// last place (`first > last`: nobody came).
    #[serde(default)]
    last_draw: Option<(Millis, u64, u64)>,
    /// How long nobody could be heard, in all (see [`Line::heard`]).
    #[serde(default)]
    silence: Millis,
    /// The last pump round, or the end of the last silence (see [`Line::at`]).
    #[serde(default)]
    beat: Millis,
}

impl Line {
    /// An empty line; places are numbered from 1.
    pub fn new(timing: Timing, settings: Settings) -> Self {
        Self {
            timing,
            settings,
            next_seq: 1,
            head: 1,
            records: VecDeque::new(),
            rank: Rank::default(),
            live: 0,
            deadlines: BTreeMap::new(),
            returned: VecDeque::new(),
            returned_deadline: HashMap::new(),
            called: HashMap::new(),
            claim_slots: HashMap::new(),
            claims: Gcra::default(),
            sessions: HashMap::new(),
            lapsed: HashMap::new(),
            places_issued: 0,
            prequeue: None,
            last_draw: None,
            claimed: Bits::default(),
            gcra: Gcra::default(),
            outflow: Outflow::default(),
            next_scan: 0,
            last_now: 0,
            head_marks: VecDeque::new(),
            returned_credit: 0,
            silence: 0,
            beat: 0,
        }
    }

    /// The time an operation stamped `now` is applied at: never before the last one.
    ///
    /// A running line is pumped every few tens of milliseconds; an operation more
    /// than [`QUIET_MS`] after the last pump round (or the last silence) ends a
    /// silence: the process or its store was frozen, down or cut off, and nobody
    /// could be heard. Its length past [`QUIET_MS`] is added to [`Line::silence`],
    /// so that no deadline runs out on evidence the line could not have had, and
    /// the outflow's debt and the claim slots move later by as much.
    fn at(&mut self, now: Millis) -> Millis {
        self.last_now = self.last_now.max(now);
        if self.beat != 0 && self.last_now > self.beat + QUIET_MS {
            let excused = self.last_now - self.beat - QUIET_MS;
            self.silence += excused;
            // What was owed to the outflow and the claim slots given out, from the
            // last round on, move later with it: nobody could claim or be called
            // meanwhile, and they must not all come at once when it ends. A slot
            // already due and unused is given up: its holder claims anew, spaced
            // at the outflow like everyone else.
            let from = self.beat;
            self.gcra.postpone(from, excused);
            self.claims.postpone(from, excused);
            self.claim_slots.retain(|_, at| *at > from);
            for at in self.claim_slots.values_mut() {
                *at += excused;
            }
            self.beat = self.last_now;
        }
        self.record_draw(self.last_now);
        self.last_now
    }

    /// `now` on the clock of presence: wall time less every silence (see
    /// [`Line::at`]). Deadlines, sessions, calls waiting to be claimed and the
    /// returned lane's grace run on it, so that a pause of the process or its
    /// store extends each of them by its length; the outflow, the settings'
    /// times and the estimates stay on wall time.
    fn heard(&self, now: Millis) -> Millis {
        now.saturating_sub(self.silence)
    }

    /// At the first operation from a scheduled opening on, the pre-queue is
    /// settled: for a lottery, its range is recorded as the opening's draw (empty
    /// when nobody came), once; either way a later opening starts a new pre-queue.
    /// Whatever the settings say later, the draw recorded stays.
    fn record_draw(&mut self, now: Millis) {
        let Some(opens) = self.settings.opens_at.filter(|o| now >= *o) else {
            return;
        };
        if self.last_draw.is_some_and(|(o, _, _)| o == opens) {
            return;
        }
        let range = self.prequeue.take();
        if self.settings.lottery {
            let (first, last) = range.unwrap_or((1, 0));
            self.last_draw = Some((opens, first, last));
        }
    }

    /// The timings it runs with.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Places in line handed out so far (direct admissions take none).
    pub fn places_issued(&self) -> u64 {
        self.places_issued
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Changes settings at `now`; they apply from the next operation on. A new
    /// rate applies at once: the admissions already owed to the outflow limit are
    /// counted at the new rate (from 1/min to 600/min, the next call is a tenth of a
    /// second away, not a minute).
    pub fn update(&mut self, patch: SettingsPatch, now: Millis) -> Settings {
        let now = self.at(now);
        let before = self.rate(now);
        // A new opening after the last one has passed starts a new pre-queue.
        let passed = self.settings.opens_at.is_none_or(|opens| opens <= now);
        if passed && matches!(patch.opens_at, Some(Some(at)) if at > now) {
            self.prequeue = None;
        }
        let was_paused = self.settings.paused;
        self.settings.apply(patch);
        self.settings.paused_at = match (was_paused, self.settings.paused) {
            (false, true) => Some(now),
            (true, true) => self.settings.paused_at,
            (_, false) => None,
        };
        let after = self.rate(now);
        self.gcra.rescale(before, after, now);
        // Claims are spaced at the outflow too: what they owe, and the slots
        // already given out, are re-spaced at the new rate as well.
        let claim = |r: Rate| Rate {
            burst: CLAIM_BURST,
            ..r
        };
        self.claims.rescale(claim(before), claim(after), now);
        if let (Some(old), Some(new)) = (before.interval_us(), after.interval_us()) {
            let silence = self.silence;
            for (seq, at) in self.claim_slots.iter_mut().filter(|(_, at)| **at > now) {
                *at = now + (*at - now) * new / old;
                // A slot moved later keeps its place called until then.
                if let Some(claim_by) = self.called.get_mut(seq) {
                    let until = at.saturating_sub(silence) + self.timing.abandon_min_ms;
                    *claim_by = (*claim_by).max(until);
                }
            }
        }
        self.settings
    }

    /// Holds the line for a failing origin until at least `until` (an instance's
    /// circuit breaker is open): nobody is called before then.
    pub fn hold(&mut self, until: Millis, now: Millis) -> Settings {
        self.at(now);
        self.settings.held_until = Some(self.settings.held_until.unwrap_or(0).max(until));
        self.settings
    }

    fn rate(&self, now: Millis) -> Rate {
        self.timing.rate(&self.settings, now)
    }

    /// The outflow with a burst of [`CLAIM_BURST`]: claims come one by one anyway,
    /// so a burst would only let a crowd reach the origin at once.
    fn claim_rate(&self, now: Millis) -> Rate {
        Rate {
            burst: CLAIM_BURST,
            ..self.rate(now)
        }
    }

    fn queue_length(&self) -> u64 {
        self.live + self.returned.len() as u64
    }

    fn active(&self) -> u64 {
        (self.sessions.len() + self.called.len()) as u64
    }

    fn may_admit(&self, now: Millis) -> bool {
        self.settings.gate(now) == Gate::Open
            && (self.settings.passthrough
                || self.active() < u64::from(self.settings.max_active_users)
                    && self.gcra.conforms(self.rate(now), now))
    }

    /// Uses up one admission of the outflow limit (none in passthrough: what it
    /// lets in would otherwise be owed to the limit once it ends).
    fn consume(&mut self, now: Millis) {
        if !self.settings.passthrough {
            self.gcra.consume(self.rate(now), now);
        }
    }

    /// A newcomer arrives: straight in when nobody waits and the limits allow,
    /// otherwise the next place in line.
    pub fn arrive(&mut self, now: Millis) -> Arrival {
        self.arrive_as(now, false)
    }

    /// A newcomer is given the next place, kept for them: it counts nowhere (no
    /// position, never called, passed over for nothing at the head) until its
    /// holder checks in, which makes it theirs again where it stands, or, if it
    /// was passed over meanwhile, puts them in the returned lane (as anybody who
    /// comes back, [`Line::poll`]). For a visitor over their address's allowance,
    /// who must still earn the place (see [`crate::public`]): arrival order is
    /// kept, and places never earned cost the line nothing. Under `passthrough`,
    /// admitted at once as any newcomer.
    pub fn arrive_kept(&mut self, now: Millis) -> Arrival {
        self.arrive_as(now, true)
    }

    fn arrive_as(&mut self, now: Millis, kept: bool) -> Arrival {
        let now = self.at(now);
        self.advance(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        let direct = (!self.settings.queue_all && !kept) || self.settings.passthrough;
        if direct && self.queue_length() == 0 && self.records.is_empty() && self.may_admit(now) {
            self.head = self.next_seq;
            // Not counted in the outflow: nobody was waiting, so no line moved.
            self.consume(now);
            // They reach the origin now, as a claim would.
            if !self.settings.passthrough {
                self.claims.consume(self.claim_rate(now), now);
            }
            self.open_session(seq, now);
            return Arrival::Admitted { sid: seq };
        }
        if !self.rank.covers(seq) {
            self.rebuild_rank();
        }
        self.places_issued += 1;
        if self.settings.opens_at.is_some_and(|opens| now < opens) {
            let first = self.prequeue.map_or(seq, |(a, _)| a);
            self.prequeue = Some((first, seq));
        }
        if kept {
            self.records.push_back(DEPARTED);
            // Where it would stand, were it checked in.
            let share = self.timing.returned_share_permille;
            let position = main_position(self.rank.before(seq), self.returned.len() as u64, share);
            return Arrival::Queued {
                seq,
                wait: self.wait_for(position, now),
            };
        }
        self.records.push_back(0);
        self.rank.add(seq, 1);
        self.live += 1;
        self.outflow.line_present(true, now);
        let wait = self.check_in(seq, now);
        Arrival::Queued { seq, wait }
    }

    /// Rebuilds the position index over the line and then some: it covers the
    /// next power of two past the line's length, so that a line growing one place
    /// at a time rebuilds it once per doubling, and it never takes more than twice
    /// the line's slots (4 bytes each: 4 MB for a million, where a cover of twice
    /// the line, rounded up, took up to four times).
    fn rebuild_rank(&mut self) {
        let capacity = (self.next_seq - self.head) as usize + 1;
        let live = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| **r & DEPARTED == 0)
            .map(|(i, _)| self.head + i as u64);
        let mut rank = Rank::default();
        rank.rebuild(self.head, capacity, live);
        self.rank = rank;
    }

    /// A line read back from a state file, made ready with today's timings.
    pub fn restored(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self.rebuild_rank();
        self
    }

    /// The holder of place `seq` checks in (a status poll, a reload, any request).
    pub fn poll(&mut self, seq: u64, now: Millis) -> Poll {
        let now = self.at(now);
        if seq >= self.next_seq || seq == 0 {
            return Poll::Unknown;
        }
        if self.claimed.get(seq) {
            if self.touch_session(seq, now) {
                return Poll::Admitted { sid: seq };
            }
            if !self.called.contains_key(&seq) && !self.returned_deadline.contains_key(&seq) {
                return Poll::Ended;
            }
            // Back after their session lapsed (see `rejoin`): in the returned lane.
        }
        if self.called.contains_key(&seq) {
            return self.claim_called(seq, now);
        }
        if seq >= self.head {
            let i = (seq - self.head) as usize;
            if self.records[i] & DEPARTED != 0 {
                // Came back before their place reached the head: it is theirs again.
                self.records[i] = 0;
                self.rank.add(seq, 1);
                self.live += 1;
            }
        } else if !self.returned_deadline.contains_key(&seq) {
            let heard = self.heard(now);
            if seq < self.head_at(heard.saturating_sub(self.timing.return_grace_ms)) {
                // Passed over longer ago than the grace: a new place for them.
                return Poll::Ended;
            }
            // Passed over while away: their turn has gone by, so they go first now.
            self.returned.push_back(seq);
            self.returned_deadline.insert(seq, heard);
        }
        Poll::Waiting(self.check_in(seq, now))
    }

    /// Called place `seq` claims its admission: admitted, or told when its slot comes.
    fn claim_called(&mut self, seq: u64, now: Millis) -> Poll {
        match self.claim(seq, now) {
            Some(after_ms) => Poll::Waiting(Wait {
                position: 1,
                eta_ms: after_ms,
                poll_after_ms: after_ms,
                gate: Gate::Open,
            }),
            None => {
                self.called.remove(&seq);
                self.claim_slots.remove(&seq);
                self.open_session(seq, now);
                Poll::Admitted { sid: seq }
            }
        }
    }

    /// Whether called place `seq` may claim its admission at `now` (`None`), or in
    /// how many ms. Claims are spaced at the outflow too: visitors called one by one
    /// but coming back together (they polled in step) would otherwise reach the
    /// origin in a burst. One that comes too soon gets the next free slot and is
    /// told to come back then; nobody has to ask twice.
    fn claim(&mut self, seq: u64, now: Millis) -> Option<Millis> {
        if self.settings.passthrough {
            return None;
        }
        if let Some(&at) = self.claim_slots.get(&seq) {
            return (now < at).then(|| at - now);
        }
        let rate = self.claim_rate(now);
        if self.claims.conforms(rate, now) {
            self.claims.consume(rate, now);
            return None;
        }
        let at = self.claims.next_conforming(rate, now);
        self.claims.consume(rate, at);
        self.claim_slots.insert(seq, at);
        let until = self.heard(at) + self.timing.abandon_min_ms;
        if let Some(claim_by) = self.called.get_mut(&seq) {
            *claim_by = (*claim_by).max(until);
        }
        Some(at - now)
    }

    /// Records that `seq` was seen at `now`, computes its wait and its next deadline.
    fn check_in(&mut self, seq: u64, now: Millis) -> Wait {
        let share = self.timing.returned_share_permille;
        let position = if seq >= self.head {
            main_position(self.rank.before(seq), self.returned.len() as u64, share)
        } else {
            let index = self.returned.iter().position(|s| *s == seq).unwrap_or(0);
            returned_position(index as u64, self.live, share)
        };
        let wait = self.wait_for(position, now);
        let deadline = self.timing.deadline(self.heard(now), &wait);
        let deadline = self.lottery_floor(seq, deadline, now);
        if seq >= self.head {
            let record = &mut self.records[(seq - self.head) as usize];
            let old = std::mem::replace(record, deadline);
            // One entry per place is enough while its deadline only moves later:
            // the sweep finds the entry of the earlier one and moves it on. A new
            // place, or a deadline that came nearer, needs an entry of its own.
            if old == 0 || deadline.div_ceil(1000) < old.div_ceil(1000) {
                self.schedule(seq, deadline);
            }
        } else {
            self.returned_deadline.insert(seq, deadline);
        }
        wait
    }

    fn wait_for(&self, position: u64, now: Millis) -> Wait {
        self.timing
            .wait(position, self.flow(now), &self.settings, now)
    }

    fn flow(&self, now: Millis) -> Flow {
        Flow {
            measured_per_sec: self.outflow.per_second(now),
            active: self.active(),
        }
    }

    fn open_session(&mut self, sid: u64, now: Millis) {
        self.claimed.set(sid);
        let lapses = self.heard(now) + self.timing.session_ms;
        self.sessions.insert(sid, lapses);
    }

    /// An admitted holder makes a request: renews their session if it is alive.
    pub fn touch_session(&mut self, sid: u64, now: Millis) -> bool {
        let now = self.at(now);
        let now = self.heard(now);
        match self.sessions.get_mut(&sid) {
            Some(lapses) if *lapses > now => {
                *lapses = now + self.timing.session_ms;
                true
            }
            Some(&mut lapses) => {
                self.sessions.remove(&sid);
                self.lapsed.insert(sid, lapses);
                false
            }
            None => false,
        }
    }

    /// The holder of session `sid` comes back: admitted while it is alive; after it
    /// lapsed (within `return_grace` of that), in the returned lane: their turn came
    /// once already, so they are called ahead of the main line (at the lane's share
    /// of the calls, within the limits) and need not queue again. `Ended` when the
    /// session is unknown, lapsed longer ago, or was ended by the origin.
    pub fn rejoin(&mut self, sid: u64, now: Millis) -> Poll {
        let now = self.at(now);
        if sid == 0 || sid >= self.next_seq || sid >= self.head {
            return Poll::Unknown;
        }
        if self.touch_session(sid, now) {
            return Poll::Admitted { sid };
        }
        let heard = self.heard(now);
        if let Some(at) = self.lapsed.remove(&sid) {
            if at + self.timing.return_grace_ms > heard
                && !self.called.contains_key(&sid)
                && !self.returned_deadline.contains_key(&sid)
            {
                self.returned.push_back(sid);
                self.returned_deadline.insert(sid, heard);
            }
        }
        if self.called.contains_key(&sid) {
            return self.claim_called(sid, now);
        }
        if self.returned_deadline.contains_key(&sid) {
            return Poll::Waiting(self.check_in(sid, now));
        }
        Poll::Ended
    }

    /// When session `sid` lapses unless it is active again (wall time, were
    /// nothing silent from now on), if it is known.
    pub fn session_lapses(&self, sid: u64) -> Option<Millis> {
        self.sessions.get(&sid).map(|l| l + self.silence)
    }

    /// The origin ends a session (its business is done, or it must not go on):
    /// its slot is free at once. `true` when it was alive.
    pub fn end_session(&mut self, sid: u64, now: Millis) -> bool {
        let now = self.at(now);
        let now = self.heard(now);
        self.sessions
            .remove(&sid)
            .is_some_and(|lapses| lapses > now)
    }

    /// A round of the store's pump: the line's heartbeat (see [`Line::at`]), then
    /// [`Line::advance`].
    pub fn pump(&mut self, now: Millis) -> PumpReport {
        let now = self.at(now);
        self.beat = now;
        self.advance(now)
    }

    /// Advances the line: notices departures, passes over departed places at the
    /// head and calls as many places as both limits allow.
    fn advance(&mut self, now: Millis) -> PumpReport {
        let heard = self.heard(now);
        let mut report = PumpReport::default();
        self.sweep(now);
        // Passthrough has no limit: at most so many a round, so that one round of a
        // long line stays short.
        let mut budget = CALLS_PER_ROUND;
        while budget > 0 && self.may_admit(now) {
            budget -= 1;
            let Some((seq, deadline)) = self.next_candidate(heard, &mut report) else {
                break;
            };
            self.consume(now);
            self.outflow.record(now);
            // The holder comes back at their next poll; hold the slot until they were
            // due to be noticed as departed anyway.
            let claim_by = deadline.max(heard + self.timing.abandon_min_ms);
            self.called.insert(seq, claim_by);
            report.called += 1;
        }
        // Departed places at the head go now, so that `records` only starts with a
        // live place and an empty line really is empty.
        while let Some(&r) = self.records.front() {
            if r & DEPARTED == 0 && r > heard {
                break;
            }
            self.pop_head();
            report.passed_over += 1;
        }
        self.outflow.line_present(self.queue_length() > 0, now);
        self.mark_head(heard);
        report
    }

    fn pop_head(&mut self) -> Option<(u64, u64)> {
        let r = self.records.pop_front()?;
        let seq = self.head;
        self.head += 1;
        if r & DEPARTED == 0 {
            self.rank.add(seq, -1);
            self.live -= 1;
        }
        Some((seq, r))
    }

    /// The next place to call and its holder's deadline: the returned lane at its
    /// share of the calls while the main line waits (it goes first, then its
    /// credit is spent and earned back by calls from the main line), all of them
    /// when the main line is empty. `now` on the clock of presence.
    fn next_candidate(&mut self, now: Millis, report: &mut PumpReport) -> Option<(u64, Millis)> {
        let share = i64::from(self.timing.returned_share_permille.clamp(1, 1000));
        if self.returned_credit >= 0 || self.live == 0 {
            while let Some(seq) = self.returned.pop_front() {
                match self.returned_deadline.remove(&seq) {
                    Some(d) if d > now => {
                        if self.live > 0 {
                            self.returned_credit =
                                (self.returned_credit - (1000 - share)).max(-1000);
                        }
                        return Some((seq, d));
                    }
                    _ => {}
                }
            }
        }
        while let Some((seq, r)) = self.pop_head() {
            if r & DEPARTED == 0 && r > now {
                self.returned_credit = (self.returned_credit + share).min(0);
                return Some((seq, r));
            }
            report.passed_over += 1;
        }
        // The main line is empty: the returned lane after all.
        while let Some(seq) = self.returned.pop_front() {
            if let Some(d) = self.returned_deadline.remove(&seq).filter(|d| *d > now) {
                return Some((seq, d));
            }
        }
        None
    }

    /// Notes where the head is at `now` (on the clock of presence; one mark a
    /// second at most), forgetting marks older than needed to tell `return_grace` ago.
    fn mark_head(&mut self, now: Millis) {
        let moved = self
            .head_marks
            .back()
            .is_none_or(|&(at, head)| head != self.head && now >= at + 1000);
        if moved {
            self.head_marks.push_back((now, self.head));
        }
        let horizon = now.saturating_sub(self.timing.return_grace_ms);
        while self.head_marks.get(1).is_some_and(|&(at, _)| at <= horizon) {
            self.head_marks.pop_front();
        }
    }

    /// Where the head was at `t`, as far as the marks tell (never later than it
    /// was: a place at or past it was passed over after `t`, or not at all).
    fn head_at(&self, t: Millis) -> u64 {
        self.head_marks
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |&(_, head)| head)
    }

    /// Looks at place `seq` again when `deadline` has passed (see [`Line::sweep`]).
    fn schedule(&mut self, seq: u64, deadline: Millis) {
        self.deadlines
            .entry(deadline.div_ceil(1000))
            .or_default()
            .push(seq);
    }

    /// Notices departures whose deadline has passed and drops lapsed sessions and
    /// unclaimed calls (at most every [`SCAN_EVERY_MS`]).
    fn sweep(&mut self, wall: Millis) {
        let now = self.heard(wall);
        while let Some(entry) = self.deadlines.first_entry() {
            if *entry.key() * 1000 > now {
                break;
            }
            for seq in entry.remove() {
                if seq < self.head {
                    continue;
                }
                let i = (seq - self.head) as usize;
                let r = self.records[i];
                if r & DEPARTED != 0 {
                    continue;
                }
                if r <= now {
                    self.records[i] = r | DEPARTED;
                    self.rank.add(seq, -1);
                    self.live -= 1;
                } else {
                    // Checked in since: looked at again at its new deadline.
                    self.schedule(seq, r);
                }
            }
        }
        if wall < self.next_scan {
            return;
        }
        self.next_scan = wall + SCAN_EVERY_MS;
        let lapsed = &mut self.lapsed;
        self.sessions.retain(|sid, lapses| {
            if *lapses > now {
                return true;
            }
            lapsed.insert(*sid, *lapses);
            false
        });
        let grace = self.timing.return_grace_ms;
        self.lapsed.retain(|_, at| *at + grace > now);
        self.called.retain(|_, claim_by| *claim_by > now);
        let called = &self.called;
        self.claim_slots.retain(|seq, _| called.contains_key(seq));
        let deadlines = &mut self.returned_deadline;
        self.returned.retain(|seq| match deadlines.get(seq) {
            Some(d) if *d > now => true,
            _ => {
                deadlines.remove(seq);
                false
            }
        });
    }

    /// The line as operators see it.
    pub fn snapshot(&mut self, now: Millis) -> Snapshot {
        let now = self.at(now);
        self.next_scan = 0;
        self.sweep(now);
        Snapshot {
            queue_length: self.queue_length(),
            active_users: self.active(),
            called_pending: self.called.len() as u64,
            places_issued: self.places_issued,
            measured_per_minute: self.outflow.per_second(now).map(|r| r * 60.0),
            prequeue: self.prequeue,
            last_draw: self.last_draw,
            settings: self.settings,
        }
    }

    /// `deadline`, or later for a place of a lottery's pre-queue: such a place
    /// does not depart before its holder after the draw had time to poll.
    fn lottery_floor(&self, seq: u64, deadline: Millis, now: Millis) -> Millis {
        let abandon = self.timing.abandon_min_ms;
        let before = match self.settings.opens_at {
            Some(opens) if self.settings.lottery && now < opens => Some(opens),
            _ => None,
        };
        let drawn = self
            .last_draw
            .filter(|(o, a, b)| (*a..=*b).contains(&seq) && now < o + abandon)
            .map(|(o, _, _)| o);
        match before.or(drawn) {
            Some(opens) => deadline.max(self.heard(opens) + abandon),
            None => deadline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        session_ms: 600_000,
        burst: None,
        poll_min_ms: 1_000,
        poll_max_ms: 20_000,
        abandon_polls: 3,
        abandon_min_ms: 600_000,
        return_grace_ms: 300_000,
        returned_share_permille: 500,
    };

    fn line(per_minute: u32) -> Line {
        Line::new(TIMING, Settings::open(per_minute, 1_000_000))
    }

    fn queue(l: &mut Line, n: usize, now: Millis) -> Vec<u64> {
        (0..n)
            .filter_map(|_| match l.arrive(now) {
                Arrival::Queued { seq, .. } => Some(seq),
                Arrival::Admitted { .. } => None,
            })
            .collect()
    }

    fn run(l: &mut Line, from: Millis, to: Millis) {
        for now in (from..to).step_by(20) {
            l.pump(now);
        }
    }

    #[test]
    fn the_position_index_takes_at_most_twice_the_line() {
        let mut l = Line::new(TIMING, Settings::open(6_000, 1));
        let mut waiting = 1; // the first goes straight in
        for n in [1_000, 1_023, 1_024, 1_025, 3_000, 5_000, 20_000] {
            waiting += queue(&mut l, n - waiting, 0).len();
            let len = (l.next_seq - l.head) as usize;
            assert!(
                l.rank.slots() <= (2 * len).max(1024),
                "{len} waiting: {} slots",
                l.rank.slots()
            );
            let back = l.next_seq - 1;
            assert_eq!(l.rank.before(back), len as u64 - 1, "positions still count");
            let restored = l.clone().restored(TIMING);
            assert!(restored.rank.slots() <= (2 * len).max(1024), "restored");
            assert_eq!(restored.rank.before(back), len as u64 - 1);
        }
    }

    #[test]
    fn a_lapsed_session_comes_back_first_and_an_ended_one_does_not() {
        let mut l = Line::new(TIMING, Settings::open(6_000, 1));
        let Arrival::Admitted { sid } = l.arrive(0) else {
            panic!("the first goes straight in")
        };
        let others = queue(&mut l, 2, 0);
        assert_eq!(others.len(), 2, "capacity is taken: the others queue");
        // Paused while the first session lapses unused, so nobody is called meanwhile.
        l.update(
            SettingsPatch {
                paused: Some(true),
                ..SettingsPatch::default()
            },
            1,
        );
        for &seq in &others {
            l.poll(seq, 300_000);
        }
        let at = TIMING.session_ms + 1_000;
        run(&mut l, at, at + 200);
        for &seq in &others {
            l.poll(seq, at + 200);
        }
        assert!(!l.touch_session(sid, at + 300), "lapsed");
        // Back (a form sent after the lapse): first in line, ahead of both.
        match l.rejoin(sid, at + 400) {
            Poll::Waiting(w) => assert_eq!(w.position, 1, "{w:?}"),
            other => panic!("{other:?}"),
        }
        match l.poll(others[0], at + 400) {
            Poll::Waiting(w) => assert_eq!(w.position, 2, "{w:?}"),
            other => panic!("{other:?}"),
        }
        // Let in again before the two who have not had their turn.
        l.update(
            SettingsPatch {
                paused: Some(false),
                ..SettingsPatch::default()
            },
            at + 500,
        );
        run(&mut l, at + 500, at + 700);
        assert_eq!(l.rejoin(sid, at + 700), Poll::Admitted { sid });
        for &seq in &others {
            assert!(
                matches!(l.poll(seq, at + 700), Poll::Waiting(_)),
                "{seq} went first"
            );
        }
        // A session the origin ended is not come back to, nor one unknown.
        assert!(l.end_session(sid, at + 800));
        assert_eq!(l.rejoin(sid, at + 900), Poll::Ended);
        assert_eq!(l.rejoin(999, at + 900), Poll::Unknown);
    }

    #[test]
    fn a_session_lapsed_longer_ago_than_the_grace_gets_a_new_place() {
        let mut l = Line::new(TIMING, Settings::open(6_000, 1));
        let Arrival::Admitted { sid } = l.arrive(0) else {
            panic!("the first goes straight in")
        };
        let late = TIMING.session_ms + TIMING.return_grace_ms + 10_000;
        run(&mut l, TIMING.session_ms + 1_000, late + 100);
        assert_eq!(l.rejoin(sid, late + 200), Poll::Ended);
    }

    #[test]
    fn polling_again_and_again_keeps_one_deadline_entry_and_departure_still_counts() {
        let mut l = line(60);
        l.update(
            SettingsPatch {
                paused: Some(true),
                ..Default::default()
            },
            0,
        );
        let seqs = queue(&mut l, 2, 0);
        let (poller, leaver) = (seqs[0], seqs[1]);
        // One holder polls 100,000 times over ten minutes; the other never again.
        for i in 0..100_000u64 {
            let now = i * 6;
            assert!(matches!(l.poll(poller, now), Poll::Waiting(_)));
            if i % 100 == 0 {
                l.pump(now);
            }
        }
        let entries: usize = l.deadlines.values().map(Vec::len).sum();
        assert!(entries <= 2, "{entries} deadline entries for two places");
        // Past the abandonment window (10 minutes) the one who stopped has
        // departed, and the poller, always back in time, has not.
        let later = 900_000;
        run(&mut l, 600_000, later);
        let Poll::Waiting(w) = l.poll(poller, later) else {
            panic!()
        };
        assert_eq!(w.position, 1, "the one who left no longer counts");
        assert_eq!(l.live, 1);
        assert!(
            matches!(l.poll(leaver, later), Poll::Waiting(_)),
            "and may come back"
        );
        assert_eq!(l.live, 2);
    }

    #[test]
    fn positions_count_down_and_eta_follows_the_measured_outflow() {
        let mut l = line(1_800);
        let seqs = queue(&mut l, 900, 0);
        assert_eq!(seqs.len(), 897, "the burst of 3 went straight in");
        let last = *seqs.last().unwrap();
        let Poll::Waiting(w) = l.poll(last, 0) else {
            panic!()
        };
        assert_eq!(w.position, 897);
        assert!((29_000..=30_000).contains(&w.eta_ms), "{w:?}");
        run(&mut l, 0, 10_000);
        let Poll::Waiting(w) = l.poll(last, 10_000) else {
            panic!()
        };
        assert!((595..=600).contains(&w.position), "{w:?}");
        // 597 left at a measured 30/s: 20 s.
        assert!((19_500..=20_500).contains(&w.eta_ms), "{w:?}");
        assert_eq!(w.poll_after_ms, w.eta_ms / 8);
    }

    #[test]
    fn before_a_scheduled_opening_everyone_queues_and_the_eta_counts_the_wait() {
        let mut l = line(600);
        l.update(
            SettingsPatch {
                opens_at: Some(Some(60_000)),
                ..Default::default()
            },
            0,
        );
        let seqs = queue(&mut l, 20, 0);
        assert_eq!(seqs.len(), 20, "nobody goes straight in before the opening");
        run(&mut l, 0, 30_000);
        let Poll::Waiting(w) = l.poll(seqs[9], 30_000) else {
            panic!()
        };
        assert_eq!(w.gate, Gate::Scheduled { opens_at: 60_000 });
        assert_eq!(w.position, 10);
        // 30 s to the opening, then 10 places at 10/s.
        assert_eq!(w.eta_ms, 31_000);
        run(&mut l, 30_000, 59_980);
        // A caller whose clock is behind is answered from the present (the last
        // pump ran at 59.96 s).
        let Poll::Waiting(w) = l.poll(seqs[9], 10_000) else {
            panic!()
        };
        assert_eq!(w.eta_ms, 40 + 1_000);
        // A closed room stays shut even past the opening time.
        l.update(
            SettingsPatch {
                closed: Some(true),
                ..Default::default()
            },
            0,
        );
        run(&mut l, 60_000, 61_000);
        assert_eq!(l.snapshot(61_000).queue_length, 20);
        l.update(
            SettingsPatch {
                closed: Some(false),
                ..Default::default()
            },
            0,
        );
        run(&mut l, 61_000, 62_000);
        assert!(l.snapshot(62_000).queue_length < 20, "opened");
        let Poll::Waiting(w) = l.poll(seqs[19], 62_000) else {
            panic!()
        };
        assert_eq!(w.gate, Gate::Open);
    }

    #[test]
    fn once_capacity_is_taken_the_wait_follows_the_turnover_of_sessions() {
        let mut l = line(600);
        l.update(
            SettingsPatch {
                max_active_users: Some(4),
                ..Default::default()
            },
            0,
        );
        assert!(queue(&mut l, 2, 0).is_empty(), "two straight in");
        let seqs = queue(&mut l, 6, 0);
        // Two slots free: places 1 and 2 at the outflow (10/s); then at most 4 per
        // 600 s session as sessions end: 150 s a place.
        let eta = |l: &mut Line, i: usize| match l.poll(seqs[i], 0) {
            Poll::Waiting(w) => w.eta_ms,
            other => panic!("{other:?}"),
        };
        assert_eq!(eta(&mut l, 1), 200);
        assert_eq!(eta(&mut l, 2), 200 + 150_000);
        assert_eq!(eta(&mut l, 5), 200 + 4 * 150_000);
        // Plenty of capacity: the outflow alone.
        l.update(
            SettingsPatch {
                max_active_users: Some(1_000),
                ..Default::default()
            },
            0,
        );
        assert_eq!(eta(&mut l, 5), 600);
    }

    #[test]
    fn the_departed_do_not_count_ahead_and_regain_their_place_on_return() {
        let mut l = line(60);
        l.timing.abandon_min_ms = 5_000;
        l.update(
            SettingsPatch {
                paused: Some(true),
                ..Default::default()
            },
            0,
        );
        let seqs = queue(&mut l, 5_000, 0); // also exercises the rank's growth
        assert_eq!(seqs.len(), 5_000);
        // Everyone but the last 10 stops polling; paused, they were told to poll every
        // 20 s, so after three missed polls they have departed.
        for t in (1_000..=90_000).step_by(1_000) {
            for s in &seqs[4_990..] {
                l.poll(*s, t);
            }
            l.pump(t);
        }
        let Poll::Waiting(w) = l.poll(seqs[4_999], 90_000) else {
            panic!()
        };
        assert_eq!(w.position, 10, "departed ahead still counted");
        assert_eq!(l.snapshot(90_000).queue_length, 10);
        // One of the departed comes back before their place was reached: it is theirs.
        let Poll::Waiting(w) = l.poll(seqs[100], 90_000) else {
            panic!()
        };
        assert_eq!(w.position, 1);
        let Poll::Waiting(w) = l.poll(seqs[4_999], 90_000) else {
            panic!()
        };
        assert_eq!(w.position, 11);
    }

    #[test]
    fn called_visitors_who_come_back_together_claim_one_slot_apart() {
        let mut l = line(600); // 10/s, a burst of 2
        let seqs = queue(&mut l, 30, 0);
        // Called one by one over 2 s, nobody polls meanwhile.
        run(&mut l, 0, 2_000);
        let called: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|s| l.called.contains_key(s))
            .collect();
        assert!(called.len() >= 15, "{called:?}");
        // They all come back in the same millisecond: two go in (the burst), the
        // others get slots 100 ms apart, each told when.
        let mut slots = Vec::new();
        for seq in &called {
            match l.poll(*seq, 2_000) {
                Poll::Admitted { .. } => slots.push(2_000),
                Poll::Waiting(w) => {
                    assert_eq!((w.position, w.eta_ms), (1, w.poll_after_ms));
                    slots.push(2_000 + w.poll_after_ms);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(slots.iter().filter(|t| **t == 2_000).count(), 2);
        assert!(
            slots.windows(2).skip(1).all(|w| w[1] == w[0] + 100),
            "{slots:?}"
        );
        // Back at their slot, each goes in; too early, told the rest.
        let (&seq, &at) = (called.last().unwrap(), slots.last().unwrap());
        run(&mut l, 2_000, at - 30);
        assert!(matches!(l.poll(seq, at - 30), Poll::Waiting(w) if w.poll_after_ms == 30));
        assert_eq!(l.poll(seq, at), Poll::Admitted { sid: seq });
    }

    #[test]
    fn unknown_and_ended_places_are_newcomers() {
        let mut l = line(60);
        assert_eq!(l.poll(0, 0), Poll::Unknown);
        assert_eq!(l.poll(99, 0), Poll::Unknown);
        let Arrival::Admitted { sid } = l.arrive(0) else {
            panic!()
        };
        assert_eq!(l.poll(sid, 1_000), Poll::Admitted { sid });
        assert!(l.touch_session(sid, 2_000));
        assert!(!l.touch_session(sid, 2_000 + TIMING.session_ms));
        assert_eq!(l.poll(sid, 3_000 + TIMING.session_ms), Poll::Ended);
    }
}
