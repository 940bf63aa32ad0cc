//! Time as the admission logic sees it: milliseconds on a Unix-like scale.
//!
//! The clock reads tokio's `Instant`, so tests that pause tokio time
//! (`#[tokio::test(start_paused = true)]`) control it with `tokio::time::advance`.
//! The Unix offset is read once at construction so that values are comparable
//! across instances and restarts (tokens carry them).

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Milliseconds since the Unix epoch (as measured by [`Clock`]).
pub type Millis = u64;

/// A cheap, cloneable source of the current time in milliseconds.
#[derive(Clone, Debug)]
pub struct Clock {
    base_instant: Instant,
    base_unix_ms: Millis,
}

impl Clock {
    /// A clock that starts at the current wall-clock time and advances with tokio's clock.
    pub fn system() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or(0);
        Self::starting_at(base_unix_ms)
    }

    /// A clock that reads `unix_ms` now and advances with tokio's clock.
    pub fn starting_at(unix_ms: Millis) -> Self {
        Self {
            base_instant: Instant::now(),
            base_unix_ms: unix_ms,
        }
    }

    /// The current time in milliseconds.
    pub fn now_ms(&self) -> Millis {
        self.base_unix_ms + self.base_instant.elapsed().as_millis() as Millis
    }

    /// The current time in whole seconds (for JWT `iat`/`exp`).
    pub fn now_secs(&self) -> u64 {
        self.now_ms() / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = Clock::starting_at(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        tokio::time::advance(Duration::from_millis(2_500)).await;
        assert_eq!(clock.now_ms(), 3_500);
        assert_eq!(clock.now_secs(), 3);
    }
}
