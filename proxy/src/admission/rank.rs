//! Counting the people still waiting ahead of a place: a growable Fenwick tree.
//!
//! Places are numbered densely and handed out in order, so a prefix sum over
//! "still waiting" flags answers `position` in O(log n) even with a million people
//! in line. The tree covers `[base, base + capacity)`; when a new place falls outside,
//! it is rebuilt from the caller's records starting at the current head.

/// Prefix counts over place numbers.
#[derive(Clone, Debug, Default)]
pub struct Rank {
    base: u64,
    tree: Vec<u32>,
}

impl Rank {
    /// How many place numbers the tree has room for (4 bytes each).
    #[cfg(test)]
    pub fn slots(&self) -> usize {
        self.tree.len()
    }

    /// Whether `seq` lies inside the covered range.
    pub fn covers(&self, seq: u64) -> bool {
        seq >= self.base && seq - self.base < self.tree.len() as u64
    }

    /// Rebuilds the tree to cover `[base, base + capacity)` from `(seq, counted)` pairs.
    pub fn rebuild(&mut self, base: u64, capacity: usize, live: impl Iterator<Item = u64>) {
        self.base = base;
        self.tree = vec![0; capacity.next_power_of_two().max(1024)];
        for seq in live {
            self.add(seq, 1);
        }
    }

    /// Adds `delta` (±1) at `seq`; ignored when `seq` is not covered.
    pub fn add(&mut self, seq: u64, delta: i32) {
        if !self.covers(seq) {
            return;
        }
        let mut i = (seq - self.base) as usize + 1;
        while i <= self.tree.len() {
            self.tree[i - 1] = self.tree[i - 1].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// How many counted places lie in `[base, seq)`.
    pub fn before(&self, seq: u64) -> u64 {
        if seq <= self.base {
            return 0;
        }
        let mut i = ((seq - self.base) as usize).min(self.tree.len());
        let mut sum = 0u64;
        while i > 0 {
            sum += u64::from(self.tree[i - 1]);
            i &= i - 1;
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_prefixes_and_follows_removals() {
        let mut r = Rank::default();
        r.rebuild(100, 8, [100, 101, 103, 107].into_iter());
        assert_eq!(r.before(100), 0);
        assert_eq!(r.before(103), 2);
        assert_eq!(r.before(108), 4);
        r.add(101, -1);
        assert_eq!(r.before(103), 1);
        assert!(r.covers(1123) && !r.covers(1124) && !r.covers(99));
        r.add(5_000, 1); // outside: ignored
        assert_eq!(r.before(10_000), 3);
    }
}
