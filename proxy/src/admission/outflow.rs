//! The measured outflow: admissions per second over the last minute, for ETAs.

use crate::clock::Millis;

const WINDOW_SECS: u64 = 60;
/// Below this much history the configured rate is the better estimate.
const MIN_HISTORY_SECS: u64 = 5;

/// Per-second admission counts over a sliding window.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Outflow {
    /// `(second, admissions in it)` for the last [`WINDOW_SECS`] seconds.
    buckets: Vec<(u64, u32)>,
    /// Since when the line has been non-empty (the measurement is about a queue).
    since_sec: Option<u64>,
}

impl Outflow {
    /// Records one admission at `now`.
    pub fn record(&mut self, now: Millis) {
        let sec = now / 1000;
        if self.buckets.len() < WINDOW_SECS as usize {
            self.buckets.resize(WINDOW_SECS as usize, (u64::MAX, 0));
        }
        let slot = &mut self.buckets[(sec % WINDOW_SECS) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
    }

    /// Marks whether a line exists at `now`; the estimate only uses time spent with a line.
    pub fn line_present(&mut self, present: bool, now: Millis) {
        match (present, self.since_sec) {
            (true, None) => self.since_sec = Some(now / 1000),
            (false, Some(_)) => self.since_sec = None,
            _ => {}
        }
    }

    /// Admissions per second measured while a line existed, if there is enough history.
    pub fn per_second(&self, now: Millis) -> Option<f64> {
        let sec = now / 1000;
        let since = self.since_sec?;
        // Whole seconds observed, excluding the current partial one.
        let span = sec.saturating_sub(since).min(WINDOW_SECS);
        if span < MIN_HISTORY_SECS {
            return None;
        }
        let from = sec - span;
        let total: u32 = self
            .buckets
            .iter()
            .filter(|(s, _)| *s >= from && *s < sec)
            .map(|(_, n)| n)
            .sum();
        Some(f64::from(total) / span as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_rate_while_a_line_exists() {
        let mut o = Outflow::default();
        o.line_present(true, 0);
        for ms in (0..10_000).step_by(50) {
            o.record(ms); // 20 per second
        }
        assert_eq!(o.per_second(3_000), None, "too little history");
        let r = o.per_second(10_000).unwrap();
        assert!((r - 20.0).abs() < 0.01, "{r}");
        o.line_present(false, 10_000);
        assert_eq!(o.per_second(10_000), None);
    }
}
