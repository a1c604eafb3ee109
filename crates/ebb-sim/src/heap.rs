//! A 4-ary min-heap of completion keys, laid out one family per cache line.
//!
//! It holds the completions beyond the timing wheel's span (`wheel.rs`);
//! as the run's only completion queue it was the hottest structure of a
//! 10,000-node run. A pop is a walk from the root to a leaf whose every step loads
//! the four children of one entry. Keys are 16 bytes, so four children are
//! one 64-byte line, but only when the family starts on a line boundary:
//! the entries are stored three slots late in 64-byte-aligned lines, which
//! puts the children of entry `k` exactly in line `k + 1`. A pop then touches
//! one line per level (the plain layout straddles two lines at three levels
//! in four).
//!
//! Every slot past the last entry holds [`EMPTY`], so each family is always
//! four keys and picking the smallest child is a fixed tournament of three
//! comparisons without a length check per child. A pop moves the hole down
//! to a leaf along the smallest children and then lifts the last entry into
//! it (Floyd's bottom-up variant): the last entry usually belongs near the
//! bottom, so this saves the comparison with it at every level.
//!
//! Keys are unique (they carry a sequence number), so the pop order is the
//! keys' order whatever the heap's shape: any correct heap gives the same
//! run.

/// The padding value; no real key reaches it (a key's low half is a
/// sequence number shifted left of a node index, below 2^64 - 1 for
/// any run that ends).
const EMPTY: u128 = u128::MAX;
/// Entries per line, and children per entry.
const ARITY: usize = 4;
/// Empty slots before the root, so that every family fills one line.
const LEAD: usize = ARITY - 1;

/// Four keys on one cache line.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Line([u128; ARITY]);

const _: () = assert!(std::mem::size_of::<Line>() == 64);

const EMPTY_LINE: Line = Line([EMPTY; ARITY]);

/// Keys are compared as tuples; the smallest comes out first. They are
/// stored packed in one `u128` (first component high), so a comparison is
/// one wide compare and the choice among four children compiles to
/// conditional moves rather than branches the data make unpredictable.
#[derive(Clone, Debug, Default)]
pub(crate) struct QuadHeap {
    lines: Vec<Line>,
    len: usize,
}

#[inline]
fn pack((a, b): (u64, u64)) -> u128 {
    (u128::from(a) << 64) | u128::from(b)
}

#[inline]
fn unpack(k: u128) -> (u64, u64) {
    ((k >> 64) as u64, k as u64)
}

/// The position of the smallest of four keys, and the key.
#[inline]
fn smallest(l: &Line) -> (usize, u128) {
    let [a, b, c, d] = l.0;
    let (x, ix) = if b < a { (b, 1) } else { (a, 0) };
    let (y, iy) = if d < c { (d, 3) } else { (c, 2) };
    if y < x { (iy, y) } else { (ix, x) }
}

impl QuadHeap {
    #[inline]
    fn get(&self, k: usize) -> u128 {
        let p = k + LEAD;
        self.lines[p / ARITY].0[p % ARITY]
    }

    #[inline]
    fn set(&mut self, k: usize, key: u128) {
        let p = k + LEAD;
        self.lines[p / ARITY].0[p % ARITY] = key;
    }

    #[inline]
    pub(crate) fn peek(&self) -> Option<(u64, u64)> {
        (self.len > 0).then(|| unpack(self.get(0)))
    }

    #[inline]
    pub(crate) fn push(&mut self, key: (u64, u64)) {
        let key = pack(key);
        debug_assert!(key != EMPTY, "a key equal to the padding value");
        let mut k = self.len;
        if (k + LEAD) / ARITY >= self.lines.len() {
            self.lines.push(EMPTY_LINE);
        }
        self.len += 1;
        while k > 0 {
            let parent = (k - 1) / ARITY;
            let p = self.get(parent);
            if p <= key {
                break;
            }
            self.set(k, p);
            k = parent;
        }
        self.set(k, key);
    }

    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(u64, u64)> {
        if self.len == 0 {
            return None;
        }
        let top = self.get(0);
        self.len -= 1;
        let n = self.len;
        let last = self.get(n);
        self.set(n, EMPTY);
        if n == 0 {
            return Some(unpack(top));
        }
        // Down to a leaf along the smallest children; slots at or past `n`
        // hold EMPTY and are never the smallest of a family that has an
        // entry.
        let mut k = 0;
        while ARITY * k + 1 < n {
            let (j, child) = smallest(&self.lines[k + 1]);
            self.set(k, child);
            k = ARITY * k + 1 + j;
        }
        // Then up until `last` fits.
        while k > 0 {
            let parent = (k - 1) / ARITY;
            let p = self.get(parent);
            if p <= last {
                break;
            }
            self.set(k, p);
            k = parent;
        }
        self.set(k, last);
        debug_assert!(k < n);
        Some(unpack(top))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_core::Rng;

    #[test]
    fn pops_in_sorted_order_like_a_binary_heap() {
        let mut rng = Rng::seeded(5);
        let mut h = QuadHeap::default();
        let mut reference = std::collections::BinaryHeap::new();
        for round in 0..20_000u64 {
            if rng.chance(0.6) {
                let k = (rng.below(1000), round);
                h.push(k);
                reference.push(std::cmp::Reverse(k));
            } else {
                assert_eq!(h.pop(), reference.pop().map(|r| r.0));
            }
            assert_eq!(h.len(), reference.len());
        }
        while let Some(r) = reference.pop() {
            assert_eq!(h.pop(), Some(r.0));
        }
        assert_eq!(h.pop(), None);
        assert!(
            h.lines.iter().all(|l| l.0 == [EMPTY; ARITY]),
            "padding restored"
        );
    }

    #[test]
    fn children_of_an_entry_share_one_aligned_line() {
        let mut h = QuadHeap::default();
        for i in 0..100u64 {
            h.push((i, i));
        }
        assert_eq!(h.lines.as_ptr() as usize % 64, 0);
        // Entry k's children 4k+1..=4k+4 are line k+1's four slots.
        for k in 0..20 {
            for j in 0..ARITY {
                assert_eq!(h.get(ARITY * k + 1 + j), h.lines[k + 1].0[j]);
            }
        }
    }
}
