//! The last 30 minutes of the room, sampled every second in this process, for the
//! ops console (`GET /admin/history`).
//!
//! Each sample joins the room's state (from the store: shared by every instance in
//! Redis mode) with what this instance's counters did in that second (admissions,
//! origin answers and latency, places passed over, refused tokens).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::admission::Admission;
use crate::metrics::{Metrics, Totals};
use crate::shutdown::Shutdown;

/// Samples kept: 30 minutes, one a second.
pub const KEEP: usize = 1800;
/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);

/// One second of the room.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// When (Unix ms).
    pub t: u64,
    /// People in line.
    pub waiting: u64,
    /// Active sessions (and called places not yet claimed).
    pub active: u64,
    /// The cap on active sessions.
    pub max_active: u32,
    /// The configured outflow, a minute.
    pub rate: u32,
    /// The outflow measured by the line, a minute (room-wide), if measured.
    pub measured_per_minute: Option<f64>,
    /// Visitors this instance let in during the second, as a rate a minute.
    pub admitted_per_minute: f64,
    /// The origin's median and 95th-percentile time to a response head in the
    /// second (ms), when it answered.
    pub origin_p50_ms: Option<f64>,
    /// See `origin_p50_ms`.
    pub origin_p95_ms: Option<f64>,
    /// Failed forwarded requests (5xx or no answer) out of all, in the second.
    pub origin_error_share: Option<f64>,
    /// About how long the last in line waits from now (s): the line over the
    /// outflow; `None` while nobody waits or nothing moves.
    pub wait_at_back_s: Option<f64>,
    /// Places in line handed out so far (room-wide).
    pub places_issued: u64,
    /// Places called in the second (this instance's pump).
    pub called: u64,
    /// Departed places passed over in the second.
    pub passed_over: u64,
    /// Tokens refused in the second.
    pub refused: u64,
    /// The room's mode: `open`, `paused`, `closed`, `scheduled`, `held`,
    /// `queue_all` or `passthrough`.
    pub mode: &'static str,
    /// Whether the store answered.
    pub store_up: bool,
}

/// The samples, shared between the sampler and the admin listener.
#[derive(Clone, Default)]
pub struct History(Arc<Mutex<VecDeque<Sample>>>);

impl History {
    /// The samples, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn push(&self, s: Sample) {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == KEEP {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// Takes a sample every [`EVERY`] until `shutdown`: the line's figures from
    /// `metrics` (its room's), the origin's from `origin` (the process's: every
    /// room forwards to the same origin).
    pub async fn run(
        self,
        admission: Admission,
        metrics: Metrics,
        origin: Metrics,
        mut shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let totals = |metrics: &Metrics| {
            let (mut line, origin) = (metrics.totals(), origin.totals());
            line.origin_answers = origin.origin_answers;
            line.origin_failures = origin.origin_failures;
            line.origin_no_answer = origin.origin_no_answer;
            line.origin_latency = origin.origin_latency;
            line
        };
        let mut before = totals(&metrics);
        let mut last = Sample::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let now = admission.clock().now_ms();
            let totals = totals(&metrics);
            // The pump's last snapshot: the history costs the store nothing.
            let fresh = admission
                .last_snapshot()
                .filter(|(at, _)| now.saturating_sub(*at) <= 2 * EVERY.as_millis() as u64);
            let mut s = match fresh {
                Some((_, snap)) => {
                    let set = snap.settings;
                    let moving = snap
                        .measured_per_minute
                        .unwrap_or(f64::from(set.new_users_per_minute));
                    Sample {
                        waiting: snap.queue_length,
                        active: snap.active_users,
                        max_active: set.max_active_users,
                        rate: set.new_users_per_minute,
                        measured_per_minute: snap.measured_per_minute,
                        wait_at_back_s: (snap.queue_length > 0 && moving > 0.0)
                            .then(|| snap.queue_length as f64 * 60.0 / moving),
                        places_issued: snap.places_issued,
                        mode: mode(&set, now),
                        store_up: true,
                        ..Sample::default()
                    }
                }
                // The room as last seen; this second's counters still count.
                None => Sample {
                    store_up: false,
                    ..last.clone()
                },
            };
            s.t = crate::clock::wall_ms();
            fill_deltas(&mut s, &before, &totals);
            before = totals;
            last = s.clone();
            self.push(s);
        }
    }
}

/// What the counters did between `a` and `b` (one second apart).
fn fill_deltas(s: &mut Sample, a: &Totals, b: &Totals) {
    let d = |x: u64, y: u64| y.saturating_sub(x);
    s.admitted_per_minute = d(a.admitted, b.admitted) as f64 * 60.0;
    s.called = d(a.called, b.called);
    s.passed_over = d(a.passed_over, b.passed_over);
    s.refused = d(a.refused, b.refused);
    let answers = d(a.origin_answers, b.origin_answers);
    let failures = d(a.origin_failures, b.origin_failures);
    let forwarded = answers + d(a.origin_no_answer, b.origin_no_answer);
    s.origin_error_share = (forwarded > 0).then(|| failures as f64 / forwarded as f64);
    let counts: Vec<(f64, u64)> = b
        .origin_latency
        .iter()
        .zip(a.origin_latency.iter().chain(std::iter::repeat(&(0.0, 0))))
        .map(|(&(bound, nb), &(_, na))| (bound, nb.saturating_sub(na)))
        .collect();
    s.origin_p50_ms = quantile(&counts, 0.5).map(|v| v * 1000.0);
    s.origin_p95_ms = quantile(&counts, 0.95).map(|v| v * 1000.0);
}

/// The `q` quantile of cumulative bucket counts `(upper bound, count)`, by linear
/// interpolation within the bucket it falls in; `None` without observations.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut lower = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            let inside = (count - lower.1).max(1) as f64;
            let share = (rank - lower.1 as f64) / inside;
            return Some(lower.0 + (bound - lower.0) * share.clamp(0.0, 1.0));
        }
        lower = (bound, count);
    }
    // Beyond the last bound: say the last bound.
    Some(lower.0)
}

fn mode(s: &crate::admission::line::Settings, now: u64) -> &'static str {
    use crate::admission::line::Gate;
    match s.gate(now) {
        Gate::Closed => "closed",
        Gate::Paused { .. } => "paused",
        Gate::Scheduled { .. } => "scheduled",
        Gate::Held { .. } => "held",
        Gate::Open if s.passthrough => "passthrough",
        Gate::Open if s.queue_all => "queue_all",
        Gate::Open => "open",
    }
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn quantiles_come_from_bucket_counts() {
        // 10 answers under 1 ms, 10 between 1 and 2 ms.
        let buckets = [(0.001, 10), (0.002, 20), (0.004, 20)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.001));
        let p95 = quantile(&buckets, 0.95).unwrap();
        assert!((p95 - 0.0019).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&[(0.001, 0)], 0.5), None);
        assert_eq!(quantile(&[], 0.5), None);
    }
}
