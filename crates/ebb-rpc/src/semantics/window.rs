//! One client session's calls in its at-most-once window, as a ring indexed
//! by `seq - ack_below`.
//!
//! The window is `[ack_below, ack_below + MAX_REPLIES_PER_CLIENT)` and
//! moves forward only, one or two calls at a time, so a ring of slots does
//! in a subtraction and an index what an ordered map did in a tree search
//! with node allocations, on the path every call takes three times (admit,
//! complete, acknowledge).
//!
//! Invariant: slot `i` holds the call with seq `base + i`; the ring never
//! holds more than `MAX_REPLIES_PER_CLIENT` slots, so its memory is bounded
//! like the ordered map's worst case (a full window).

use std::collections::VecDeque;

use super::MAX_REPLIES_PER_CLIENT;
use super::reply_table::Entry;
use crate::wire::{Reply, Seq};

#[derive(Debug, Default)]
pub struct Window {
    /// The seq of slot 0: the session's `ack_below`.
    base: u64,
    slots: VecDeque<Option<Entry>>,
    /// Occupied slots.
    len: usize,
}

impl Window {
    fn index(&self, seq: Seq) -> Option<usize> {
        let i = seq.0.checked_sub(self.base)?;
        (i < MAX_REPLIES_PER_CLIENT).then_some(i as usize)
    }

    pub fn get(&self, seq: &Seq) -> Option<&Entry> {
        self.slots.get(self.index(*seq)?)?.as_ref()
    }

    /// The slot of `seq`, grown to if needed; `None` outside the window
    /// (the session's checks keep every call they record inside it).
    pub fn slot_mut(&mut self, seq: Seq) -> Option<&mut Option<Entry>> {
        let i = self.index(seq)?;
        // Calls usually arrive in seq order: one new slot at the end.
        if i == self.slots.len() {
            self.slots.push_back(None);
        } else if i > self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        self.slots.get_mut(i)
    }

    /// Records `entry` for `seq`; returns what it replaced. A seq outside
    /// the window is not recorded (returned back).
    pub fn insert(&mut self, seq: Seq, entry: Entry) -> Option<Entry> {
        let Some(slot) = self.slot_mut(seq) else {
            debug_assert!(false, "seq {seq} recorded outside its window");
            return Some(entry);
        };
        let old = slot.replace(entry);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Forgets `seq`'s entry; returns it.
    pub fn remove(&mut self, seq: Seq) -> Option<Entry> {
        let i = self.index(seq)?;
        let old = self.slots.get_mut(i)?.take();
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Records a finished call's reply for `seq`; returns what it replaced
    /// and the reply as saved, or the reply back if `seq` is outside the
    /// window.
    pub fn put_done(&mut self, seq: Seq, reply: Reply) -> Result<(Option<Entry>, &Reply), Reply> {
        let Some(i) = self.index(seq) else {
            return Err(reply);
        };
        // The call's marker usually holds its slot already.
        if i >= self.slots.len() {
            self.slots.resize_with(i + 1, || None);
        }
        let Some(slot) = self.slots.get_mut(i) else {
            return Err(reply);
        };
        let old = slot.take();
        if old.is_none() {
            self.len += 1;
        }
        match slot.insert(Entry::Done(reply)) {
            Entry::Done(saved) => Ok((old, saved)),
            Entry::Running => unreachable!("the slot was just set to Done"),
        }
    }

    /// Moves the window to start at `base`, handing every entry below it
    /// to `forget`.
    pub fn advance_to(&mut self, base: Seq, mut forget: impl FnMut(Entry)) {
        if base.0 <= self.base {
            return;
        }
        let drop = usize::try_from(base.0 - self.base).unwrap_or(usize::MAX);
        if drop >= self.slots.len() {
            for e in self.slots.drain(..).flatten() {
                forget(e);
            }
            self.len = 0;
        } else {
            for e in self.slots.drain(..drop).flatten() {
                self.len -= 1;
                forget(e);
            }
        }
        self.base = base.0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The recorded calls in seq order.
    pub fn iter(&self) -> impl Iterator<Item = (Seq, &Entry)> {
        let base = self.base;
        self.slots
            .iter()
            .enumerate()
            .filter_map(move |(i, e)| Some((Seq(base + i as u64), e.as_ref()?)))
    }

    pub fn keys(&self) -> impl Iterator<Item = Seq> + '_ {
        self.iter().map(|(s, _)| s)
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> {
        self.iter().map(|(_, e)| e)
    }

    /// Checks the occupied count against the slots.
    pub fn check(&self) -> Result<(), String> {
        let occupied = self.slots.iter().filter(|s| s.is_some()).count();
        if occupied != self.len || self.slots.len() as u64 > MAX_REPLIES_PER_CLIENT {
            return Err(format!(
                "window counts {} entries, holds {occupied} in {} slots",
                self.len,
                self.slots.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entries_are_found_by_seq_and_forgotten_below_the_base() {
        let mut w = Window::default();
        w.advance_to(Seq(10), |_| {});
        assert_eq!(w.insert(Seq(12), Entry::Running), None);
        assert_eq!(w.insert(Seq(10), Entry::Running), None);
        assert_eq!(w.insert(Seq(12), Entry::Running), Some(Entry::Running));
        assert_eq!(w.len(), 2);
        assert_eq!(w.keys().collect::<Vec<_>>(), vec![Seq(10), Seq(12)]);
        assert!(w.get(&Seq(11)).is_none());
        assert!(w.get(&Seq(9)).is_none());
        let mut forgotten = 0;
        w.advance_to(Seq(11), |_| forgotten += 1);
        assert_eq!((forgotten, w.len()), (1, 1));
        assert_eq!(w.get(&Seq(12)), Some(&Entry::Running));
        w.advance_to(Seq(1000), |_| forgotten += 1);
        assert_eq!((forgotten, w.len()), (2, 0));
        w.check().unwrap();
    }

    #[test]
    fn a_seq_past_the_window_is_not_recorded() {
        let mut w = Window::default();
        assert!(w.slot_mut(Seq(MAX_REPLIES_PER_CLIENT)).is_none());
        assert!(w.slot_mut(Seq(MAX_REPLIES_PER_CLIENT - 1)).is_some());
    }
}
