//! The outflow limit: a generic cell rate algorithm (GCRA).
//!
//! Written out here rather than taken from `governor` because its state (one
//! number, the theoretical arrival time) must live inside the queue state that a
//! store updates atomically: in memory under one lock, in Redis inside one script,
//! shared by every instance. The arithmetic is the same as governor's.

use crate::clock::Millis;

/// GCRA state in microseconds, so that rates like 1,800/min (33.3 ms apart) stay exact.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Gcra {
    /// Theoretical arrival time of the next admission, in microseconds.
    tat_us: u64,
}

/// The limit a [`Gcra`] enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Admissions per minute; 0 admits nobody.
    pub per_minute: u32,
    /// How many admissions may happen back to back (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_minute` with the default burst: a tenth of a second's worth, at least 2
    /// (so that a pump every 20–50 ms never loses throughput).
    pub fn with_default_burst(per_minute: u32) -> Self {
        Self {
            per_minute,
            burst: per_minute.div_ceil(600).max(2),
        }
    }

    /// Microseconds between two admissions at this rate; `None` when it is 0.
    pub fn interval_us(self) -> Option<u64> {
        (self.per_minute > 0).then(|| 60_000_000 / u64::from(self.per_minute))
    }
}

impl Gcra {
    /// Whether an admission at `now` conforms to `rate`.
    pub fn conforms(&self, rate: Rate, now: Millis) -> bool {
        let Some(t) = rate.interval_us() else {
            return false;
        };
        let tau = t * u64::from(rate.burst.max(1) - 1);
        self.tat_us <= now * 1000 + tau
    }

    /// Carries the admissions owed under `from` over to `to` at `now`: the debt
    /// ahead of `now` is counted in admissions and re-spaced at the new interval.
    pub fn rescale(&mut self, from: Rate, to: Rate, now: Millis) {
        let (Some(old), Some(new)) = (from.interval_us(), to.interval_us()) else {
            return;
        };
        let now_us = now * 1000;
        if old == new || self.tat_us <= now_us {
            return;
        }
        let debt = u128::from(self.tat_us - now_us) * u128::from(new) / u128::from(old);
        self.tat_us = now_us + u64::try_from(debt).unwrap_or(u64::MAX / 2);
    }

    /// The first time (ms, from `now` on) at which an admission conforms.
    pub fn next_conforming(&self, rate: Rate, now: Millis) -> Millis {
        let Some(t) = rate.interval_us() else {
            return Millis::MAX / 2;
        };
        let tau = t * u64::from(rate.burst.max(1) - 1);
        self.tat_us.saturating_sub(tau).div_ceil(1000).max(now)
    }

    /// Moves what was owed past `from` (ms) later by `by` ms: a silence of the line
    /// (see `Line::at`) neither spends the debt nor lets it pile up into a burst.
    pub fn postpone(&mut self, from: Millis, by: Millis) {
        if self.tat_us > from * 1000 {
            self.tat_us += by * 1000;
        }
    }

    /// Records an admission at `now` (callers check [`Gcra::conforms`] first).
    pub fn consume(&mut self, rate: Rate, now: Millis) {
        if let Some(t) = rate.interval_us() {
            self.tat_us = self.tat_us.max(now * 1000) + t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_admitted(rate: Rate, step_ms: u64, until_ms: u64) -> u32 {
        let mut g = Gcra::default();
        let mut n = 0;
        let mut now = 0;
        while now < until_ms {
            while g.conforms(rate, now) {
                g.consume(rate, now);
                n += 1;
            }
            now += step_ms;
        }
        n
    }

    #[test]
    fn smooth_rate_without_minute_bursts() {
        let rate = Rate {
            per_minute: 1_800,
            burst: 1,
        };
        // Checked every millisecond for 10 s: 30/s (less the sub-millisecond
        // lateness of each check, which a burst of 1 cannot make up).
        let n = count_admitted(rate, 1, 10_000);
        assert!((290..=300).contains(&n), "{n}");
        let mut g = Gcra::default();
        g.consume(rate, 0);
        assert!(!g.conforms(rate, 0));
        assert!(!g.conforms(rate, 33));
        assert!(g.conforms(rate, 34));
    }

    #[test]
    fn burst_allows_catch_up_between_coarse_ticks() {
        let rate = Rate {
            per_minute: 1_800,
            burst: 5,
        };
        // Pumped only every 100 ms, the burst keeps the long-run rate exact.
        let n = count_admitted(rate, 100, 10_000);
        assert!((300..=305).contains(&n), "{n}");
    }

    #[test]
    fn a_new_rate_applies_at_once() {
        let slow = Rate::with_default_burst(1);
        let fast = Rate::with_default_burst(600);
        let mut g = Gcra::default();
        g.consume(slow, 0);
        g.consume(slow, 0);
        assert!(!g.conforms(slow, 1_000), "a minute owed at 1/min");
        g.rescale(slow, fast, 1_000);
        // Two admissions owed at 600/min: 0.2 s from the first, less the burst.
        assert!(!g.conforms(fast, 1_000));
        assert!(g.conforms(fast, 1_100));
        // Slower again: what is owed stretches.
        let mut g = Gcra::default();
        g.consume(fast, 0);
        g.consume(fast, 0);
        g.rescale(fast, slow, 0);
        assert!(!g.conforms(slow, 59_000));
        assert!(g.conforms(slow, 60_000));
    }

    #[test]
    fn zero_rate_admits_nobody() {
        let rate = Rate {
            per_minute: 0,
            burst: 10,
        };
        assert_eq!(count_admitted(rate, 10, 1_000), 0);
    }
}
