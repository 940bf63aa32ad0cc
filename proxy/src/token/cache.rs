//! Tokens verified once, not on every request: a visitor presents the same cookie
//! with every request and poll, and checking its Ed25519 signature again each time
//! was most of the work of a forwarded request.
//!
//! Only tokens whose signature verified are kept (a flood of distinct garbage
//! never enters), keyed by the token's SHA-256 (small, and a hit is exactly the
//! token that verified: nobody finds another token with the same digest); expiry is still checked against the clock at every use; the cache is
//! emptied when the keys change. It is bounded: sharded, each shard two
//! generations — when the young one is full the old one is dropped and the young
//! one takes its place, so what is used stays and the rest ages out.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::Claims;

/// Shards (a power of two): requests on different cores rarely meet on a lock.
const SHARDS: usize = 16;

/// Tokens kept at most, all shards and both generations together (some 8 MB).
pub const CAPACITY: usize = 65_536;

/// A token's SHA-256.
type Key = [u8; 32];

/// Verified tokens and their claims.
pub struct Verified {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    young: HashMap<Key, Claims>,
    old: HashMap<Key, Claims>,
}

/// Entries a shard's young generation holds before it ages.
const PER_GENERATION: usize = CAPACITY / SHARDS / 2;

impl Default for Verified {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Verified {
    fn shard(&self, key: &Key) -> MutexGuard<'_, Shard> {
        let i = usize::from(key[0]) & (SHARDS - 1);
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of `token` if it verified before.
    pub fn get(&self, token: &str) -> Option<Claims> {
        let key: Key = Sha256::digest(token.as_bytes()).into();
        let mut shard = self.shard(&key);
        if let Some(c) = shard.young.get(&key) {
            return Some(c.clone());
        }
        // Used again: it moves to the young generation.
        let claims = shard.old.remove(&key)?;
        shard.insert(key, claims.clone());
        Some(claims)
    }

    /// Keeps `token`, whose signature verified, with its `claims`.
    pub fn insert(&self, token: &str, claims: Claims) {
        let key: Key = Sha256::digest(token.as_bytes()).into();
        self.shard(&key).insert(key, claims);
    }

    /// Forgets every token (the keys changed).
    pub fn clear(&self) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.young.clear();
            s.old.clear();
        }
    }

    /// Tokens kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.young.len() + s.old.len()
            })
            .sum()
    }

    /// Whether none is kept.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    fn insert(&mut self, key: Key, claims: Claims) {
        if self.young.len() >= PER_GENERATION && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, claims);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Kind;

    fn claims(n: u64) -> Claims {
        Claims {
            k: Kind::Admission,
            l: 1,
            n,
            iat: 0,
            exp: u64::MAX,
            p: None,
        }
    }

    #[test]
    fn keeps_what_is_used_and_stays_bounded() {
        let cache = Verified::default();
        cache.insert("kept", claims(0));
        for n in 0..(CAPACITY as u64 * 3) {
            cache.insert(&format!("token-{n}"), claims(n));
            if n % 1000 == 0 {
                assert_eq!(cache.get("kept").map(|c| c.n), Some(0), "used, so kept");
            }
        }
        assert!(cache.len() <= CAPACITY, "{} kept", cache.len());
        assert!(cache.get("token-0").is_none(), "the unused aged out");
        cache.clear();
        assert!(cache.is_empty());
    }
}
