//! The client session's timer indexes (deadlines, retransmissions): a
//! priority queue of `(instant, seq)` whose entries are deleted lazily.
//!
//! Every call arms a deadline and a retransmission timer and nearly every
//! call disarms both when its reply comes. An ordered set pays a tree
//! search and rebalancing for each of the four; this queue pays a push for
//! each arming and nothing for a disarming. An entry whose call is gone
//! (or whose call was re-armed for another instant) is stale: the session
//! says which entries are live. Stale entries are dropped when they reach
//! the top ([`TimerQueue::prune`], after every removal, so the earliest
//! entry is always live) and all at once when they outnumber the live ones
//! ([`TimerQueue::compact`]), so the queue holds at most about twice as many
//! entries as there are calls.
//!
//! Timers are nearly always armed in the order they expire: calls made
//! with the same timeout, and sent with the same backoff, expire in the
//! order they were armed, since `now` only moves forward. Such entries go
//! to the back of a sorted deque, where pushing and popping are constant
//! time; only an entry due before the deque's last one (a call with a
//! shorter timeout than the one before it) goes to a binary heap. The
//! earliest entry is the earlier of the two fronts. With 128 calls
//! outstanding, the heap alone cost two logarithmic sift-downs per call,
//! about 5 % of a client's instructions per call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use ebb_core::Instant;

use crate::wire::Seq;

/// Entries kept regardless of the live count before a compaction is
/// considered: compacting a tiny queue often would cost more than it saves.
const MIN_ENTRIES_BEFORE_COMPACTING: usize = 64;

type Entry = (Instant, Seq);

#[derive(Debug, Default)]
pub struct TimerQueue {
    /// Entries pushed no earlier than every entry pushed here before them:
    /// sorted, so the front is the earliest.
    in_order: VecDeque<Entry>,
    /// Entries pushed out of order (earlier than `in_order`'s last).
    out_of_order: BinaryHeap<Reverse<Entry>>,
}

impl TimerQueue {
    #[inline]
    pub fn push(&mut self, at: Instant, seq: Seq) {
        let entry = (at, seq);
        match self.in_order.back() {
            Some(last) if *last > entry => self.out_of_order.push(Reverse(entry)),
            _ => self.in_order.push_back(entry),
        }
    }

    /// The earliest entry, live or not.
    #[inline]
    pub fn first(&self) -> Option<(Instant, Seq)> {
        if self.out_of_order.is_empty() {
            return self.in_order.front().copied();
        }
        match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => Some(*a.min(b)),
            (Some(a), None) => Some(*a),
            (None, Some(Reverse(b))) => Some(*b),
            (None, None) => None,
        }
    }

    #[inline]
    pub fn pop(&mut self) -> Option<(Instant, Seq)> {
        if self.out_of_order.is_empty() {
            return self.in_order.pop_front();
        }
        let from_heap = match (self.in_order.front(), self.out_of_order.peek()) {
            (Some(a), Some(Reverse(b))) => b < a,
            (None, Some(_)) => true,
            _ => false,
        };
        if from_heap {
            self.out_of_order.pop().map(|Reverse(e)| e)
        } else {
            self.in_order.pop_front()
        }
    }

    /// Drops stale entries from the top until the earliest one is live.
    #[inline]
    pub fn prune(&mut self, mut live: impl FnMut(Instant, Seq) -> bool) {
        while let Some((at, seq)) = self.first() {
            if live(at, seq) {
                return;
            }
            self.pop();
        }
    }

    /// Drops every stale entry once there are more than twice as many
    /// entries as `live_count` (the most that can be live): a rebuild in
    /// linear time after at least as many cheap pushes. What stays in the
    /// deque stays sorted.
    #[inline]
    pub fn compact(&mut self, live_count: usize, mut live: impl FnMut(Instant, Seq) -> bool) {
        if self.len() > MIN_ENTRIES_BEFORE_COMPACTING.max(2 * live_count) {
            self.in_order.retain(|&(at, seq)| live(at, seq));
            self.out_of_order
                .retain(|Reverse((at, seq))| live(*at, *seq));
        }
    }

    /// Every entry, live or not, in no particular order; for checks and for
    /// taking all timers down at once.
    pub fn entries(&self) -> impl Iterator<Item = (Instant, Seq)> + '_ {
        self.in_order
            .iter()
            .copied()
            .chain(self.out_of_order.iter().map(|Reverse(e)| *e))
    }

    pub fn clear(&mut self) {
        self.in_order.clear();
        self.out_of_order.clear();
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.in_order.len() + self.out_of_order.len()
    }

    /// Entries that took the heap: for tests showing which path ran.
    #[cfg(test)]
    fn out_of_order_len(&self) -> usize {
        self.out_of_order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn stale_entries_never_surface_and_stay_bounded() {
        let at = |n: u64| Instant::from_epoch(ebb_core::Nanos(n));
        let mut q = TimerQueue::default();
        let mut live: BTreeSet<(Instant, Seq)> = BTreeSet::new();
        let mut compactions = 0;
        let mut out_of_order_seen = false;
        for i in 0..10_000u64 {
            // Deadlines out of order, most removed soon after.
            let entry = (at((i * 7919) % 1000 + i), Seq(i));
            q.push(entry.0, entry.1);
            live.insert(entry);
            if i % 10 != 0 {
                live.remove(&entry);
            }
            let before = q.len();
            q.prune(|a, s| live.contains(&(a, s)));
            q.compact(live.len(), |a, s| live.contains(&(a, s)));
            if q.len() < before.saturating_sub(1) {
                compactions += 1;
            }
            assert_eq!(
                q.first(),
                live.first().copied(),
                "the top is the earliest live entry"
            );
            assert!(q.len() <= (2 * live.len()).max(MIN_ENTRIES_BEFORE_COMPACTING) + 1);
            out_of_order_seen |= q.out_of_order_len() > 0;
        }
        assert!(compactions > 0, "stale entries were dropped in bulk");
        assert!(out_of_order_seen, "some entries took the heap");
    }

    /// Entries armed in expiry order (one timeout for every call) never
    /// touch the heap, and mixed pushes and pops come out as from one
    /// sorted set.
    #[test]
    fn pops_come_out_in_order_whichever_path_an_entry_took() {
        let at = |n: u64| Instant::from_epoch(ebb_core::Nanos(n));
        let mut q = TimerQueue::default();
        for i in 0..1000u64 {
            q.push(at(i / 3), Seq(i));
        }
        assert_eq!(q.out_of_order_len(), 0, "in-order pushes stay in the deque");

        let mut model: BTreeSet<(Instant, Seq)> = q.entries().collect();
        // A deterministic mix: runs in order with earlier ones between.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 1000..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let when = if x % 5 == 0 { i / 3 - x % 300 } else { i / 3 };
            q.push(at(when), Seq(i));
            model.insert((at(when), Seq(i)));
            if x % 3 == 0 {
                assert_eq!(q.pop(), model.pop_first());
            }
            assert_eq!(q.first(), model.first().copied());
            assert_eq!(q.len(), model.len());
        }
        assert!(q.out_of_order_len() > 0, "some entries took the heap");
        while let Some(e) = model.pop_first() {
            assert_eq!(q.pop(), Some(e));
        }
        assert_eq!(q.pop(), None);
    }
}
