//! The invariants the session's indexes keep, checked in full for tests
//! and fuzzing and cheaply on every step of a debug build.

use std::collections::BTreeSet;

use ebb_core::Instant;

use super::ClientSession;
use crate::wire::{Message, Seq};

impl ClientSession {
    /// Checks every claim this session makes about its indexes: each call
    /// has exactly one deadline entry; a call is held or has a retransmit
    /// timer, never both, and the timer index agrees with the call; held and
    /// timed calls exist; seqs stay below `next_seq` and the floor above
    /// every at-most-once call sent. Walks everything: for tests and fuzzing.
    pub fn check(&self) -> Result<(), String> {
        let deadlines: BTreeSet<(Instant, Seq)> = self
            .deadlines
            .entries()
            .filter(|(_, s)| self.calls.contains_key(s))
            .collect();
        if deadlines.len() != self.calls.len() {
            return Err(format!(
                "{} live deadlines for {} calls",
                deadlines.len(),
                self.calls.len()
            ));
        }
        for &(at, seq) in &deadlines {
            if self.calls.get(&seq).map(|c| c.deadline) != Some(at) {
                return Err(format!("deadline entry of {seq} disagrees with its call"));
            }
        }
        let timers: BTreeSet<(Instant, Seq)> = self.retransmit_timers.entries().collect();
        for (&seq, call) in &self.calls {
            if let Some(at) = call.retransmit_at
                && !timers.contains(&(at, seq))
            {
                return Err(format!("{seq} is in flight without its retransmit timer"));
            }
        }
        for (queue, name) in [
            (&self.deadlines, "deadline"),
            (&self.retransmit_timers, "retransmit"),
        ] {
            if queue.len() > (2 * self.calls.len()).max(64) + 1 {
                return Err(format!(
                    "{} {name} entries for {} calls: stale ones pile up",
                    queue.len(),
                    self.calls.len()
                ));
            }
        }
        if let Some(min) = self.calls.keys().min()
            && *min != self.lowest
        {
            return Err(format!("lowest {} but call {min} outstanding", self.lowest));
        }
        for (held, idempotent) in [
            (&self.held_idempotent, true),
            (&self.held_at_most_once, false),
        ] {
            for seq in held {
                let Some(call) = self.calls.get(seq) else {
                    return Err(format!("held {seq} has no call"));
                };
                if call.spec.idempotent != idempotent || call.retransmit_at.is_some() {
                    return Err(format!("held {seq} is in the wrong queue or also timed"));
                }
            }
        }
        for (&seq, call) in &self.calls {
            if seq >= self.next_seq {
                return Err(format!("call {seq} at or above next_seq {}", self.next_seq));
            }
            if call.sent && !call.spec.idempotent && seq >= self.amo_floor {
                return Err(format!("sent at-most-once {seq} at or above the floor"));
            }
            let timed = call.retransmit_at.is_some();
            let held = self.held_idempotent.contains(&seq) || self.held_at_most_once.contains(&seq);
            if timed && held {
                return Err(format!("call {seq} both held and timed"));
            }
        }
        if self.calls.len() > self.cfg.max_outstanding_calls {
            return Err(format!("{} calls over the bound", self.calls.len()));
        }
        let requests = self
            .transmit
            .iter()
            .filter(|m| matches!(m, Message::Request(_)))
            .count();
        if requests != self.queued_requests {
            return Err(format!(
                "{requests} requests queued, {} counted",
                self.queued_requests
            ));
        }
        Ok(())
    }

    /// The cheap part of [`ClientSession::check`], on every step of a debug build.
    pub(super) fn debug_check(&self) {
        debug_assert!(
            self.deadlines.len() >= self.calls.len(),
            "a deadline per call"
        );
        debug_assert!(
            self.held_idempotent.len() + self.held_at_most_once.len() <= self.calls.len(),
            "held calls exist"
        );
        debug_assert!(
            self.calls.is_empty() || self.calls.contains_key(&self.lowest),
            "the lowest outstanding call is known"
        );
        debug_assert!(self.calls.len() <= self.cfg.max_outstanding_calls);
    }
}
