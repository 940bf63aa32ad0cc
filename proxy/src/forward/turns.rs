//! Turns at the origin (`origin.max_in_flight`): at most so many requests at the
//! origin at once, granted in the order asked (fair semaphores), of which one
//! visitor holds at most `origin.max_in_flight_per_visitor`. A visitor who asks
//! for many answers and reads none waits for their own turns, and holds nobody
//! else's: a turn ends when the origin's answer has been read off its connection
//! (see [`super::ahead`]), not when the visitor has read it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::metrics::{HeldRequest, Metrics};

/// Who holds a turn.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Holder {
    /// An admitted session.
    Session(u64),
    /// A client (its address, through the trusted proxies) on a path that needs
    /// no admission, or a request with no session (a successor's relay).
    Client(IpAddr),
}

/// The origin's turns.
pub struct Turns {
    all: Arc<Semaphore>,
    per_visitor: u32,
    /// Each visitor's own turns, while anyone holds or waits for one.
    visitors: Mutex<HashMap<Holder, Arc<Semaphore>>>,
    metrics: Metrics,
}

/// A turn at the origin, given back when dropped.
pub struct Turn {
    turns: Arc<Turns>,
    holder: Holder,
    all: Option<OwnedSemaphorePermit>,
    own: Option<OwnedSemaphorePermit>,
    _held: Option<HeldRequest>,
}

impl Turns {
    /// `max` turns at once, `per_visitor` of them for one visitor (both at least 1).
    pub fn new(max: u32, per_visitor: u32, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            all: Arc::new(Semaphore::new(max.max(1) as usize)),
            per_visitor: per_visitor.clamp(1, max.max(1)),
            visitors: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A turn for `holder`, waiting (in order) until `deadline` at the most:
    /// first for one of the visitor's own, then for one of all.
    pub async fn take(self: &Arc<Self>, holder: Holder, deadline: Instant) -> Option<Turn> {
        let own = {
            let mut visitors = self.visitors.lock().unwrap_or_else(|p| p.into_inner());
            visitors
                .entry(holder)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_visitor as usize)))
                .clone()
        };
        let mut turn = Turn {
            turns: self.clone(),
            holder,
            all: None,
            own: None,
            _held: None,
        };
        turn.own = Some(self.wait(own, deadline).await?);
        turn.all = Some(self.wait(self.all.clone(), deadline).await?);
        turn._held = Some(self.metrics.turn_held());
        Some(turn)
    }

    /// A permit of `semaphore` by `deadline`; counted as waiting only when it waits.
    async fn wait(
        &self,
        semaphore: Arc<Semaphore>,
        deadline: Instant,
    ) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        let _waiting = self.metrics.queued_for_origin();
        tokio::time::timeout_at(deadline, semaphore.acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.all = None;
        self.own = None;
        // The visitor's own semaphore goes when nobody holds or waits for it
        // (each holds a reference to it, the map one more).
        let mut visitors = self
            .turns
            .visitors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if visitors
            .get(&self.holder)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            visitors.remove(&self.holder);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn turns(max: u32, per_visitor: u32) -> Arc<Turns> {
        Turns::new(max, per_visitor, Metrics::new(&prometheus::Registry::new()))
    }

    #[tokio::test(start_paused = true)]
    async fn one_visitor_holds_no_more_than_their_share() {
        let turns = turns(4, 2);
        let soon = || Instant::now() + Duration::from_secs(1);
        let greedy = Holder::Session(1);
        let a = turns.take(greedy, soon()).await.unwrap();
        let _b = turns.take(greedy, soon()).await.unwrap();
        assert!(
            turns.take(greedy, soon()).await.is_none(),
            "a third turn for the same visitor waits, and gives up at its deadline"
        );
        let others: Vec<Turn> = futures_take(&turns, [2, 3], soon()).await;
        assert_eq!(others.len(), 2, "the others are served meanwhile");
        drop(a);
        assert!(turns.take(greedy, soon()).await.is_some(), "one given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_visitors_share_is_forgotten_when_they_hold_none() {
        let turns = turns(2, 1);
        let t = turns
            .take(Holder::Session(7), Instant::now())
            .await
            .unwrap();
        assert_eq!(turns.visitors.lock().unwrap().len(), 1);
        drop(t);
        assert!(turns.visitors.lock().unwrap().is_empty());
    }

    async fn futures_take<const N: usize>(
        turns: &Arc<Turns>,
        sessions: [u64; N],
        deadline: Instant,
    ) -> Vec<Turn> {
        let mut out = Vec::new();
        for s in sessions {
            out.extend(turns.take(Holder::Session(s), deadline).await);
        }
        out
    }
}
