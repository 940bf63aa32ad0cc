//! Where the queue state lives: one trait, one backend per kind of store.
//!
//! Every method is one atomic operation on the shared state of a waiting room:
//! two callers (tasks, or instances sharing a Redis) never interleave inside one.
//! The semantics are those of [`crate::admission::line::Line`]; backends differ in
//! where the state lives and in how they fail. Time is always passed in, so every
//! instance sharing a store decides with its own clock and tests control it.
//!
//! On failure a method returns [`StoreError`] and changes nothing; the caller
//! decides what the visitor sees (never a 5xx for it).

pub mod journal;
pub mod memory;
pub mod redis;
pub mod view;

use async_trait::async_trait;

use crate::admission::line::{Arrival, Poll, PumpReport, Settings, SettingsPatch, Snapshot};
use crate::clock::Millis;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The queue state of one waiting room.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Identifies this line: random when the line's state is created, kept as long
    /// as the state is. Tokens carry it, so a place number from another line (say,
    /// before a restart that lost the state) is never taken for someone else's.
    fn line_id(&self) -> u64;
    /// How long a session lasts without a request.
    fn session_ms(&self) -> Millis;
    /// The line's time when this instance's clock says `local` (a shared line keeps
    /// one clock; see [`redis`]).
    fn line_time(&self, local: Millis) -> Millis {
        local
    }
    /// How often each instance should pump (each round is one store operation).
    fn pump_every(&self) -> std::time::Duration {
        crate::admission::PUMP_EVERY
    }
    /// A newcomer arrives: admitted at once or given the next place.
    async fn arrive(&self, now: Millis) -> Result<Arrival, StoreError>;
    /// A newcomer is given the next place, kept for them until they check in
    /// (counted nowhere until then); never admitted at once, but under
    /// `passthrough`: see [`crate::admission::line::Line::arrive_kept`].
    async fn arrive_kept(&self, now: Millis) -> Result<Arrival, StoreError>;
    /// The holder of place `seq` checks in; renews their deadline.
    async fn poll(&self, seq: u64, now: Millis) -> Result<Poll, StoreError>;
    /// The holder of session `sid` comes back after it lapsed: see [`crate::admission::line::Line::rejoin`]
    /// (admitted while it is alive; otherwise first in line for a while).
    async fn rejoin(&self, sid: u64, now: Millis) -> Result<Poll, StoreError>;
    /// An admitted holder makes a request; `false` when the session has lapsed.
    async fn touch_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError>;
    /// The origin ends session `sid` (`waitroom-command: release` or `revoke`): its
    /// slot is free at once and the session is no longer alive anywhere the store
    /// is shared. `true` when it was alive.
    async fn end_session(&self, sid: u64, now: Millis) -> Result<bool, StoreError>;
    /// Advances the line under both limits. Safe to call from many places at once.
    async fn pump(&self, now: Millis) -> Result<PumpReport, StoreError>;
    /// The line as operators see it.
    async fn snapshot(&self, now: Millis) -> Result<Snapshot, StoreError>;
    /// Holds the line for a failing origin: nobody is called for `for_ms` from now
    /// (an instance's circuit breaker is open); a later hold wins.
    async fn hold(&self, for_ms: Millis, now: Millis) -> Result<Settings, StoreError>;
    /// Changes the run-time settings for everybody sharing the store, at `now`.
    async fn update_settings(
        &self,
        patch: SettingsPatch,
        now: Millis,
    ) -> Result<Settings, StoreError>;
    /// Notes that instance `id` is alive, described by `info` (JSON), at `now`:
    /// in a shared store every instance lists the others (see
    /// [`Store::instances`]). A store of one instance keeps nothing.
    async fn announce(&self, id: &str, info: &str, now: Millis) -> Result<(), StoreError> {
        let _ = (id, info, now);
        Ok(())
    }
    /// What the instances sharing the store announced in the last `within` ms
    /// before `now` (those silent for much longer are forgotten).
    async fn instances(&self, now: Millis, within: Millis) -> Result<Vec<String>, StoreError> {
        let _ = (now, within);
        Ok(Vec::new())
    }
    /// The room's event as stored (see [`crate::event`]), if it has one.
    async fn event(&self) -> Result<Option<String>, StoreError>;
    /// Replaces the room's event with `new` (`None`: removes it) if it is still
    /// `expected`; `false` (and nothing changed) when another caller changed it
    /// first. Every instance sharing the store sees the same event.
    async fn swap_event(
        &self,
        expected: Option<&str>,
        new: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// The operator's notice on the queue page (JSON, see
    /// [`crate::queue_page::notice`]), if there is one.
    async fn notice(&self) -> Result<Option<String>, StoreError>;
    /// Puts up the operator's notice (`None`: takes it down), for every instance
    /// sharing the store.
    async fn set_notice(&self, notice: Option<&str>) -> Result<(), StoreError>;
}
