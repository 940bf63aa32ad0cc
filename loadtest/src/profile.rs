//! Arrival profiles: when each visitor arrives, as offsets from the start.

use std::path::Path;

/// How arrivals are spread over the window.
#[derive(Clone, Debug, PartialEq)]
pub enum Profile {
    /// Evenly over the window.
    Uniform,
    /// Front-loaded like an opening: the arrival rate decays exponentially, so a
    /// quarter of the window holds about 64% of the arrivals and the start the peak.
    Spike,
    /// Replays arrival times (seconds from the start) read from a CSV trace.
    Trace(Vec<f64>),
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    /// A line is not a number of seconds.
    #[error("{file} line {line}: {text:?} is not a number of seconds")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What was there.
        text: String,
    },
    /// The trace has no arrivals.
    #[error("{0}: no arrivals")]
    Empty(String),
}

impl Profile {
    /// Its name in reports.
    pub fn name(&self) -> String {
        match self {
            Self::Uniform => "uniform".into(),
            Self::Spike => "spike".into(),
            Self::Trace(t) => format!("trace of {} arrivals", t.len()),
        }
    }
    /// Reads a trace: one arrival per line, seconds from the start in the first
    /// column; a header line and blank lines are skipped.
    pub fn read_trace(path: &Path) -> Result<Self, TraceError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TraceError::Io(file.clone(), e))?;
        Self::parse_trace(&text, &file)
    }

    /// Parses trace text (see [`Profile::read_trace`]).
    pub fn parse_trace(text: &str, file: &str) -> Result<Self, TraceError> {
        let mut times = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let first = line.split(',').next().unwrap_or("").trim();
            if first.is_empty() {
                continue;
            }
            match first.parse::<f64>() {
                Ok(t) if t.is_finite() && t >= 0.0 => times.push(t),
                _ if i == 0 => {} // a header
                _ => {
                    return Err(TraceError::Parse {
                        file: file.to_owned(),
                        line: i + 1,
                        text: first.to_owned(),
                    })
                }
            }
        }
        if times.is_empty() {
            return Err(TraceError::Empty(file.to_owned()));
        }
        times.sort_by(f64::total_cmp);
        Ok(Self::Trace(times))
    }

    /// Arrival offsets in seconds, sorted: `users` of them over `over` seconds
    /// (a trace brings its own count and times).
    pub fn schedule(&self, users: usize, over: f64) -> Vec<f64> {
        let u = |i: usize| (i as f64 + 0.5) / users as f64;
        match self {
            Self::Uniform => (0..users).map(|i| u(i) * over).collect(),
            Self::Spike => {
                let tau = over / 4.0;
                let mass = 1.0 - (-over / tau).exp();
                (0..users)
                    .map(|i| -tau * (1.0 - u(i) * mass).ln())
                    .collect()
            }
            Self::Trace(times) => times.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_spike_cover_the_window() {
        let u = Profile::Uniform.schedule(100, 10.0);
        assert_eq!(u.len(), 100);
        assert!((u[0] - 0.05).abs() < 1e-9 && (u[99] - 9.95).abs() < 1e-9);
        let s = Profile::Spike.schedule(10_000, 60.0);
        assert!(s.windows(2).all(|w| w[0] <= w[1]));
        assert!(s[9_999] < 60.0);
        let first_quarter = s.iter().filter(|t| **t < 15.0).count();
        assert!((6_400..=6_480).contains(&first_quarter), "{first_quarter}");
        let first_second = s.iter().filter(|t| **t < 1.0).count();
        assert!(
            first_second > 3 * 10_000 / 60, // about four times the average rate
            "the start is the peak: {first_second}"
        );
    }

    #[test]
    fn traces_parse_with_header_and_refuse_garbage() {
        let p = Profile::parse_trace("arrival_s,comment\n0.5,a\n\n0.25\n2\n", "t.csv").unwrap();
        assert_eq!(p.schedule(0, 0.0), vec![0.25, 0.5, 2.0]);
        let e = Profile::parse_trace("0.1\nsoon\n", "t.csv")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "t.csv line 2: \"soon\" is not a number of seconds");
        assert!(Profile::parse_trace("header\n", "t.csv").is_err());
        assert!(Profile::parse_trace("-1\n", "t.csv").is_err());
    }
}
