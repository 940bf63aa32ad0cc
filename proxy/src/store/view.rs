//! An instance's short-lived local view of a shared line, so that status polls are
//! answered without a round trip to Redis.
//!
//! Refreshed every [`VIEW_EVERY`] by the pump; used for at most [`VIEW_MAX_AGE`].
//! Why that staleness is safe: the view only ever answers "still waiting, here is
//! your position". Everything that changes a visitor's standing — being called,
//! claiming, having been passed over, coming back after departing — is not answered
//! from the view but by Redis, atomically. A place called after the view was taken is
//! told "waiting" once more and learns of its call at its next poll (at most one poll
//! interval later, well inside the claim window); a position may lag the truth by the
//! admissions of the last quarter second. Deadlines and session renewals from answers
//! given locally are written back in batches with the next pump round.

use std::collections::HashSet;

use crate::admission::line::Settings;
use crate::admission::line::{main_position, returned_position};
use crate::clock::Millis;

/// How often the pump refreshes the view.
pub const VIEW_EVERY: Millis = 250;
/// A view older than this is not used (for example while Redis is away).
pub const VIEW_MAX_AGE: Millis = 1_000;
/// Where the `view` answer carries Redis's time.
pub const LINE_NOW_AT: usize = 9;

/// A snapshot of the line, as far as answering polls needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    /// When it was taken (the caller's clock).
    pub fetched_at: Millis,
    /// The first place not yet called or passed over.
    pub head: u64,
    /// The next place to be handed out.
    pub next: u64,
    /// The settings.
    pub settings: Settings,
    /// The measured outflow, per second.
    pub measured: Option<f64>,
    /// Sessions alive plus places called (what capacity counts).
    pub active: u64,
    /// How many places are waiting (not departed).
    pub live: u64,
    /// `sample` holds every `stride`-th waiting place.
    pub stride: u64,
    /// Waiting places, ascending, every `stride`-th.
    pub sample: Vec<u64>,
    /// Places called and not yet claimed.
    pub called: HashSet<u64>,
    /// The returned lane, in order.
    pub returned: Vec<u64>,
}

fn list(s: Option<&String>) -> Vec<u64> {
    s.map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

/// Reads the settings the script answers with (rate, max, paused, closed, opens,
/// held) from index `at`.
pub fn settings_at(a: &[String], at: usize) -> Option<Settings> {
    let n = |i: usize| a.get(at + i)?.parse::<u64>().ok();
    Some(Settings {
        new_users_per_minute: u32::try_from(n(0)?).ok()?,
        max_active_users: u32::try_from(n(1)?).ok()?,
        paused: a.get(at + 2)? == "1",
        paused_at: n(9).filter(|ms| *ms > 0),
        closed: a.get(at + 3)? == "1",
        opens_at: n(4).filter(|ms| *ms > 0),
        held_until: n(5).filter(|ms| *ms > 0),
        queue_all: a.get(at + 6).is_some_and(|v| v == "1"),
        passthrough: a.get(at + 7).is_some_and(|v| v == "1"),
        lottery: a.get(at + 8).is_some_and(|v| v == "1"),
    })
}

impl View {
    /// Reads the answer of the script's `view` operation.
    pub fn parse(a: &[String], fetched_at: Millis) -> Option<Self> {
        let n = |i: usize| a.get(i)?.parse::<u64>().ok();
        Some(Self {
            fetched_at,
            head: n(0)?,
            next: n(1)?,
            measured: a.get(2).and_then(|s| s.parse().ok()),
            live: n(3)?,
            stride: n(4)?.max(1),
            sample: list(a.get(5)),
            called: list(a.get(6)).into_iter().collect(),
            returned: list(a.get(7)),
            active: n(8)?,
            settings: settings_at(a, LINE_NOW_AT + 1)?,
        })
    }

    /// Records places this instance has just called: Redis answers them from now on,
    /// and (when the view is exact) they no longer count ahead of anybody.
    pub fn note_called(&mut self, seqs: impl IntoIterator<Item = u64>) {
        for seq in seqs {
            self.called.insert(seq);
            if let Some(i) = self.returned.iter().position(|s| *s == seq) {
                self.returned.remove(i);
            } else if self.stride == 1 {
                if let Ok(i) = self.sample.binary_search(&seq) {
                    self.sample.remove(i);
                    self.live -= 1;
                }
            }
            self.head = self.head.max(seq + 1);
        }
    }

    /// Records that Redis has just told place `seq` that it waits: back in the
    /// returned lane when its turn had passed, or back in its place after it
    /// departed, so that this instance's next answers count it ahead of others.
    pub fn note_waiting(&mut self, seq: u64) {
        if self.called.contains(&seq) || self.returned.contains(&seq) {
            return;
        }
        if seq < self.head {
            self.returned.push(seq);
        } else if self.stride == 1 {
            if let Err(i) = self.sample.binary_search(&seq) {
                self.sample.insert(i, seq);
                self.live += 1;
            }
        }
    }

    /// Whether the view may be used at `now`.
    pub fn fresh(&self, now: Millis) -> bool {
        now.saturating_sub(self.fetched_at) <= VIEW_MAX_AGE
    }

    /// The position of place `seq` if the view can tell it, or `None`: ask Redis.
    /// The returned lane takes `share_permille` of the calls (see
    /// [`crate::admission::line::main_position`]).
    pub fn position(&self, seq: u64, share_permille: u32) -> Option<u64> {
        if self.called.contains(&seq) {
            return None;
        }
        if let Some(i) = self.returned.iter().position(|s| *s == seq) {
            return Some(returned_position(i as u64, self.live, share_permille));
        }
        let rank = self.main_rank(seq)?;
        Some(main_position(
            rank - 1,
            self.returned.len() as u64,
            share_permille,
        ))
    }

    /// The place's rank in the main line (from 1), if the view can tell it.
    fn main_rank(&self, seq: u64) -> Option<u64> {
        if seq < self.head {
            return None;
        }
        if seq >= self.next {
            // Arrived since the view was taken: Redis knows (once per visitor).
            return None;
        }
        if self.stride == 1 {
            // Exact; a place missing here has departed and must be revived by Redis.
            return self.sample.binary_search(&seq).ok().map(|i| i as u64 + 1);
        }
        let k = self.sample.partition_point(|s| *s <= seq);
        if k == 0 {
            return Some(1);
        }
        let before = (k as u64 - 1) * self.stride;
        let within = (seq - self.sample[k - 1] + 1).min(self.stride);
        Some(before + within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl View {
        /// Positions with the returned lane served whole before the main line.
        fn position_all_first(&self, seq: u64) -> Option<u64> {
            self.position(seq, 1000)
        }
    }

    #[test]
    fn the_returned_lane_takes_its_share_of_the_positions() {
        let v = View::parse(&answer("10,12,13,20", 1, 4, "11", "3,5,6"), 1_000).unwrap();
        // Half the calls each: 3, 10, 5, 12, 6, 13, 20.
        assert_eq!(v.position(3, 500), Some(1));
        assert_eq!(v.position(10, 500), Some(2));
        assert_eq!(v.position(5, 500), Some(3));
        assert_eq!(v.position(12, 500), Some(4));
        assert_eq!(v.position(6, 500), Some(5));
        assert_eq!(v.position(13, 500), Some(6));
        assert_eq!(v.position(20, 500), Some(7));
    }

    fn answer(sample: &str, stride: u64, live: u64, called: &str, returned: &str) -> Vec<String> {
        [
            "10",
            "100",
            "",
            &live.to_string(),
            &stride.to_string(),
            sample,
            called,
            returned,
            "0",
            "1000",
            "600",
            "50",
            "0",
            "0",
            "0",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn exact_positions_and_what_it_leaves_to_redis() {
        let v = View::parse(&answer("10,12,13,20", 1, 4, "11", "3,5"), 1_000).unwrap();
        assert_eq!(
            (v.head, v.next, v.settings.new_users_per_minute, v.measured),
            (10, 100, 600, None)
        );
        assert_eq!(v.position_all_first(3), Some(1), "the returned lane first");
        assert_eq!(v.position_all_first(5), Some(2));
        assert_eq!(v.position_all_first(10), Some(3));
        assert_eq!(v.position_all_first(13), Some(5));
        assert_eq!(v.position_all_first(11), None, "called: claim in Redis");
        assert_eq!(v.position_all_first(15), None, "departed: revive in Redis");
        assert_eq!(v.position_all_first(4), None, "passed over: Redis");
        assert_eq!(v.position_all_first(105), None, "arrived since: Redis");
        assert!(v.fresh(2_000) && !v.fresh(2_001));
        let mut v = v;
        v.note_called([10, 3]);
        assert_eq!(
            v.position_all_first(12),
            Some(2),
            "5 in the returned lane, then 12"
        );
        assert_eq!(v.position_all_first(10), None);
    }

    #[test]
    fn sampled_positions_are_close() {
        // 10,000 waiting places 100..10100, every 4th sampled.
        let sample: Vec<String> = (100..10_100)
            .step_by(4)
            .map(|s: u64| s.to_string())
            .collect();
        let mut a = answer(&sample.join(","), 4, 10_000, "", "");
        a[1] = "20000".into(); // next
        let v = View::parse(&a, 0).unwrap();
        for seq in [100, 101, 103, 104, 5_000, 10_099] {
            let exact = seq - 100 + 1;
            let got = v.position_all_first(seq).unwrap();
            assert!(got.abs_diff(exact) < 4, "{seq}: {got} vs {exact}");
        }
    }
}
