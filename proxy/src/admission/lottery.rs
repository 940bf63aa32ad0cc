//! A fair opening: the places taken before a scheduled opening (the pre-queue) are
//! called in an order drawn by lot at the opening, so that arriving at 08:30 or at
//! 08:59:59 gives the same chance and refreshing gives no edge. Later arrivals
//! queue behind them in arrival order.
//!
//! The draw does not move anybody in the store. Places are still called in their
//! numeric order; what changes is who holds each: the holder of pre-queue place `s`
//! is given drawn place `draw(s)`, a permutation of the pre-queue's numbers, and
//! every poll and admission of theirs is about that place from the opening on.
//!
//! The draw is verifiable. Its seed is fixed when the opening is scheduled and
//! derived from the room's secret signing key, so nobody outside can know it
//! before the opening; its SHA-256 (the commitment) is published from then on
//! (`GET /_waitroom/lottery`), the seed itself once the room has opened. The order
//! is: the pre-queue's places sorted by SHA-256(seed ‖ place as 8 bytes, big
//! endian), ascending; the first of them is called first. `waitroom
//! verify-lottery` recomputes it.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// What a seed is derived with, so that it is good for nothing else.
const LABEL: &[u8] = b"waitroom lottery v1";

/// The draw's seed for the opening at `opens_at` (Unix ms) of line `line`, from
/// the room's secret key material `secret`.
pub fn seed(secret: &[u8; 32], line: u64, opens_at: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(LABEL);
    h.update(secret);
    h.update(line.to_be_bytes());
    h.update(opens_at.to_be_bytes());
    h.finalize().into()
}

/// What is published before the opening: SHA-256 of the seed.
pub fn commitment(seed: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(seed).into()
}

/// The places `first..=last` in the order they are called.
pub fn order(seed: &[u8; 32], first: u64, last: u64) -> Vec<u64> {
    let mut keyed: Vec<([u8; 32], u64)> = (first..=last)
        .map(|place| {
            let mut h = Sha256::new();
            h.update(seed);
            h.update(place.to_be_bytes());
            (h.finalize().into(), place)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, place)| place).collect()
}

/// A drawn pre-queue: who holds which place from the opening on.
#[derive(Debug)]
pub struct Draw {
    /// The seed.
    pub seed: [u8; 32],
    /// The pre-queue's first and last place.
    pub first: u64,
    /// See `first`.
    pub last: u64,
    /// The holder of place `s` (the key) holds place `drawn[s]`.
    drawn: HashMap<u64, u64>,
}

impl Draw {
    /// Draws the pre-queue `first..=last` with `seed`.
    pub fn new(seed: [u8; 32], first: u64, last: u64) -> Self {
        let drawn = order(&seed, first, last).into_iter().zip(first..).collect();
        Self {
            seed,
            first,
            last,
            drawn,
        }
    }

    /// The place the holder of place `seq` holds after the draw.
    pub fn place_of(&self, seq: u64) -> u64 {
        self.drawn.get(&seq).copied().unwrap_or(seq)
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes written as 64 hexadecimal digits, if they are.
pub fn from_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_is_a_permutation_that_the_seed_alone_decides() {
        let seed = seed(&[7; 32], 42, 1_800_000_000_000);
        let d = Draw::new(seed, 100, 1099);
        let mut places: Vec<u64> = (100..=1099).map(|s| d.place_of(s)).collect();
        places.sort_unstable();
        assert_eq!(places, (100..=1099).collect::<Vec<_>>());
        // Outside the pre-queue nobody moves.
        assert_eq!((d.place_of(99), d.place_of(1100)), (99, 1100));
        // The same seed, the same order; another seed, another.
        assert_eq!(order(&seed, 100, 1099), order(&seed, 100, 1099));
        let other = super::seed(&[7; 32], 42, 1_800_000_000_001);
        assert_ne!(order(&seed, 100, 1099), order(&other, 100, 1099));
        // The first called holds place 100.
        assert_eq!(d.place_of(order(&seed, 100, 1099)[0]), 100);
        assert_eq!(from_hex(&hex(&seed)), Some(seed));
        assert_eq!(from_hex("zz"), None);
    }
}
