//! Calls whose callers have stopped waiting. A request carries the time its
//! caller had left when it sent it; counted from when the server read it,
//! that gives the call's due (`Incoming::due`), which is never earlier than
//! the caller's own deadline. Past it the caller has been answered
//! (`DeadlineExceeded`, or `OutcomeUnknown` if it was sent), so running the
//! call further is capacity spent for nobody, the very thing an overloaded
//! node has least of. Two decisions, each recorded like any completion, so a
//! late copy of the call gets the same answer and nothing runs twice:
//!
//! - A call admitted but still queued at its due (a `#[blocking]` method
//!   waiting for a worker thread) does not start: it is refused
//!   `DeadlinePassed`, which says truthfully that it did not run.
//! - A call still running at its due plus `overdue_grace`
//!   (`Incoming::overdue_at`) is cancelled: its transport drops its future
//!   (the method stops at the await it is parked on) and the session records
//!   `OutcomeUnknown`, because the method may have done part of its work.
//!   An at-most-once call cancelled so is never run again.
//!
//! A `#[blocking]` method that has started cannot be cancelled: it holds a
//! worker thread, which nothing may stop from outside, until it returns. A
//! deferred call (answered through a `DeferredReply`) is its dispatcher's
//! to end.

use bytes::Bytes;
use ebb_core::Instant;

use super::{CallKey, ServerSession};
use crate::semantics::conns::ConnId;
use crate::semantics::reply_table::Entry;
use crate::wire::{Outcome, Refusal, Reply};

/// What a call refused at its start is answered with.
const NOT_STARTED_BY_DUE: &[u8] = b"the call waited for a worker past its deadline and did not run";
/// What a cancelled call is answered with.
const CANCELLED_OVERDUE: &[u8] =
    b"the call was still running past its deadline and was cancelled; it may have run in part";

impl ServerSession {
    /// Whether an admitted call that waited (a `#[blocking]` method queued
    /// for a worker) may start at `now`. `Err`: its due has passed, so it
    /// does not run: completed here as refused `DeadlinePassed`, recorded,
    /// its reply lent to `send` as [`ServerSession::complete_with`] does.
    /// `Ok`: run it, then complete it as usual.
    pub fn start_with<R>(
        &mut self,
        key: CallKey,
        due: Instant,
        now: Instant,
        send: impl FnOnce(&Reply, Option<ConnId>) -> R,
    ) -> Result<(), R> {
        if now < due {
            return Ok(());
        }
        self.stats.refused_deadline_before_start += 1;
        if self.planted_unrecorded_start_refusal {
            self.forget_running(key);
        }
        let why = Outcome::Refused(Refusal::DeadlinePassed);
        let message = Bytes::from_static(NOT_STARTED_BY_DUE);
        Err(self.complete_with(key, why, message, now, send))
    }

    /// Records a call its transport cancelled at its `overdue_at` (the
    /// transport dropped the method's future, obeying the instant this
    /// session set at admission): `OutcomeUnknown`, since the method may
    /// have done part of its work; saved, so a duplicate gets it and the
    /// call never runs again. Lends the reply to `send` as
    /// [`ServerSession::complete_with`] does.
    pub fn cancel_with<R>(
        &mut self,
        key: CallKey,
        now: Instant,
        send: impl FnOnce(&Reply, Option<ConnId>) -> R,
    ) -> R {
        self.stats.cancelled_overdue += 1;
        if self.planted_unrecorded_cancellation {
            self.forget_running(key);
        }
        let message = Bytes::from_static(CANCELLED_OVERDUE);
        self.complete_with(key, Outcome::OutcomeUnknown, message, now, send)
    }

    /// The planted bugs' forgetting: the call's in-progress marker goes, so
    /// its completion is answered but not saved.
    fn forget_running(&mut self, key: CallKey) {
        if let Some(mut state) = self.table.get_mut(key.client)
            && state.entries.get(&key.seq) == Some(&Entry::Running)
        {
            state.entries.remove(key.seq);
        }
    }
}
