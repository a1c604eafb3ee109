//! The completion queue: a timing wheel in front of two small heaps.
//!
//! With 10,000 busy nodes a heap of pending completions is seven levels
//! deep, and its pop and push were 28% of a run's instructions. Completion
//! times are handed out in increasing order (a completion is never earlier
//! than the event that schedules it), so most of that ordering work is
//! wasted on events far in the future. Here time is cut into buckets of
//! `2^shift` ns, sized for a few completions each; a completion lands in
//! its bucket in O(1), and only the current bucket's few entries are
//! sorted (`near`, by the full key, when the wheel turns to the bucket).
//! Buckets more than the wheel's span ahead (rare: the span is many mean
//! service times) wait in a heap (`far`) and move onto the wheel as it
//! turns.
//!
//! Buckets hold no lists of their own: each pending completion belongs to
//! one node (a node has at most one request in service), so a bucket is a
//! list linked through per-node slots (key and link, 32 bytes). That is 40
//! bytes per node in all (with two 4-byte bucket heads per node),
//! allocated once, instead of a growable list per bucket (which, tried as
//! a calendar queue, crowded the nodes out of the cache).
//!
//! Pop order is exactly the keys' order, as with a single heap: entries in
//! different buckets are ordered by bucket, entries of one bucket by
//! sorting, and keys are unique, so a run is the same whatever the
//! bucket width.

use crate::heap::QuadHeap;

/// Marks an empty bucket and the end of a bucket's list.
const NIL: u32 = u32::MAX;
/// Completions per bucket the width aims at (at the run's average rate):
/// few enough that the current bucket's heap is one or two levels, enough
/// that the wheel does not spend its time stepping over empty buckets.
const TARGET_PER_BUCKET: f64 = 4.0;
/// Bounds on the wheel's bucket count (a power of two).
const MIN_BUCKETS: usize = 64;
const MAX_BUCKETS: usize = 1 << 21;

#[derive(Clone, Debug)]
pub(crate) struct Wheel {
    shift: u32,
    /// Bucket count − 1.
    mask: u64,
    /// First slot of each bucket's list, by bucket number modulo the count.
    heads: Vec<u32>,
    /// One bit per bucket: its list is not empty.
    occupied: Vec<u64>,
    /// Each node's pending key and list link.
    slots: Vec<Slot>,
    /// Every entry whose bucket is at most `cursor`, largest first (so the
    /// next one pops off the end).
    near: Vec<(u64, u64)>,
    /// Every entry whose bucket is at least `cursor + buckets`.
    far: QuadHeap,
    /// The bucket `near` stands for; entries on the wheel lie in the
    /// buckets after it, less than one turn ahead.
    cursor: u64,
    on_wheel: usize,
}

impl Wheel {
    /// A wheel for about `slots` nodes completing `rate_per_sec` requests a
    /// second in all.
    pub(crate) fn new(slots: usize, rate_per_sec: f64) -> Wheel {
        let width_ns = TARGET_PER_BUCKET * 1e9 / rate_per_sec;
        // log2, floored, of a width of at least 1 ns; NaN or ∞ give the
        // bounds.
        let shift = if width_ns.is_finite() && width_ns >= 1.0 {
            (63 - (width_ns as u64).leading_zeros()).min(40)
        } else if width_ns.is_finite() {
            0
        } else {
            40
        };
        // Two buckets per node: with every node busy, the wheel then spans
        // 2 × slots × width = 8 / load mean service times, and the far
        // heap sees about e^-8 of the completions.
        let buckets = (2 * slots)
            .next_power_of_two()
            .clamp(MIN_BUCKETS, MAX_BUCKETS);
        Wheel {
            shift,
            mask: buckets as u64 - 1,
            heads: vec![NIL; buckets],
            occupied: vec![0; buckets / 64],
            slots: vec![Slot::EMPTY; slots],
            near: Vec::new(),
            far: QuadHeap::default(),
            cursor: 0,
            on_wheel: 0,
        }
    }

    #[inline]
    fn bucket(&self, key: (u64, u64)) -> u64 {
        key.0 >> self.shift
    }

    #[inline]
    fn span(&self) -> u64 {
        self.mask + 1
    }

    /// The smallest key, without removing it.
    #[inline]
    pub(crate) fn peek(&self) -> Option<(u64, u64)> {
        // Whenever anything is pending, `near` holds the smallest.
        self.near.last().copied()
    }

    /// A key that will be at or near the top soon after the next pop (the
    /// next smallest in the current bucket), for prefetching what it will
    /// touch; `None` when the current bucket has no other entry.
    #[inline]
    pub(crate) fn second(&self) -> Option<(u64, u64)> {
        let n = self.near.len();
        (n >= 2).then(|| self.near[n - 2])
    }

    /// Adds `key`, a completion of the node in its low bits. A node has at
    /// most one key queued at a time, and a key is never smaller than the
    /// last one popped.
    #[inline]
    pub(crate) fn push(&mut self, key: (u64, u64)) {
        let b = self.bucket(key);
        if self.near.is_empty() {
            // Nothing pending anywhere: the new key starts the bucket.
            debug_assert!(self.on_wheel == 0 && self.far.peek().is_none());
            self.cursor = b;
            self.near.push(key);
        } else if b <= self.cursor {
            // Rare: a completion due within the current bucket.
            let at = self.near.partition_point(|k| *k > key);
            self.near.insert(at, key);
        } else if b - self.cursor < self.span() {
            self.link(key);
        } else {
            self.far.push(key);
        }
    }

    /// Removes and returns the smallest key.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(u64, u64)> {
        let top = self.near.pop()?;
        if self.near.is_empty() && (self.on_wheel > 0 || self.far.peek().is_some()) {
            self.turn();
        }
        Some(top)
    }

    #[inline]
    fn link(&mut self, key: (u64, u64)) {
        let slot = slot_of(key);
        if slot >= self.slots.len() {
            self.slots.resize(slot + 1, Slot::EMPTY);
        }
        let w = (self.bucket(key) & self.mask) as usize;
        self.slots[slot] = Slot {
            key,
            next: self.heads[w],
        };
        self.heads[w] = slot as u32;
        self.occupied[w / 64] |= 1 << (w % 64);
        self.on_wheel += 1;
    }

    /// `near` ran empty: moves the cursor to the next bucket holding
    /// anything and brings its entries into `near`, sorted.
    #[cold]
    fn turn(&mut self) {
        self.cursor = match self.next_occupied() {
            Some(b) => b,
            // The wheel is empty: jump to the far heap's first bucket.
            None => match self.far.peek() {
                Some(k) => self.bucket(k),
                None => return,
            },
        };
        let w = (self.cursor & self.mask) as usize;
        let mut slot = std::mem::replace(&mut self.heads[w], NIL);
        self.occupied[w / 64] &= !(1 << (w % 64));
        while slot != NIL {
            let s = &self.slots[slot as usize];
            self.near.push(s.key);
            self.on_wheel -= 1;
            slot = s.next;
        }
        // What the turn brought within one span leaves the far heap.
        while let Some(k) = self.far.peek() {
            let b = self.bucket(k);
            if b - self.cursor >= self.span() {
                break;
            }
            self.far.pop();
            if b == self.cursor {
                self.near.push(k);
            } else {
                self.link(k);
            }
        }
        // A few entries; keys are unique, so an unstable sort is exact.
        self.near.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// The first occupied bucket after the cursor, as a bucket number.
    fn next_occupied(&self) -> Option<u64> {
        if self.on_wheel == 0 {
            return None;
        }
        let words = self.occupied.len();
        let start = ((self.cursor + 1) & self.mask) as usize;
        let (w0, bit0) = (start / 64, start % 64);
        // The first word from `bit0` on, then whole words around the
        // wheel, then the first word's bits before `bit0`.
        for k in 0..=words {
            let w = (w0 + k) % words;
            let mut bits = self.occupied[w];
            if k == 0 {
                bits &= u64::MAX << bit0;
            }
            if bits != 0 {
                let pos = (w * 64 + bits.trailing_zeros() as usize) as u64;
                let ahead = pos.wrapping_sub(start as u64) & self.mask;
                return Some(self.cursor + 1 + ahead);
            }
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.near.len() + self.far.len() + self.on_wheel
    }
}

/// A node's place on the wheel: key and link on one half cache line, so
/// linking a completion and reading it back each touch one line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(32))]
struct Slot {
    key: (u64, u64),
    /// Next slot in the same bucket.
    next: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        key: (0, 0),
        next: NIL,
    };
}

const _: () = assert!(std::mem::size_of::<Slot>() == 32);

/// The slot of a completion key: its node index, in the low bits.
#[inline]
fn slot_of(key: (u64, u64)) -> usize {
    (key.1 & crate::engine::NODE_MASK) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NODE_BITS;
    use ebb_core::Rng;
    use std::collections::BTreeSet;

    /// Drives the wheel like a run: `slots` servers, each with one pending
    /// completion at a time, delays drawn by `delay`; checks every pop
    /// against a sorted set.
    fn run(seed: u64, slots: usize, rate: f64, pops: usize, delay: impl Fn(&mut Rng) -> u64) {
        let mut rng = Rng::seeded(seed);
        let mut w = Wheel::new(slots, rate);
        let mut reference = BTreeSet::new();
        let mut seq = 0u64;
        let mut now = 0u64;
        let mut push = |w: &mut Wheel, r: &mut BTreeSet<(u64, u64)>, now: u64, slot: usize, d| {
            seq += 1;
            let key = (now + d, (seq << NODE_BITS) | slot as u64);
            w.push(key);
            r.insert(key);
        };
        for slot in 0..slots {
            let d = delay(&mut rng);
            push(&mut w, &mut reference, now, slot, d);
        }
        for i in 0..pops {
            let want = reference.pop_first();
            assert_eq!(w.peek(), want, "seed {seed}: pop {i}");
            let got = w.pop();
            assert_eq!(got, want, "seed {seed}: pop {i}");
            let Some((t, low)) = got else { break };
            assert!(t >= now);
            now = t;
            // The node starts its next request; now and then one that
            // takes no time at all (a key in the current bucket).
            let d = if rng.chance(0.05) { 0 } else { delay(&mut rng) };
            push(&mut w, &mut reference, now, slot_of((t, low)), d);
            assert_eq!(w.len(), reference.len());
        }
    }

    #[test]
    fn pops_in_key_order_like_a_sorted_set() {
        // Exponential delays at the wheel's own rate, equal times
        // (sequence numbers decide), and delays far beyond the span.
        run(1, 1000, 1000.0, 50_000, |r| r.exp(1e9) as u64);
        run(2, 64, 10.0, 20_000, |r| r.below(4) * 1_000_000_000);
        run(3, 100, 100.0, 20_000, |r| {
            if r.chance(0.1) {
                r.below(1 << 40)
            } else {
                r.below(1 << 20)
            }
        });
        // A width far off the real rate either way.
        run(4, 500, 1e9, 20_000, |r| r.exp(1e9) as u64);
        run(5, 500, 1e-3, 20_000, |r| r.exp(1e9) as u64);
    }

    #[test]
    fn far_keys_come_back_onto_the_wheel_in_order() {
        let mut w = Wheel::new(64, 1e9);
        let span_ns = (w.mask + 1) << w.shift;
        // Key 2 is three spans out; key 1 just inside the first.
        w.push((0, 0));
        w.push((3 * span_ns, (2 << NODE_BITS) | 1));
        w.push((span_ns - 1, (3 << NODE_BITS) | 2));
        assert_eq!(w.far.len(), 1, "the rare path ran");
        assert_eq!(w.pop(), Some((0, 0)));
        assert_eq!(w.pop(), Some((span_ns - 1, (3 << NODE_BITS) | 2)));
        assert_eq!(w.pop(), Some((3 * span_ns, (2 << NODE_BITS) | 1)));
        assert_eq!(w.pop(), None);
        assert_eq!(w.len(), 0);
    }
}
