//! The embedded store: the line in this process's memory.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::admission::line::{
    Arrival, Line, Poll, PumpReport, Settings, SettingsPatch, Snapshot, Timing,
};
use crate::clock::Millis;

/// A [`Store`] holding the line in memory.
///
/// A std `Mutex` is right here: every operation is a short, synchronous update of
/// the line and the lock is never held across an `.await`.
#[derive(Clone)]
pub struct MemoryStore {
    line: Arc<Mutex<Line>>,
    line_id: u64,
}

impl MemoryStore {
    /// An empty line with these timings and initial settings.
    pub fn new(timing: Timing, settings: Settings) -> Self {
        Self {
            line: Arc::new(Mutex::new(Line::new(timing, settings))),
            // 53 bits, so the id stays exact in JSON numbers.
            line_id: rand::random::<u64>() >> 11,
        }
    }

    /// The store saved in `dir` by [`MemoryStore::save`], or a new one when there is
    /// none. Settings changed at run time survive; timings come from `timing`.
    pub fn load_or_new(dir: &Path, timing: Timing, settings: Settings) -> Result<Self, StateError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::new(timing, settings))
            }
            Err(e) => return Err(StateError::Io(path.display().to_string(), e)),
        };
        let saved: Saved = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Invalid(path.display().to_string(), e.to_string()))?;
        Ok(Self {
            line: Arc::new(Mutex::new(saved.line.restored(timing))),
            line_id: saved.line_id,
        })
    }

    /// Writes the line to `dir` atomically (a temporary file, then a rename), so a
    /// restart continues the same line: places, calls and sessions.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let saved = SavedRef {
            line_id: self.line_id,
            line: &self.line().clone(),
        };
        let bytes = serde_json::to_vec(&saved).expect("the line serializes");
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        let io = |e| StateError::Io(path.display().to_string(), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    fn line(&self) -> MutexGuard<'_, Line> {
        // A panic while holding the lock would be a bug in `Line`; its state is still
        // the best we have, so keep serving rather than poisoning every request.
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state file in the state directory.
pub const STATE_FILE: &str = "line.json";

/// Why the saved line could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file {0}: {1}")]
    Io(String, std::io::Error),
    /// The file is not a saved line.
    #[error("state file {0} is not a saved line ({1}); move it away to start a new line")]
    Invalid(String, String),
}

#[derive(serde::Deserialize)]
struct Saved {
    line_id: u64,
    line: Line,
}

#[derive(serde::Serialize)]
struct SavedRef<'a> {
    line_id: u64,
    line: &'a Line,
}

#[async_trait]
impl Store for MemoryStore {
    fn line_id(&self) -> u64 {
        self.line_id
    }

    async fn arrive(&self, now: Millis) -> Result<Arrival, StoreError> {
        Ok(self.line().arrive(now))
    }

    async fn poll(&self, seq: u64, now: Millis) -> Result<Poll, StoreError> {
        Ok(self.line().poll(seq, now))
    }

    async fn touch_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError> {
        Ok(self.line().touch_session(sid, now))
    }

    async fn pump(&self, now: Millis) -> Result<PumpReport, StoreError> {
        Ok(self.line().pump(now))
    }

    async fn snapshot(&self, now: Millis) -> Result<Snapshot, StoreError> {
        Ok(self.line().snapshot(now))
    }

    async fn update_settings(&self, patch: SettingsPatch) -> Result<Settings, StoreError> {
        Ok(self.line().update(patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::line::Arrival;

    fn settings() -> Settings {
        Settings {
            new_users_per_minute: 60,
            max_active_users: 1,
            paused: false,
            closed: false,
            opens_at: None,
        }
    }

    #[tokio::test]
    async fn a_saved_line_comes_back_whole_and_a_broken_file_is_refused() {
        let dir = std::env::temp_dir().join(format!("waitroom-state-{}", rand::random::<u64>()));
        let store = MemoryStore::load_or_new(&dir, Timing::default(), settings()).unwrap();
        let Arrival::Admitted { sid } = store.arrive(1_000).await.unwrap() else {
            panic!()
        };
        let Arrival::Queued { seq, .. } = store.arrive(1_000).await.unwrap() else {
            panic!()
        };
        store.save(&dir).unwrap();

        let again = MemoryStore::load_or_new(&dir, Timing::default(), settings()).unwrap();
        assert_eq!(again.line_id(), store.line_id());
        assert!(again.touch_session(sid, 2_000).await.unwrap());
        let Poll::Waiting(w) = again.poll(seq, 2_000).await.unwrap() else {
            panic!()
        };
        assert_eq!(w.position, 1);

        std::fs::write(dir.join(STATE_FILE), b"{\"line_id\": 1}").unwrap();
        let e = MemoryStore::load_or_new(&dir, Timing::default(), settings())
            .err()
            .unwrap();
        assert!(e.to_string().contains("is not a saved line"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
