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
        Self::starting_at(wall_ms())
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

/// The system's wall clock, in Unix milliseconds (0 if it is set before 1970).
pub fn wall_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Reads an RFC 3339 time in UTC (`2026-11-28T09:00:00Z`) as Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<Millis, String> {
    let t = humantime::parse_rfc3339(text.trim())
        .map_err(|e| format!("{e} (expected a UTC time like 2026-11-28T09:00:00Z)"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .map_err(|_| "before 1970".to_owned())
}

/// Writes Unix milliseconds as an RFC 3339 time in UTC, to the second.
pub fn format_rfc3339(ms: Millis) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// Serde for an optional time as RFC 3339 text (`null` for none).
pub mod rfc3339 {
    use super::Millis;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the time, or `null`.
    pub fn serialize<S: Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(ms) => s.serialize_str(&super::format_rfc3339(*ms)),
            None => s.serialize_none(),
        }
    }

    /// Reads a time, or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Millis>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_rfc3339(&text).map_err(serde::de::Error::custom))
            .transpose()
    }

    /// For a partial update: absent stays `None` (with `#[serde(default)]`), `null`
    /// is `Some(None)` (clear it), a time is `Some(Some(ms))`.
    pub fn deserialize_change<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<Millis>>, D::Error> {
        deserialize(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let ms = parse_rfc3339("2026-11-28T09:00:00Z").unwrap();
        assert_eq!(ms, 1_795_856_400_000);
        assert_eq!(format_rfc3339(ms), "2026-11-28T09:00:00Z");
        assert!(parse_rfc3339("tomorrow")
            .unwrap_err()
            .contains("expected a UTC time"));
    }
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
