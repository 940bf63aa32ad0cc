//! What the run's numbers mean, computed from what visitors saw (never from the
//! server's own counters): waits, ETA accuracy, FIFO order, admission rate.

/// The `q` quantile (0..=1) of `values` (nearest rank); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Relative errors of the ETA shown at arrival against the wait that followed:
/// `|shown - real| / real` for each visitor who waited (real wait > 0).
pub fn eta_errors(pairs: &[(f64, f64)]) -> Vec<f64> {
    pairs
        .iter()
        .filter(|(_, real)| *real > 0.0)
        .map(|(shown, real)| (shown - real).abs() / real)
        .collect()
}

/// The wait a queue page shows for an estimate of `eta` seconds, as `(from, to)`
/// seconds: "less than a minute" below 60 s, otherwise whole minutes from 20% below
/// the estimate to 25% above it.
pub fn shown_range(eta: f64) -> (f64, f64) {
    if eta < 60.0 {
        return (0.0, 60.0);
    }
    let low = (eta * 0.8 / 60.0).floor().max(1.0);
    let high = (eta * 1.25 / 60.0).ceil();
    (low * 60.0, high * 60.0)
}

/// The share of `(eta shown, real wait)` pairs whose real wait fell inside the range
/// the page showed; `None` when nobody waited.
pub fn within_shown_range(pairs: &[(f64, f64)]) -> Option<f64> {
    if pairs.is_empty() {
        return None;
    }
    let inside = pairs
        .iter()
        .filter(|(eta, real)| {
            let (from, to) = shown_range(*eta);
            (from..=to).contains(real)
        })
        .count();
    Some(inside as f64 / pairs.len() as f64)
}

/// FIFO inversions: pairs where one visitor arrived at least `gap` seconds before
/// another and was admitted more than `slack` seconds after them.
///
/// `visits` are `(arrived, admitted)`. O(n log n): sorted by arrival, a Fenwick
/// tree over admission ranks counts earlier arrivals admitted late.
pub fn fifo_inversions(visits: &[(f64, f64)], gap: f64, slack: f64) -> u64 {
    let mut by_arrival = visits.to_vec();
    by_arrival.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut admitted: Vec<f64> = visits.iter().map(|v| v.1).collect();
    admitted.sort_by(f64::total_cmp);
    let rank = |t: f64| admitted.partition_point(|x| *x <= t); // 1-based count ≤ t
    let mut tree = vec![0u64; admitted.len() + 1];
    let add = |tree: &mut Vec<u64>, mut i: usize| {
        while i < tree.len() {
            tree[i] += 1;
            i += i & i.wrapping_neg();
        }
    };
    let prefix = |tree: &Vec<u64>, mut i: usize| {
        let mut s = 0;
        while i > 0 {
            s += tree[i];
            i &= i - 1;
        }
        s
    };
    let mut inserted = 0u64;
    let mut k = 0;
    let mut inversions = 0;
    for &(arrived, adm) in &by_arrival {
        while k < by_arrival.len() && by_arrival[k].0 <= arrived - gap {
            add(&mut tree, rank(by_arrival[k].1));
            inserted += 1;
            k += 1;
        }
        // Earlier arrivals admitted after `adm + slack`.
        inversions += inserted - prefix(&tree, rank(adm + slack));
    }
    inversions
}

/// Admissions per second after the line formed: the span between the 10th and
/// 90th percentile of the admission times of visitors who waited.
pub fn admission_rate(admitted_after_waiting: &[f64]) -> Option<f64> {
    let mut t = admitted_after_waiting.to_vec();
    if t.len() < 10 {
        return None;
    }
    t.sort_by(f64::total_cmp);
    let (lo, hi) = (t.len() / 10, t.len() * 9 / 10);
    let span = t[hi] - t[lo];
    (span > 0.0).then(|| (hi - lo) as f64 / span)
}

/// Counts events per whole second, over `seconds` buckets.
pub fn per_second(times: impl IntoIterator<Item = f64>, seconds: usize) -> Vec<u32> {
    let mut out = vec![0; seconds];
    for t in times {
        if t >= 0.0 && (t as usize) < seconds {
            out[t as usize] += 1;
        }
    }
    out
}

/// How many are inside `[enter, leave)` at each whole second.
pub fn occupancy(spans: impl IntoIterator<Item = (f64, f64)>, seconds: usize) -> Vec<u32> {
    let mut delta = vec![0i64; seconds + 1];
    for (enter, leave) in spans {
        let a = (enter.max(0.0).ceil() as usize).min(seconds);
        let b = (leave.max(0.0).ceil() as usize).min(seconds);
        if a < b {
            delta[a] += 1;
            delta[b] -= 1;
        }
    }
    let mut now = 0i64;
    delta[..seconds]
        .iter()
        .map(|d| {
            now += d;
            now as u32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(quantile(&v, 0.5), Some(3.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(5.0));
        assert_eq!(quantile(&v, 0.95), Some(5.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_range_shown_is_the_pages() {
        assert_eq!(shown_range(20.0), (0.0, 60.0));
        assert_eq!(shown_range(300.0), (240.0, 420.0));
        let share =
            within_shown_range(&[(300.0, 250.0), (300.0, 430.0), (20.0, 45.0), (20.0, 65.0)]);
        assert_eq!(share, Some(0.5));
        assert_eq!(within_shown_range(&[]), None);
    }

    #[test]
    fn eta_error_is_relative_to_the_real_wait() {
        // Shown 60 s, waited 40 s: 50% too long. Shown 30, waited 40: 25% too short.
        let e = eta_errors(&[(60.0, 40.0), (30.0, 40.0), (10.0, 10.0), (5.0, 0.0)]);
        assert_eq!(e, vec![0.5, 0.25, 0.0]);
        assert_eq!(quantile(&e, 0.5), Some(0.25));
    }

    #[test]
    fn fifo_inversions_on_hand_made_crowds() {
        // In order: none.
        let ordered = [(0.0, 10.0), (1.0, 11.0), (2.0, 12.0)];
        assert_eq!(fifo_inversions(&ordered, 1.0, 2.0), 0);
        // A arrived 2 s before B but got in 5 s after B: one inversion.
        let one = [(0.0, 20.0), (2.0, 15.0), (3.0, 21.0)];
        assert_eq!(fifo_inversions(&one, 1.0, 2.0), 1);
        // Within the slack, or arrivals too close together: not counted.
        let close = [(0.0, 16.0), (2.0, 15.0), (5.0, 30.0), (5.5, 20.0)];
        assert_eq!(fifo_inversions(&close, 1.0, 2.0), 0);
        // Fully reversed, 4 visitors 1 s apart, 10 s between admissions: 6 pairs.
        let reversed = [(0.0, 40.0), (1.0, 30.0), (2.0, 20.0), (3.0, 10.0)];
        assert_eq!(fifo_inversions(&reversed, 1.0, 2.0), 6);
        // Brute force agrees on a scrambled crowd.
        let crowd: Vec<(f64, f64)> = (0..200)
            .map(|i| (i as f64 * 0.1, ((i * 37) % 200) as f64 * 0.3))
            .collect();
        let mut brute = 0;
        for a in &crowd {
            for b in &crowd {
                if a.0 + 1.0 <= b.0 && a.1 > b.1 + 2.0 {
                    brute += 1;
                }
            }
        }
        assert_eq!(fifo_inversions(&crowd, 1.0, 2.0), brute);
    }

    #[test]
    fn admission_rate_between_deciles() {
        let t: Vec<f64> = (0..101).map(|i| i as f64 * 0.05).collect(); // 20/s
        let r = admission_rate(&t).unwrap();
        assert!((r - 20.0).abs() < 1e-9, "{r}");
        assert_eq!(admission_rate(&t[..5]), None);
    }

    #[test]
    fn series_per_second() {
        assert_eq!(per_second([0.1, 0.9, 1.5, 9.0], 3), vec![2, 1, 0]);
        assert_eq!(
            occupancy([(0.5, 2.5), (1.0, 1.5), (2.0, 10.0)], 4),
            vec![0, 2, 2, 1]
        );
    }
}
