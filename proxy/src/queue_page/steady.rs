//! A steady, honest wait estimate: what the page shows, given what it showed before.
//!
//! The line's own estimate (position ÷ the outflow measured over the last minute)
//! moves with every wave of admissions: standing still between two waves, a
//! visitor would see "4 to 8 minutes" turn into "6 to 11" within seconds, and a
//! screen reader would read each change out. The page therefore tells the status
//! poll what it showed (`?shown=ETA&shown_ago=MS&pos=P&said_ago=MS`, see
//! [`Before::from_query`]) and gets back:
//!
//! - **the estimate**: never more than the one shown before while the visitor
//!   moves forward (a line bound by its capacity admits in waves as sessions end:
//!   the measured outflow swings, the place only falls); nor, standing still,
//!   unless the line's own estimate is worse by more than a quarter and a minute
//!   (the outflow truly dropped: a lower rate, a slow origin, a held line); and
//!   never less than the one shown before minus the time since: it counts down as
//!   the wait passes, following the line's estimate when that is in between, so
//!   one lucky or unlucky measurement of the outflow neither raises nor drops it;
//! - **whether to announce it** to screen readers: when the place has moved into
//!   another band (1, 2, 3–5, 6–10, 11–20, 21–50, 51–100, …) or the estimate by a
//!   minute or more, and at most once a minute.
//!
//! What the page says about itself is the visitor's own business: a made-up
//! `shown` only changes what that visitor's page shows, never the line.

/// How much worse the line's estimate must be than the one shown before it is
/// shown: a quarter ([`WORSE_NUM`] / [`WORSE_DEN`]) and [`WORSE_SECS`].
const WORSE_NUM: u64 = 5;
const WORSE_DEN: u64 = 4;
const WORSE_SECS: u64 = 60;
/// The least time between two announcements within one band.
const ANNOUNCE_EVERY_MS: u64 = 60_000;
/// The change of the estimate worth announcing.
const ANNOUNCE_STEP_SECS: u64 = 60;
/// The lowest place of each band.
const BANDS: [u64; 16] = [
    1, 2, 3, 6, 11, 21, 51, 101, 201, 501, 1_001, 2_001, 5_001, 10_001, 20_001, 50_001,
];

/// What the page showed before, as its poll tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Before {
    /// The estimate shown, in seconds.
    pub eta_seconds: u64,
    /// How long ago the page got that estimate.
    pub shown_ms_ago: u64,
    /// The place shown.
    pub position: u64,
    /// How long ago the page last announced the place and estimate to screen readers.
    pub said_ms_ago: u64,
}

impl Before {
    /// What the page says it showed: `shown`, `shown_ago`, `pos` and `said_ago` in
    /// the query of `uri` (all four, as decimal numbers), else nothing.
    pub fn from_query(uri: &http::Uri) -> Option<Self> {
        let number = |key: &str| crate::http::query_param(uri, key)?.parse::<u64>().ok();
        Some(Self {
            eta_seconds: number("shown")?,
            shown_ms_ago: number("shown_ago")?,
            position: number("pos")?,
            said_ms_ago: number("said_ago")?,
        })
    }
}

/// What the page shows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Told {
    /// The estimate to show, in seconds.
    pub eta_seconds: u64,
    /// Whether to read the place and the estimate out to screen readers.
    pub announce: bool,
}

/// The band of place `position` (see the module's documentation).
pub fn band(position: u64) -> usize {
    BANDS.iter().take_while(|low| **low <= position).count()
}

/// What to show for the line's estimate `eta_seconds` at place `position`, after
/// `before` (nothing: the first status the page gets, shown as it is and not
/// announced: the page itself was just read).
pub fn steady(before: Option<Before>, eta_seconds: u64, position: u64) -> Told {
    let Some(before) = before else {
        return Told {
            eta_seconds,
            announce: false,
        };
    };
    let truly_worse = position >= before.position
        && eta_seconds
            > (before.eta_seconds.saturating_mul(WORSE_NUM) / WORSE_DEN).saturating_add(WORSE_SECS);
    let counted_down = before
        .eta_seconds
        .saturating_sub(before.shown_ms_ago / 1000);
    let shown = if truly_worse {
        eta_seconds
    } else {
        eta_seconds.clamp(counted_down, before.eta_seconds)
    };
    let moved_band = band(position) != band(before.position);
    let moved_much = shown.abs_diff(before.eta_seconds) >= ANNOUNCE_STEP_SECS;
    Told {
        eta_seconds: shown,
        announce: (moved_band || moved_much) && before.said_ms_ago >= ANNOUNCE_EVERY_MS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::line::{Flow, Settings, Timing};
    use crate::admission::outflow::Outflow;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bands_grow_with_the_place() {
        assert_eq!(band(1), 1);
        assert_eq!(band(2), 2);
        assert_eq!((band(3), band(5)), (3, 3));
        assert_eq!((band(6), band(10), band(11)), (4, 4, 5));
        assert_eq!(band(1_000_000), BANDS.len());
    }

    #[test]
    fn reads_what_the_page_showed_and_nothing_else() {
        let uri = |q: &str| q.parse::<http::Uri>().unwrap();
        let b = Before::from_query(&uri(
            "/_waitroom/status?room=x&shown=300&shown_ago=5000&pos=12&said_ago=61000",
        ));
        assert_eq!(
            b,
            Some(Before {
                eta_seconds: 300,
                shown_ms_ago: 5_000,
                position: 12,
                said_ms_ago: 61_000
            })
        );
        for q in [
            "/_waitroom/status",
            "/_waitroom/status?",
            "/_waitroom/status?shown=300&shown_ago=1&pos=12",
            "/_waitroom/status?shown=-1&shown_ago=1&pos=1&said_ago=0",
            "/_waitroom/status?shown=1e9&shown_ago=1&pos=1&said_ago=0",
        ] {
            assert_eq!(Before::from_query(&uri(q)), None, "{q:?}");
        }
    }

    /// The moments the line calls someone in: at `per_minute(ms)` a minute, each
    /// call up to `jitter_ms` late (the pump's rounds, a claim's slot), from 0 to
    /// `end`, with `burst` calls at once when the line forms.
    fn even_calls(
        end: u64,
        per_minute: impl Fn(u64) -> f64,
        jitter_ms: u64,
        burst: u64,
    ) -> Vec<u64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(jitter_ms ^ end);
        let mut calls = vec![0; burst as usize];
        let mut t = 0.0f64;
        while (t as u64) < end {
            t += 60_000.0 / per_minute(t as u64);
            calls.push(t as u64 + rng.random_range(0..=jitter_ms));
        }
        calls.sort_unstable();
        calls
    }

    /// Calls in waves of `per_wave` every `every_ms` (capacity freed in batches).
    fn waves(end: u64, every_ms: u64, per_wave: usize) -> Vec<u64> {
        (1..=end / every_ms)
            .flat_map(|k| std::iter::repeat_n(k * every_ms, per_wave))
            .collect()
    }

    /// What one visitor's page shows, polling as told, from `start` (at `place`) to
    /// `end` while the line calls people in at `calls` (the room's rate: 10 a
    /// minute). Returns `(ms, place, the line's estimate, shown, announced)` per poll.
    fn watch(place: u64, start: u64, end: u64, calls: &[u64]) -> Vec<(u64, u64, u64, u64, bool)> {
        let (timing, settings) = (Timing::default(), Settings::open(10, 1_000_000));
        let mut outflow = Outflow::default();
        outflow.line_present(true, 0);
        let mut ahead = place - 1;
        let mut calls = calls.iter().peekable();
        let (mut before, mut said_at, mut shown_at) = (None::<Before>, start, start);
        let mut seen = Vec::new();
        let mut ms = start;
        while ms < end {
            while let Some(&&call) = calls.peek() {
                if call > ms {
                    break;
                }
                calls.next();
                outflow.record(call);
                if call >= start {
                    ahead = ahead.saturating_sub(1);
                }
            }
            let flow = Flow {
                measured_per_sec: outflow.per_second(ms),
                active: 0,
            };
            let w = timing.wait(ahead + 1, flow, &settings, ms);
            let line = w.eta_ms.div_ceil(1000);
            let told = steady(
                before.map(|b| Before {
                    shown_ms_ago: ms - shown_at,
                    said_ms_ago: ms - said_at,
                    ..b
                }),
                line,
                ahead + 1,
            );
            if told.announce {
                said_at = ms;
            }
            shown_at = ms;
            seen.push((ms, ahead + 1, line, told.eta_seconds, told.announce));
            before = Some(Before {
                eta_seconds: told.eta_seconds,
                shown_ms_ago: 0,
                position: ahead + 1,
                said_ms_ago: 0,
            });
            ms += w.poll_after_ms;
        }
        seen
    }

    fn never_worse_and_rarely_announced(seen: &[(u64, u64, u64, u64, bool)], what: &str) {
        assert!(seen.len() >= 25, "{what}: {} polls", seen.len());
        for pair in seen.windows(2) {
            let ((_, _, _, a, _), (ms, place, raw, b, _)) = (pair[0], pair[1]);
            assert!(
                b <= a,
                "{what}: at {ms} ms, place {place}: shown {a} then {b} s (line: {raw} s)"
            );
        }
        let raw_rose = seen.windows(2).filter(|p| p[1].2 > p[0].2).count();
        assert!(
            raw_rose > 0,
            "{what}: the line's own estimate never rose: nothing tested"
        );
        let announced: Vec<_> = seen.iter().filter(|s| s.4).collect();
        for pair in announced.windows(2) {
            let ((a, ..), (b, ..)) = (pair[0], pair[1]);
            assert!(
                b - a >= ANNOUNCE_EVERY_MS,
                "{what}: announced at {a} and {b} ms"
            );
        }
    }

    #[test]
    fn a_steady_outflow_never_makes_the_shown_estimate_worse() {
        let end = 20 * 60_000;
        // 10 a minute, each call up to 3 s late, for a visitor arriving after ten
        // minutes of line.
        let calls = even_calls(end, |_| 10.0, 3_000, 0);
        never_worse_and_rarely_announced(&watch(60, 600_000, end, &calls), "rate-bound");
        // 10 a minute in waves of 4 every 24 s (capacity freed in batches).
        let calls = waves(end, 24_000, 4);
        let seen = watch(60, 600_000, end, &calls);
        never_worse_and_rarely_announced(&seen, "in waves");
        assert!(seen.iter().any(|s| s.4), "never announced at all");
        // Place 10, 5 s after the line formed with a burst of 10 at once: the
        // measured outflow falls from the burst's over the first minute.
        let calls = even_calls(end, |_| 10.0, 1_000, 10);
        never_worse_and_rarely_announced(&watch(10, 5_000, 120_000, &calls), "a new line");
    }

    #[test]
    fn a_line_bound_by_its_capacity_never_shows_more_while_the_place_falls() {
        // Four sessions at once that end together: the line moves in waves of 4,
        // at uneven gaps (20 s to 70 s: sessions renewed by the people using the
        // site), and the measured outflow swings with them.
        let end = 40 * 60_000;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut calls = Vec::new();
        let mut t = 0;
        while t < end {
            t += rng.random_range(20_000..70_000);
            calls.extend(std::iter::repeat_n(t, 4));
        }
        let seen = watch(40, 600_000, end, &calls);
        for pair in seen.windows(2) {
            let ((_, pa, _, a, _), (ms, pb, raw, b, _)) = (pair[0], pair[1]);
            if pb < pa {
                assert!(
                    b <= a,
                    "at {ms} ms: place {pa} → {pb}, shown {a} → {b} s (line {raw} s)"
                );
            }
        }
        let announced: Vec<u64> = seen.iter().filter(|s| s.4).map(|s| s.0).collect();
        assert!(!announced.is_empty());
        assert!(
            announced
                .windows(2)
                .all(|p| p[1] - p[0] >= ANNOUNCE_EVERY_MS),
            "{announced:?}"
        );
    }

    #[test]
    fn an_outflow_that_truly_drops_makes_it_worse_soon() {
        // 10 a minute, then nobody for five minutes (the line held), then 3 a minute.
        let end = 30 * 60_000;
        let calls: Vec<u64> = even_calls(end, |ms| if ms < 660_000 { 10.0 } else { 3.0 }, 1_000, 0)
            .into_iter()
            .filter(|c| !(660_000..960_000).contains(c))
            .collect();
        let seen = watch(100, 600_000, end, &calls);
        let first = seen.first().unwrap().3;
        let most = seen.iter().map(|s| s.3).max().unwrap();
        assert!(
            most > first + WORSE_SECS,
            "shown {first} s at first, {most} s at most"
        );
        // Announced when it shows, or at the latest a minute after the last one.
        let rose = seen.windows(2).find(|p| p[1].3 > p[0].3).unwrap()[1].0;
        assert!(
            seen.iter()
                .any(|s| s.4 && (rose..=rose + ANNOUNCE_EVERY_MS + 20_000).contains(&s.0)),
            "the worse estimate from {rose} ms was not announced"
        );
    }
}
