//! The line under a pause: a frozen process or store (SIGSTOP, a partition, a
//! restart) must not count as everybody leaving at once.
//!
//! Each story drives a store the way a running instance does (a pump every 20 ms,
//! every visitor polling when told, admitted visitors making a request every
//! second), freezes it for 8 s (no operation at all, as while the process or
//! Redis is stopped), and wakes it as a real pump loop does: the pump first, then
//! the polls that waited, in an order of their own. Time is passed in, so the
//! memory store and Redis see the same story.

use std::sync::Arc;

use waitroom::admission::line::{Arrival, Poll, Settings, SettingsPatch, Timing};
use waitroom::store::Store;

/// Everybody polls every second and departs 5 s after their last poll.
pub const TIMING: Timing = Timing {
    session_ms: 30_000,
    burst: Some(1),
    poll_min_ms: 1_000,
    poll_max_ms: 1_000,
    abandon_polls: 3,
    abandon_min_ms: 5_000,
    return_grace_ms: 10_000,
    returned_share_permille: 500,
};

const FREEZE_MS: u64 = 8_000;

/// Where the stories start (a Unix time in ms).
const START: u64 = 1_800_000_000_000;

/// A store, its time, and the visitors using it.
struct Crowd {
    store: Arc<dyn Store>,
    now: u64,
    /// Place, when it polls next.
    waiting: Vec<(u64, u64)>,
    /// Places in the order they were let in.
    admitted: Vec<u64>,
    /// Sessions kept alive by a request every second.
    browsing: Vec<u64>,
}

impl Crowd {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            now: START,
            waiting: Vec::new(),
            admitted: Vec::new(),
            browsing: Vec::new(),
        }
    }

    /// A newcomer who then polls as told.
    async fn arrive(&mut self) -> u64 {
        match self.store.arrive(self.now).await.unwrap() {
            Arrival::Queued { seq, wait } => {
                self.waiting.push((seq, self.now + wait.poll_after_ms));
                seq
            }
            Arrival::Admitted { sid } => {
                self.browsing.push(sid);
                sid
            }
        }
    }

    /// Place `seq` polls now; it must still be in line or be let in.
    async fn poll(&mut self, seq: u64) -> Poll {
        let now = self.now;
        let answer = self.store.poll(seq, now).await.unwrap();
        match answer {
            Poll::Waiting(w) => {
                for v in self.waiting.iter_mut().filter(|(s, _)| *s == seq) {
                    v.1 = now + w.poll_after_ms;
                }
            }
            Poll::Admitted { sid } => {
                self.waiting.retain(|(s, _)| *s != seq);
                self.admitted.push(seq);
                self.browsing.push(sid);
            }
            other => panic!(
                "place {seq} kept polling and got {other:?} {} ms in",
                now - START
            ),
        }
        answer
    }

    /// Runs for `ms`: a pump every 20 ms, polls and requests when due.
    async fn run(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.now < until {
            self.now += 20;
            self.store.pump(self.now).await.unwrap();
            let due: Vec<u64> = (self.waiting.iter())
                .filter(|(_, at)| *at <= self.now)
                .map(|(s, _)| *s)
                .collect();
            for seq in due {
                self.poll(seq).await;
            }
            if self.now.is_multiple_of(1_000) {
                for sid in self.browsing.clone() {
                    let alive = self.store.touch_session(sid, self.now).await.unwrap();
                    assert!(alive, "session {sid} lapsed while in use");
                }
            }
        }
    }

    /// Nothing at all for 8 s, then the pump, then the polls that waited
    /// meanwhile, in `order`.
    async fn freeze_then_poll(&mut self, order: &[u64]) {
        self.now += FREEZE_MS;
        self.store.pump(self.now).await.unwrap();
        for &seq in order {
            self.poll(seq).await;
        }
    }

    async fn update(&self, patch: SettingsPatch) {
        self.store.update_settings(patch, self.now).await.unwrap();
    }
}

/// A room whose settings are `settings` (the store is made with them).
pub fn queue_all(per_minute: u32, max_active: u32) -> Settings {
    Settings {
        queue_all: true,
        ..Settings::open(per_minute, max_active)
    }
}

/// One call every 5 s; six in line, polling every second; frozen longer than
/// anybody's deadline, they come back in reverse order: let in in the order
/// they came. (`store`: made with `queue_all(12, 100)`.)
pub async fn a_pause_keeps_the_order_of_the_line(store: Arc<dyn Store>) {
    let mut c = Crowd::new(store);
    let mut v = Vec::new();
    for _ in 0..6 {
        v.push(c.arrive().await);
    }
    c.run(3_000).await;
    assert_eq!(c.admitted, [v[0]], "the first was called at once");
    let back: Vec<u64> = v[1..].iter().rev().copied().collect();
    c.freeze_then_poll(&back).await;
    c.run(40_000).await;
    assert_eq!(c.admitted, v, "let in in the order they came");
}

/// Capacity held by one session, three waiting behind it; frozen, they come
/// back as 3, 1, 2: still let in as 1, 2, 3 when sessions end. (`store`: made
/// with `Settings::open(600, 1)`.)
pub async fn a_pause_while_the_line_stands_still_keeps_its_order(store: Arc<dyn Store>) {
    let mut c = Crowd::new(store);
    let first = c.arrive().await;
    assert_eq!(c.browsing, [first], "straight in");
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(c.arrive().await);
    }
    c.run(3_000).await;
    c.freeze_then_poll(&[v[2], v[0], v[1]]).await;
    c.run(1_000).await;
    // Each session in turn ends; the next one in line goes in.
    let mut sessions = vec![first];
    while let Some(sid) = sessions.pop() {
        c.browsing.retain(|s| *s != sid);
        assert!(c.store.end_session(sid, c.now).await.unwrap());
        let before = c.admitted.len();
        c.run(3_000).await;
        sessions.extend(c.admitted[before..].iter().copied());
    }
    assert_eq!(c.admitted, v, "let in in the order they came");
}

/// A holder whose session lapsed comes back first in the returned lane and
/// keeps polling; newcomers queue behind; after a freeze they are still first.
/// (`store`: made with `Settings::open(600, 1)`.)
pub async fn a_lapsed_session_keeps_the_returned_lane_through_a_pause(store: Arc<dyn Store>) {
    let mut c = Crowd::new(store);
    let first = c.arrive().await;
    c.browsing.clear();
    let second = c.arrive().await;
    c.run(TIMING.session_ms + 2_000).await;
    assert_eq!(c.admitted, [second], "called when the first session lapsed");
    let Poll::Waiting(w) = c.store.rejoin(first, c.now).await.unwrap() else {
        panic!("back within the grace: in the returned lane")
    };
    assert_eq!(w.position, 1);
    c.waiting.push((first, c.now + 1_000));
    let mut newcomers = Vec::new();
    for _ in 0..5 {
        newcomers.push(c.arrive().await);
    }
    c.run(3_000).await;
    c.freeze_then_poll(&newcomers).await;
    let Poll::Waiting(w) = c.poll(first).await else {
        unreachable!("a holder who kept polling was sent to the back")
    };
    assert_eq!(w.position, 1, "still first");
}

/// Paused: the first holder stops polling, is passed over at the head, comes
/// back to the returned lane and polls again; after a freeze still first.
/// (`store`: made with `queue_all(600, 100)`.)
pub async fn a_passed_over_place_keeps_the_returned_lane_through_a_pause(store: Arc<dyn Store>) {
    let mut c = Crowd::new(store);
    c.update(SettingsPatch {
        paused: Some(true),
        ..SettingsPatch::default()
    })
    .await;
    let gone = c.arrive().await;
    let stay = c.arrive().await;
    c.waiting.retain(|(s, _)| *s != gone);
    c.run(7_000).await;
    c.waiting.push((gone, c.now));
    let Poll::Waiting(w) = c.poll(gone).await else {
        unreachable!("`poll` panics on anything else")
    };
    assert_eq!(
        w.position, 1,
        "back within the grace: first, in the returned lane"
    );
    c.run(3_000).await;
    c.freeze_then_poll(&[stay, gone]).await;
    let Poll::Waiting(w) = c.poll(gone).await else {
        unreachable!("`poll` panics on anything else")
    };
    assert_eq!(w.position, 1, "still first");
}
