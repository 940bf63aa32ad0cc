//! The embedded store: the line in this process's memory.

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

    fn line(&self) -> MutexGuard<'_, Line> {
        // A panic while holding the lock would be a bug in `Line`; its state is still
        // the best we have, so keep serving rather than poisoning every request.
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }
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
