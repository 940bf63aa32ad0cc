//! The line under a randomized model, time passed in, checked against its
//! invariants over many seeds (as FoundationDB and TigerBeetle test theirs).
//!
//! Each seed draws a room (rate, capacity, `queue_all`) and a crowd: visitors who
//! arrive at random moments and then either keep polling as told, walk away for
//! good, or walk away and come back; admitted visitors browse for a while and then
//! release their session or let it lapse, and some of those come back. The store
//! is pumped every [`TICK_MS`], as a running instance pumps it, and frozen (no
//! operation at all) for 2 to 15 s at random moments, after which the pump runs
//! first and the visitors who were due come back in a random order. A store that
//! keeps its line on disk (the memory store with a state directory) is also
//! stopped dead at some of those moments and opened again from what it wrote,
//! as after `kill -9`. Every answer is checked:
//!
//! - no place number handed out twice, and an admission only ever to its place;
//! - a visitor who keeps polling as told is never sent to the back (`Ended`) nor
//!   forgotten (`Unknown`), pauses or not;
//! - a session kept in use never lapses;
//! - never more sessions and calls than `max_active_users`;
//! - never more calls in any 10 s than the rate allows plus its burst;
//! - among visitors who kept polling, a later place is not let in before an
//!   earlier one by more than one poll interval and a claim slot;
//! - everybody who kept polling is let in by the end.
//!
//! A failure names its seed; `SIM_SEED=n` replays one seed alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use waitroom::admission::line::{Arrival, Poll, Settings, Timing};
use waitroom::store::Store;

/// The timings of every seed: short, so that departures, lapses and the grace
/// all happen within a seed.
pub const TIMING: Timing = Timing {
    session_ms: 12_000,
    burst: None,
    poll_min_ms: 1_000,
    poll_max_ms: 3_000,
    abandon_polls: 3,
    abandon_min_ms: 5_000,
    return_grace_ms: 30_000,
    returned_share_permille: 500,
};

/// How often the store is pumped.
const TICK_MS: u64 = 250;
/// Arrivals happen within this long.
const ARRIVALS_MS: u64 = 30_000;
/// A seed that has not let everybody who kept polling in by then fails.
const GIVE_UP_MS: u64 = 900_000;
const START: u64 = 1_800_000_000_000;

/// The room a seed runs: drawn from the seed alone.
pub fn settings(seed: u64) -> Settings {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let rate = *[30, 60, 120, 600].choose(&mut rng).unwrap_or(&60);
    let max_active = *[2, 5, 20].choose(&mut rng).unwrap_or(&5);
    Settings {
        queue_all: rng.random_bool(0.5),
        ..Settings::open(rate, max_active)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan {
    /// Polls as told until let in.
    Steady,
    /// Stops polling at this time, for good.
    Leaves(u64),
    /// Stops polling at this time and polls again this much later.
    Returns(u64, u64),
}

#[derive(Debug)]
struct Visitor {
    seq: u64,
    plan: Plan,
    next_poll: u64,
    /// When it was let in, if it was.
    admitted: Option<u64>,
    /// Browsing until then; afterwards releases (true) or lets it lapse.
    browse_until: u64,
    releases: bool,
    /// Whether it ever missed a poll it was told to make (then nothing is owed).
    strayed: bool,
    done: bool,
}

/// Opens a store again after the one given is dropped (a restart from disk).
pub type Reopen = Box<dyn Fn(Arc<dyn Store>) -> Arc<dyn Store> + Send + Sync>;

/// Runs one seed on `store` (made with [`TIMING`] and [`settings`]`(seed)`),
/// restarting it with `reopen` at some freezes when given; `Err` says which rule
/// broke, and when.
pub async fn run(
    mut store: Arc<dyn Store>,
    seed: u64,
    reopen: Option<Reopen>,
) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let settings = settings(seed);
    let per_minute = u64::from(settings.new_users_per_minute);
    let max_active = u64::from(settings.max_active_users);
    let burst = (per_minute / 600).max(2);
    let crowd = 5 + rng.random_range(0..20);
    let mut arrivals: Vec<u64> = (0..crowd)
        .map(|_| rng.random_range(0..ARRIVALS_MS))
        .collect();
    arrivals.sort_unstable();
    // When, how long, and whether the store is restarted meanwhile.
    let mut freezes: Vec<(u64, u64, bool)> = (0..rng.random_range(0..3))
        .map(|_| {
            let at = rng.random_range(0..ARRIVALS_MS + 20_000);
            (
                at,
                2_000 + rng.random_range(0..13_000),
                rng.random_bool(0.5),
            )
        })
        .collect();
    freezes.sort_unstable();
    // Where each freeze fell (from, to), in the story's time.
    let mut frozen_spans: Vec<(u64, u64)> = Vec::new();

    let trace = std::env::var_os("SIM_TRACE").is_some();
    let fail = |now: u64, what: String| Err(format!("seed {seed} at {} ms: {what}", now - START));
    let mut visitors: Vec<Visitor> = Vec::new();
    let mut issued: HashSet<u64> = HashSet::new();
    let mut calls: Vec<u64> = Vec::new();
    let mut now = START;
    let mut next_arrival = 0;
    loop {
        let t = now - START;
        // A freeze: nothing at all, then the pump, then who was due, shuffled.
        let frozen = freezes.first().is_some_and(|(at, _, _)| *at <= t);
        if frozen {
            let (_, length, restart) = freezes.remove(0);
            frozen_spans.push((now, now + length));
            now += length;
            if let Some(reopen) = reopen.as_ref().filter(|_| restart) {
                store = reopen(store);
                if trace {
                    eprintln!("{t}: restarted from disk");
                }
            }
        } else {
            now += TICK_MS;
        }
        let t = now - START;
        let report = store.pump(now).await.map_err(|e| e.to_string())?;
        if trace && (frozen || report.called + report.passed_over > 0) {
            eprintln!(
                "{t}: pump {report:?}{}",
                if frozen { " after a freeze" } else { "" }
            );
        }
        calls.extend(std::iter::repeat_n(now, report.called as usize));
        // Newcomers.
        while next_arrival < arrivals.len() && arrivals[next_arrival] <= t {
            next_arrival += 1;
            let plan = match rng.random_range(0..10) {
                0..=5 => Plan::Steady,
                6 | 7 => Plan::Leaves(t + rng.random_range(0..20_000)),
                _ => Plan::Returns(
                    t + rng.random_range(0..20_000),
                    1_000 + rng.random_range(0..40_000),
                ),
            };
            let (seq, admitted, next_poll) =
                match store.arrive(now).await.map_err(|e| e.to_string())? {
                    Arrival::Queued { seq, wait } => (seq, None, now + wait.poll_after_ms),
                    Arrival::Admitted { sid } => {
                        calls.push(now);
                        (sid, Some(now), now)
                    }
                };
            if trace {
                eprintln!("{t}: arrive {seq} {plan:?} admitted {admitted:?}");
            }
            if !issued.insert(seq) {
                return fail(now, format!("place {seq} handed out twice"));
            }
            visitors.push(Visitor {
                seq,
                plan,
                next_poll,
                admitted,
                browse_until: now + rng.random_range(0..6_000),
                releases: rng.random_bool(0.5),
                strayed: false,
                done: false,
            });
        }
        // Polls and requests that are due, in a random order after a freeze.
        let mut due: Vec<usize> = (0..visitors.len())
            .filter(|i| !visitors[*i].done && visitors[*i].next_poll <= now)
            .collect();
        if frozen {
            due.shuffle(&mut rng);
        }
        for i in due {
            let v = &mut visitors[i];
            if let Some(at) = v.admitted {
                // Admitted: a request a second while browsing, then release or lapse.
                if now >= v.browse_until {
                    if v.releases {
                        store
                            .end_session(v.seq, now)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    v.done = true;
                    continue;
                }
                if !store
                    .touch_session(v.seq, now)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    return fail(
                        now,
                        format!("session {} (let in at {at}) lapsed in use", v.seq),
                    );
                }
                v.next_poll = now + 1_000;
                continue;
            }
            match v.plan {
                Plan::Leaves(at) if now - START >= at => {
                    v.done = true;
                    continue;
                }
                Plan::Returns(at, away) if now - START >= at => {
                    v.plan = Plan::Steady;
                    v.strayed = true;
                    v.next_poll = now + away;
                    continue;
                }
                _ => {}
            }
            let answer = store.poll(v.seq, now).await.map_err(|e| e.to_string())?;
            if trace {
                eprintln!("{t}: poll {} -> {answer:?}", v.seq);
            }
            match answer {
                Poll::Waiting(w) => v.next_poll = now + w.poll_after_ms,
                Poll::Admitted { sid } => {
                    if sid != v.seq {
                        return fail(now, format!("place {} let in as {sid}", v.seq));
                    }
                    v.admitted = Some(now);
                    v.browse_until = v.browse_until.max(now) + rng.random_range(0..4_000);
                    v.next_poll = now + 1_000;
                }
                other if !v.strayed => {
                    return fail(
                        now,
                        format!("place {} kept polling and got {other:?}", v.seq),
                    );
                }
                // Away too long: a newcomer again, which this model does not follow.
                _ => v.done = true,
            }
        }
        // Capacity and the outflow.
        if t.is_multiple_of(2_000) || frozen {
            let snap = store.snapshot(now).await.map_err(|e| e.to_string())?;
            if snap.active_users > max_active {
                return fail(now, format!("{} active of {max_active}", snap.active_users));
            }
        }
        let window: Vec<&u64> = calls.iter().filter(|c| **c + 10_000 > now).collect();
        let allowed = per_minute * 10 / 60 + burst + 1;
        if window.len() as u64 > allowed {
            return fail(
                now,
                format!("{} calls within 10 s, {allowed} allowed", window.len()),
            );
        }
        let waiting = visitors
            .iter()
            .any(|v| !v.done && v.admitted.is_none() && !matches!(v.plan, Plan::Leaves(_)));
        if next_arrival == arrivals.len() && freezes.is_empty() && !waiting {
            break;
        }
        if t > GIVE_UP_MS {
            let left: Vec<u64> = (visitors.iter())
                .filter(|v| !v.done && v.admitted.is_none())
                .map(|v| v.seq)
                .collect();
            return fail(now, format!("still waiting: {left:?}"));
        }
    }
    // Order: among those who never strayed, a later place is not let in before an
    // earlier one by more than a poll interval and a claim slot, and any freeze in
    // between (nobody could be let in meanwhile).
    let base_slack = TIMING.poll_max_ms + 60_000 / per_minute.max(1) + 1_000;
    let frozen_within = |from: u64, to: u64| -> u64 {
        (frozen_spans.iter())
            .map(|(a, b)| (*b).min(to).saturating_sub((*a).max(from)))
            .sum()
    };
    let steady: HashMap<u64, u64> = (visitors.iter())
        .filter(|v| !v.strayed && v.plan == Plan::Steady)
        .filter_map(|v| v.admitted.map(|at| (v.seq, at)))
        .collect();
    for (a, at_a) in &steady {
        for (b, at_b) in &steady {
            if a < b && *at_b + base_slack + frozen_within(*at_b, *at_a) < *at_a {
                return fail(
                    *at_a,
                    format!("place {b} let in {} ms before place {a}", at_a - at_b),
                );
            }
        }
    }
    Ok(())
}
