//! A store as a running instance uses it: pumped at least every half second.
//!
//! A line not pumped for over a second was not heard (its process or its store
//! was frozen, down or cut off) and takes that time as a silence, which no
//! deadline counts (see `Line::at`). The stories play a running line at chosen
//! times, so before each operation this pumps the line every [`PACE_MS`] up to
//! that time, as the instance's pump loop would have; an explicit `pump` says
//! what every round since the last explicit one did.

use std::sync::{Arc, Mutex};

use waitroom::admission::line::{Arrival, Poll, PumpReport, Settings, SettingsPatch, Snapshot};
use waitroom::store::Store;

/// How often the line is pumped between the operations of a story.
const PACE_MS: u64 = 500;

/// What the rounds since the last explicit pump did, and when the last one ran.
#[derive(Default)]
struct Rounds {
    last: Option<u64>,
    carried: PumpReport,
}

/// A store pumped at least every [`PACE_MS`] of the story's time.
#[derive(Clone)]
pub struct Running {
    store: Arc<dyn Store>,
    rounds: Arc<Mutex<Rounds>>,
}

impl Running {
    /// `store`, to be pumped as a running instance does.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            rounds: Arc::default(),
        }
    }

    /// Pumps every [`PACE_MS`] from the last round up to (not at) `now`.
    async fn catch_up(&self, now: u64) {
        loop {
            let next = {
                let mut r = self.rounds.lock().unwrap();
                match r.last {
                    None => {
                        r.last = Some(now);
                        return;
                    }
                    Some(last) if last + PACE_MS < now => {
                        r.last = Some(last + PACE_MS);
                        last + PACE_MS
                    }
                    Some(_) => return,
                }
            };
            let report = self.store.pump(next).await.unwrap();
            let mut r = self.rounds.lock().unwrap();
            r.carried.called += report.called;
            r.carried.passed_over += report.passed_over;
        }
    }

    /// A round at `now`, with what the rounds since the last explicit one did.
    pub async fn pump(&self, now: u64) -> Result<PumpReport, waitroom::store::StoreError> {
        self.catch_up(now).await;
        let report = self.store.pump(now).await?;
        let mut r = self.rounds.lock().unwrap();
        r.last = Some(now);
        let carried = std::mem::take(&mut r.carried);
        Ok(PumpReport {
            called: report.called + carried.called,
            passed_over: report.passed_over + carried.passed_over,
        })
    }
}

/// Operations that take the time: each catches the line up first.
macro_rules! timed {
    ($($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)*) => {
        impl Running {
            $(
                /// As [`Store`]'s, once the line has been pumped up to `now`.
                pub async fn $name(&self, $($arg: $ty,)* now: u64)
                    -> Result<$out, waitroom::store::StoreError> {
                    self.catch_up(now).await;
                    self.store.$name($($arg,)* now).await
                }
            )*
        }
    };
}

timed! {
    arrive() -> Arrival;
    arrive_kept() -> Arrival;
    poll(seq: u64) -> Poll;
    rejoin(sid: u64) -> Poll;
    touch_session(sid: u64) -> bool;
    end_session(sid: u64) -> bool;
    snapshot() -> Snapshot;
    hold(for_ms: u64) -> Settings;
    update_settings(patch: SettingsPatch) -> Settings;
}
