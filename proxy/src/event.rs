//! Events: a pre-queue, an opening (by lot or in arrival order), optionally an
//! end, and optionally the event's own rate, capacity and page text.
//!
//! An event lives in the store beside the line ([`Store::event`]), so every
//! instance sharing it runs the same one. Each instance's [`run`] task moves it
//! along; each step is taken once, by whichever instance swaps the stored event
//! first ([`Store::swap_event`]), and that instance then changes the line's
//! settings:
//!
//! - **scheduled** → at `prequeue_at`, **pre-queue**: the settings in force are
//!   kept in the event (to come back to), and the line is scheduled to open at
//!   `opens_at` (a lottery if `lottery`), with the event's rate and capacity.
//!   Everybody arriving now takes a place and sees a countdown.
//! - **pre-queue** → at `opens_at`, **open**: the line opens by itself.
//! - **open** → at `ends_at` (if any), **ended**: the kept settings come back,
//!   and with `after = "close"` the room closes.
//!
//! Settings an operator changes during the event hold until its end. Cancelling
//! an event under way puts the kept settings back at once.

use crate::queue_page::notice::Notice;
use serde::{Deserialize, Serialize};

use crate::admission::line::{Settings, SettingsPatch};
use crate::admission::Admission;
use crate::clock::Millis;
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};

/// Where an event stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before its pre-queue: the room runs as it did.
    #[default]
    Scheduled,
    /// Everybody arriving takes a place and waits for the opening.
    PreQueue,
    /// Opened: the line moves.
    Open,
    /// Over: the kept settings are back (or the room is closed).
    Ended,
}

/// What the room does at the event's end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum After {
    /// Back to the settings in force before the pre-queue.
    #[default]
    Normal,
    /// Those settings, and the room closed.
    Close,
}

/// The settings an event changes, as they were before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    new_users_per_minute: u32,
    max_active_users: u32,
    lottery: bool,
    #[serde(with = "crate::clock::rfc3339", default)]
    opens_at: Option<Millis>,
}

/// The longest page text an event may have.
pub const MAX_MESSAGE: usize = 500;

/// An event, as the admin API takes it and the store keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When everybody arriving starts taking a place (RFC 3339); left out: now.
    #[serde(with = "crate::clock::rfc3339", default)]
    pub prequeue_at: Option<Millis>,
    /// The opening (RFC 3339).
    #[serde(with = "crate::clock::rfc3339", default)]
    pub opens_at: Option<Millis>,
    /// The end (RFC 3339), if it has one.
    #[serde(with = "crate::clock::rfc3339", default)]
    pub ends_at: Option<Millis>,
    /// Its own rate from the pre-queue on, if not the room's.
    #[serde(default)]
    pub new_users_per_minute: Option<u32>,
    /// Its own capacity from the pre-queue on, if not the room's.
    #[serde(default)]
    pub max_active_users: Option<u32>,
    /// Whether the pre-queue is drawn by lot at the opening.
    #[serde(default)]
    pub lottery: bool,
    /// A text the queue page shows during the event (any language the operator
    /// writes it in).
    #[serde(default)]
    pub message: Option<String>,
    /// What the room does at the end.
    #[serde(default)]
    pub after: After,
    /// Where it stands (the store's; ignored in what the API is given).
    #[serde(default)]
    pub phase: Phase,
    /// The settings before the pre-queue (the store's; ignored likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

impl Event {
    /// Checks an event given to the admin API at wall time `now` and makes it a
    /// new one (scheduled, nothing kept); the reason when it cannot be run.
    pub fn validated(mut self, now: Millis) -> Result<Self, String> {
        let opens = self.opens_at.ok_or("opens_at: missing")?;
        let prequeue = *self.prequeue_at.get_or_insert(now.min(opens));
        if prequeue > opens {
            return Err("prequeue_at: must not be after opens_at".into());
        }
        if opens > crate::config::latest_opening(now) {
            return Err("opens_at: must be at most a year from now".into());
        }
        if self.ends_at.is_some_and(|end| end <= opens) {
            return Err("ends_at: must be after opens_at".into());
        }
        if self.ends_at.is_some_and(|end| end <= now) {
            return Err("ends_at: must be in the future".into());
        }
        if self.new_users_per_minute == Some(0) || self.max_active_users == Some(0) {
            return Err("new_users_per_minute, max_active_users: must be at least 1".into());
        }
        for (key, n) in [
            ("new_users_per_minute", self.new_users_per_minute),
            ("max_active_users", self.max_active_users),
        ] {
            if let Some(n) = n.filter(|&n| n > crate::config::MAX_LIMIT) {
                return Err(format!("{key}: {}", crate::config::beyond_any_site(n)));
            }
        }
        if let Some(m) = &self.message {
            if m.chars().count() > MAX_MESSAGE {
                return Err(format!("message: at most {MAX_MESSAGE} characters"));
            }
        }
        self.phase = Phase::Scheduled;
        self.kept = None;
        Ok(self)
    }

    /// Whether it is under way: the line's settings are the event's.
    pub fn under_way(&self) -> bool {
        matches!(self.phase, Phase::PreQueue | Phase::Open)
    }

    /// The page text to show now, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref().filter(|_| self.under_way())
    }

    /// The phase due at `now`, if it moves on.
    fn due(&self, now: Millis) -> Option<Phase> {
        let opens = self.opens_at?;
        match self.phase {
            Phase::Scheduled if now >= self.prequeue_at.unwrap_or(0) => Some(Phase::PreQueue),
            Phase::PreQueue if now >= opens => Some(Phase::Open),
            Phase::Open if self.ends_at.is_some_and(|end| now >= end) => Some(Phase::Ended),
            _ => None,
        }
    }

    /// The step due at `now`, if one is: the event after it, and the change of
    /// settings it makes (`settings`: those in force now).
    fn step(&self, now: Millis, settings: &Settings) -> Option<(Event, Option<SettingsPatch>)> {
        let mut next = self.clone();
        next.phase = self.due(now)?;
        let patch = match next.phase {
            Phase::PreQueue => {
                next.kept = Some(Kept {
                    new_users_per_minute: settings.new_users_per_minute,
                    max_active_users: settings.max_active_users,
                    lottery: settings.lottery,
                    opens_at: settings.opens_at,
                });
                Some(SettingsPatch {
                    opens_at: Some(self.opens_at),
                    lottery: Some(self.lottery),
                    new_users_per_minute: self.new_users_per_minute,
                    max_active_users: self.max_active_users,
                    ..SettingsPatch::default()
                })
            }
            Phase::Open | Phase::Scheduled => None,
            Phase::Ended => Some(self.back(self.after == After::Close)),
        };
        Some((next, patch))
    }

    /// The change that puts the kept settings back (and closes the room if `close`).
    fn back(&self, close: bool) -> SettingsPatch {
        let kept = self.kept;
        SettingsPatch {
            new_users_per_minute: kept.map(|k| k.new_users_per_minute),
            max_active_users: kept.map(|k| k.max_active_users),
            lottery: Some(kept.is_some_and(|k| k.lottery)),
            opens_at: Some(kept.and_then(|k| k.opens_at)),
            closed: close.then_some(true),
            ..SettingsPatch::default()
        }
    }
}

/// Why an event could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The store did not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another event is under way.
    #[error("an event is under way: cancel it first")]
    UnderWay,
    /// Another instance changed it at the same moment.
    #[error("the event changed meanwhile: try again")]
    Changed,
}

/// The room's event as stored, if it has one (one that cannot be read is none).
pub async fn current(store: &dyn Store) -> Result<Option<(String, Event)>, StoreError> {
    Ok(store.event().await?.and_then(|text| {
        let event = serde_json::from_str(&text)
            .map_err(|e| tracing::warn!(error = %e, "the stored event cannot be read"))
            .ok()?;
        Some((text, event))
    }))
}

/// Stores `event` (checked with [`Event::validated`]) as the room's, replacing
/// one that is not under way.
pub async fn schedule(store: &dyn Store, event: &Event) -> Result<(), EventError> {
    let old = current(store).await?;
    if old.as_ref().is_some_and(|(_, e)| e.under_way()) {
        return Err(EventError::UnderWay);
    }
    let text = serde_json::to_string(event).expect("an event serializes");
    match store
        .swap_event(old.as_ref().map(|(t, _)| t.as_str()), Some(&text))
        .await?
    {
        true => Ok(()),
        false => Err(EventError::Changed),
    }
}

/// Removes the room's event; one under way gives the kept settings back first.
/// The event removed, if there was one.
pub async fn cancel(store: &dyn Store, now: Millis) -> Result<Option<Event>, EventError> {
    let Some((text, event)) = current(store).await? else {
        return Ok(None);
    };
    if !store.swap_event(Some(&text), None).await? {
        return Err(EventError::Changed);
    }
    if event.under_way() {
        store.update_settings(event.back(false), now).await?;
    }
    Ok(Some(event))
}

/// How often each instance looks at the event.
const EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Moves the room's event along (see the module docs), and keeps the page text
/// of the one under way in `admission` for the queue page.
pub async fn run(admission: Admission, mut shutdown: Shutdown) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        if let Err(e) = advance(&admission).await {
            tracing::debug!(error = %e, "could not look at the event");
        }
        match admission.store().notice().await {
            Ok(stored) => admission.set_notice(stored.as_deref().and_then(Notice::parse)),
            Err(e) => tracing::debug!(error = %e, "could not look at the notice"),
        }
    }
}

async fn advance(admission: &Admission) -> Result<(), StoreError> {
    let store = admission.store();
    let Some((text, event)) = current(store.as_ref()).await? else {
        admission.set_event_message(None);
        return Ok(());
    };
    let now = store.line_time(admission.clock().now_ms());
    if event.due(now).is_none() {
        admission.set_event_message(event.message().map(str::to_owned));
        return Ok(());
    }
    let settings = store.snapshot(now).await?.settings;
    let Some((next, patch)) = event.step(now, &settings) else {
        return Ok(());
    };
    let new = serde_json::to_string(&next).expect("an event serializes");
    if !store.swap_event(Some(&text), Some(&new)).await? {
        return Ok(()); // another instance took this step
    }
    tracing::info!(phase = ?next.phase, "the event moves on");
    if let Some(patch) = patch {
        let before = serde_json::json!(settings);
        let after = store.update_settings(patch, now).await?;
        crate::admin::audit_change("event", "settings", &before, &serde_json::json!(after));
    }
    admission.set_event_message(next.message().map(str::to_owned));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::open(600, 200)
    }

    #[test]
    fn an_event_runs_its_course_once() {
        let event: Event = serde_json::from_str(
            r#"{"prequeue_at": "2026-11-28T08:30:00Z", "opens_at": "2026-11-28T09:00:00Z",
                "ends_at": "2026-11-28T12:00:00Z", "new_users_per_minute": 60,
                "lottery": true, "after": "close", "message": "Tickets"}"#,
        )
        .unwrap();
        let at = |t: &str| crate::clock::parse_rfc3339(t).unwrap();
        let event = event.validated(at("2026-11-28T08:00:00Z")).unwrap();
        assert!(event
            .step(at("2026-11-28T08:29:59Z"), &settings())
            .is_none());
        assert_eq!(event.message(), None, "not before the pre-queue");

        let (pre, patch) = event.step(at("2026-11-28T08:30:00Z"), &settings()).unwrap();
        assert_eq!(pre.phase, Phase::PreQueue);
        let patch = patch.unwrap();
        assert_eq!(patch.opens_at, Some(Some(at("2026-11-28T09:00:00Z"))));
        assert_eq!(
            (
                patch.lottery,
                patch.new_users_per_minute,
                patch.max_active_users
            ),
            (Some(true), Some(60), None),
            "its own rate, the room's capacity"
        );
        assert_eq!(pre.message(), Some("Tickets"));
        assert!(pre.step(at("2026-11-28T08:59:59Z"), &settings()).is_none());

        let (open, patch) = pre.step(at("2026-11-28T09:00:00Z"), &settings()).unwrap();
        assert_eq!((open.phase, patch), (Phase::Open, None));
        let (ended, patch) = open.step(at("2026-11-28T12:00:00Z"), &settings()).unwrap();
        assert_eq!(ended.phase, Phase::Ended);
        let patch = patch.unwrap();
        assert_eq!(
            (
                patch.new_users_per_minute,
                patch.max_active_users,
                patch.lottery,
                patch.opens_at,
                patch.closed
            ),
            (Some(600), Some(200), Some(false), Some(None), Some(true)),
            "the room's own settings back, and closed"
        );
        assert!(ended
            .step(at("2026-11-29T00:00:00Z"), &settings())
            .is_none());
        assert_eq!(ended.message(), None);
    }

    #[test]
    fn an_event_that_cannot_run_is_refused_with_the_reason() {
        let now = crate::clock::parse_rfc3339("2026-11-28T08:00:00Z").unwrap();
        for (json, says) in [
            (r#"{}"#, "opens_at: missing"),
            (
                r#"{"prequeue_at": "2026-11-28T10:00:00Z", "opens_at": "2026-11-28T09:00:00Z"}"#,
                "prequeue_at",
            ),
            (
                r#"{"opens_at": "2026-11-28T09:00:00Z", "ends_at": "2026-11-28T09:00:00Z"}"#,
                "ends_at",
            ),
            (
                r#"{"opens_at": "2026-11-28T09:00:00Z", "max_active_users": 0}"#,
                "at least 1",
            ),
            (r#"{"opens_at": "2099-01-01T00:00:00Z"}"#, "a year"),
        ] {
            let event: Event = serde_json::from_str(json).unwrap();
            let e = event.validated(now).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
        let e = serde_json::from_str::<Event>(r#"{"opens": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
