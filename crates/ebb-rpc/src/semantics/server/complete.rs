//! A finished call: its reply recorded for duplicates (at-most-once) or
//! recycled (idempotent), its in-flight counts released, and the route its
//! reply takes. The one way out of `Execute`.

use bytes::Bytes;
use ebb_core::Instant;

use super::{CallKey, ServerSession};
use crate::semantics::conns::ConnId;
use crate::semantics::reply_table::{Entry, Saved};
use crate::wire::{Outcome, Reply};

impl ServerSession {
    /// Records a finished call's outcome and returns the reply, with the
    /// connection to send it on (its client's current route; `None`: the
    /// client has no connection now and will ask again). At-most-once
    /// outcomes are saved until the client acknowledges them, so duplicates
    /// get this same reply.
    ///
    /// Call it exactly once per `Execute`, whatever the outcome (an unknown
    /// method, undecodable arguments, a panic too): until then duplicates
    /// wait, and the call counts against its connection's in-flight bound.
    pub fn complete(
        &mut self,
        key: CallKey,
        outcome: Outcome,
        payload: Bytes,
        now: Instant,
    ) -> (Reply, Option<ConnId>) {
        self.complete_with(key, outcome, payload, now, |reply, route| {
            (reply.clone(), route)
        })
    }

    /// [`ServerSession::complete`] that lends the reply to `send` instead of
    /// returning a copy: the transport encodes it straight from the reply
    /// table, so a saved reply's payload is never shared (sharing a `Bytes`
    /// made from a `Vec` allocates).
    pub fn complete_with<R>(
        &mut self,
        key: CallKey,
        outcome: Outcome,
        payload: Bytes,
        now: Instant,
        send: impl FnOnce(&Reply, Option<ConnId>) -> R,
    ) -> R {
        debug_assert!(self.executing > 0, "complete without an Execute");
        self.executing = self.executing.saturating_sub(1);
        let service_time = self.service_time.completed(now);
        self.conns.finished(key.conn);
        if self.config.max_in_flight_per_caller.is_some()
            && let Some(n) = self.callers.get_mut(&key.caller)
        {
            *n -= 1;
            if *n == 0 {
                self.callers.remove(&key.caller);
            }
        }
        if outcome == Outcome::Panicked {
            self.stats.panicked += 1;
        }
        let reply = Reply {
            client: key.client,
            seq: key.seq,
            incarnation: self.incarnation,
            method: key.method,
            idempotent: key.idempotent,
            json: key.json,
            outcome,
            load: self.load(),
            service_time,
            payload,
        };
        let route = if key.proven {
            self.conns.route_of(key.client)
        } else {
            Some(key.conn).filter(|&c| self.conns.is_open(c))
        };
        self.debug_check();
        if key.idempotent {
            // Nothing keeps an idempotent reply: once encoded, its buffer
            // can carry the next one.
            let sent = send(&reply, route);
            crate::reply_pool::recycle(reply.payload);
            return sent;
        }
        // A session evicted meanwhile has nothing to record into; its
        // client will get `OutcomeUnknown` for this call if it asks again.
        let Some(mut state) = self.table.touch(key.client, now) else {
            return send(&reply, route);
        };
        // Only a running call's marker takes its reply. A saved reply can
        // already be there when the same seq ran twice: its session expired
        // while it ran and a handshake reopened it with a floor at or below
        // this seq. Only the holder of the client's secret can send that
        // handshake, and a correct client's floor is above every seq it
        // sent, so only a client lying about its own floor gets here (the
        // session fuzzer's pings do). The first saved reply stays, so every
        // duplicate keeps getting the same one.
        if state.entries.get(&key.seq) != Some(&Entry::Running) {
            return send(&reply, route);
        }
        let saved = state.save(key.seq, reply, self.config.max_saved_reply_bytes_per_client);
        if matches!(saved, Saved::Replaced { .. }) {
            self.stats.replies_not_kept += 1;
        }
        send(saved.reply(), route)
    }
}
