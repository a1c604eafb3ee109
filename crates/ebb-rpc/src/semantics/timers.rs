//! The client session's timer indexes (deadlines, retransmissions): a
//! binary heap of `(instant, seq)` whose entries are deleted lazily.
//!
//! Every call arms a deadline and a retransmission timer and nearly every
//! call disarms both when its reply comes. An ordered set pays a tree
//! search and rebalancing for each of the four; the heap pays a push for
//! each arming and nothing for a disarming. An entry whose call is gone
//! (or whose call was re-armed for another instant) is stale: the session
//! says which entries are live. Stale entries are dropped when they reach
//! the top ([`TimerQueue::prune`], after every removal, so the earliest
//! entry is always live) and all at once when they outnumber the live ones
//! ([`TimerQueue::compact`]), so the heap holds at most about twice as many
//! entries as there are calls.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ebb_core::Instant;

use crate::wire::Seq;

/// Entries kept regardless of the live count before a compaction is
/// considered: compacting a tiny heap often would cost more than it saves.
const MIN_ENTRIES_BEFORE_COMPACTING: usize = 64;

#[derive(Debug, Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Instant, Seq)>>,
}

impl TimerQueue {
    pub fn push(&mut self, at: Instant, seq: Seq) {
        self.heap.push(Reverse((at, seq)));
    }

    /// The earliest entry, live or not.
    pub fn first(&self) -> Option<(Instant, Seq)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    pub fn pop(&mut self) -> Option<(Instant, Seq)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Drops stale entries from the top until the earliest one is live.
    pub fn prune(&mut self, mut live: impl FnMut(Instant, Seq) -> bool) {
        while let Some(Reverse((at, seq))) = self.heap.peek() {
            if live(*at, *seq) {
                return;
            }
            self.heap.pop();
        }
    }

    /// Drops every stale entry once there are more than twice as many
    /// entries as `live_count` (the most that can be live): a rebuild in
    /// linear time after at least as many cheap pushes.
    pub fn compact(&mut self, live_count: usize, live: impl FnMut(Instant, Seq) -> bool) {
        if self.heap.len() > MIN_ENTRIES_BEFORE_COMPACTING.max(2 * live_count) {
            let mut live = live;
            self.heap.retain(|Reverse((at, seq))| live(*at, *seq));
        }
    }

    /// Every entry, live or not, in no particular order; for checks and for
    /// taking all timers down at once.
    pub fn entries(&self) -> impl Iterator<Item = (Instant, Seq)> + '_ {
        self.heap.iter().map(|Reverse(e)| *e)
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }

    pub fn len(&self) -> usize {
        self.heap.len()
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
        }
        assert!(compactions > 0, "stale entries were dropped in bulk");
    }
}
