//! The line an instance keeps by itself while the store cannot be reached and it
//! lets people in on its own (`on_failure = "open"`).
//!
//! Fair as the real line is: holders of places from before the outage go first, in
//! the order of their places, then the newcomers who arrived during it, in the
//! order they came. Each visitor who asks is noted; for the first moments of the
//! outage (long enough for every waiting holder to poll once) nobody is called, so
//! that the order is known; then at this instance's share of the outflow the first
//! one noted is called, and let in when they ask next (at once, if they are the one
//! asking). A visitor not seen for [`FORGET_AFTER_MS`] is forgotten (they left, or
//! ask another instance).

use std::collections::BTreeMap;

use super::gcra::{Gcra, Rate};
use crate::clock::Millis;

/// A visitor not seen for this long is forgotten.
pub const FORGET_AFTER_MS: Millis = 15_000;

/// Who is asking, in the order they go in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// A place in the real line (first, by number).
    Place(u64),
    /// A newcomer during the outage: when they came (Unix seconds), and the nonce
    /// of their provisional token.
    Newcomer(u64, u64),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    last_seen: Millis,
    called: bool,
}

/// The instance's own line during an outage.
#[derive(Debug, Default)]
pub struct OutageLine {
    gcra: Gcra,
    waiting: BTreeMap<Key, Entry>,
    /// When the first visitor asked in this outage.
    since: Option<Millis>,
}

impl OutageLine {
    /// `key` asks at `now`: whether they go in (at `rate`, once the outage is
    /// `gather_ms` old).
    pub fn ask(&mut self, key: Key, rate: Rate, now: Millis, gather_ms: Millis) -> bool {
        let since = *self.since.get_or_insert(now);
        self.waiting
            .retain(|_, e| now.saturating_sub(e.last_seen) < FORGET_AFTER_MS);
        self.waiting
            .entry(key)
            .and_modify(|e| e.last_seen = now)
            .or_insert(Entry {
                last_seen: now,
                called: false,
            });
        while now >= since + gather_ms && self.gcra.conforms(rate, now) {
            let Some(next) = self.waiting.values_mut().find(|e| !e.called) else {
                break;
            };
            next.called = true;
            self.gcra.consume(rate, now);
        }
        if self.waiting.get(&key).is_some_and(|e| e.called) {
            self.waiting.remove(&key);
            return true;
        }
        false
    }

    /// Forgets everybody (the store answers again: the real line takes over).
    pub fn clear(&mut self) {
        self.waiting.clear();
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_from_before_go_first_in_order_then_newcomers() {
        let rate = Rate {
            per_minute: 60,
            burst: 1,
        };
        let mut l = OutageLine::default();
        let mut ask = |key, now| l.ask(key, rate, now, 500);
        // Two newcomers ask first, then places 7 and 3: nobody goes in while the
        // order is gathered.
        assert!(!ask(Key::Newcomer(100, 1), 0));
        assert!(!ask(Key::Newcomer(100, 2), 100));
        assert!(!ask(Key::Place(7), 200));
        assert!(!ask(Key::Place(3), 300));
        // Then one is called a second: place 3, though it asked last, then 7.
        assert!(!ask(Key::Newcomer(100, 1), 500));
        assert!(!ask(Key::Place(7), 600));
        assert!(ask(Key::Place(3), 700));
        assert!(ask(Key::Place(7), 1_500));
        // The places from before have gone in; the newcomers follow, in order.
        assert!(!ask(Key::Newcomer(100, 2), 2_500));
        assert!(ask(Key::Newcomer(100, 1), 2_600));
        assert!(ask(Key::Newcomer(100, 2), 3_500));
        // Somebody not seen for a while is forgotten; one asking alone goes in.
        assert!(!ask(Key::Place(9), 3_600));
        assert!(ask(Key::Newcomer(101, 5), 4_500 + FORGET_AFTER_MS));
    }
}
