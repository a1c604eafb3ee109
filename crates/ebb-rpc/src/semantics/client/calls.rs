//! Starting and ending calls, and keeping the session's indexes (calls by
//! seq, the lowest outstanding seq, held queues, timers) in step as calls
//! leave.

use bytes::Bytes;
use ebb_core::{Instant, Nanos};

use super::super::CallId;
use super::super::call::{Call, CallSpec, LinkState, MovedCall};
use super::ClientSession;
use crate::CallError;
use crate::wire::{Message, Refusal, Seq};

impl ClientSession {
    /// The outstanding calls' seqs, in order: for the rare paths that end
    /// or resend many calls, so outcomes come out in call order whatever
    /// the hash map's order.
    pub(super) fn seqs(&self) -> Vec<Seq> {
        let mut seqs: Vec<Seq> = self.calls.keys().copied().collect();
        seqs.sort_unstable();
        seqs
    }

    /// Starts a call of `method` with postcard arguments that must end by
    /// the absolute instant `deadline`. Refuses with `TooManyOutstanding` at
    /// the session's bound.
    pub fn start_call(
        &mut self,
        method: u16,
        idempotent: bool,
        payload: Bytes,
        deadline: Instant,
        now: Instant,
    ) -> Result<CallId, CallError> {
        let spec = CallSpec {
            method,
            idempotent,
            json: false,
        };
        self.start(spec, payload, deadline, now)
    }

    /// Starts a call as `spec` says (e.g. with JSON arguments).
    pub fn start(
        &mut self,
        spec: CallSpec,
        payload: Bytes,
        deadline: Instant,
        now: Instant,
    ) -> Result<CallId, CallError> {
        if self.calls.len() >= self.cfg.max_outstanding_calls {
            return Err(CallError::TooManyOutstanding {
                limit: self.cfg.max_outstanding_calls,
            });
        }
        let seq = self.next_seq;
        self.next_seq = seq.next();
        if self.calls.is_empty() {
            self.lowest = seq;
        }
        self.calls
            .insert(seq, Call::new(spec, payload, now, deadline));
        self.deadlines.push(deadline, seq);
        let calls = &self.calls;
        self.deadlines
            .compact(calls.len(), |_, s| calls.contains_key(&s));
        let refused = match &self.refused_credentials {
            Some(message) if !spec.idempotent && self.link == LinkState::Handshaking => {
                Some(message.clone())
            }
            _ => None,
        };
        if deadline <= now {
            let never = CallError::DeadlineExceeded {
                elapsed: Nanos::ZERO,
                sent: false,
            };
            self.finish(seq, Err(never));
        } else if let Some(message) = refused {
            let never = CallError::Refused {
                reason: Refusal::Unauthorized,
                message,
            };
            self.finish(seq, Err(never));
        } else if self.can_send_now(spec.idempotent, seq) {
            self.send(seq, now);
        } else {
            self.hold(seq);
            self.flush(now);
        }
        self.debug_check();
        Ok(CallId(seq.0))
    }

    /// Forgets a call without an outcome event (the caller gave up on it).
    /// An at-most-once call may still run on the server.
    pub fn cancel(&mut self, id: CallId) -> bool {
        self.remove(Seq(id.0)).is_some()
    }

    /// The caller learned that the server is gone (its process ended):
    /// every call ends now with `ConnectionLost`, saying whether a copy
    /// ever went out. A call that never went out certainly did not run, so
    /// the caller may run it elsewhere at once, at-most-once or not, rather
    /// than wait for its deadline.
    pub fn abandon_all(&mut self, cause: &str) {
        let ending: Vec<(Seq, bool)> = self
            .seqs()
            .into_iter()
            .filter_map(|s| Some((s, self.calls.get(&s)?.sent)))
            .collect();
        for (seq, sent) in ending {
            self.finish(
                seq,
                Err(CallError::ConnectionLost {
                    sent,
                    cause: cause.to_owned(),
                }),
            );
        }
        debug_assert!(self.calls.is_empty());
        self.debug_check();
    }

    /// Takes an idempotent call out of this session so the caller can start
    /// it on another server. `None` for at-most-once calls, which must not
    /// move: a second server would not know the first already ran it.
    pub fn take_idempotent(&mut self, id: CallId) -> Option<MovedCall> {
        if !self.calls.get(&Seq(id.0))?.spec.idempotent {
            return None;
        }
        self.remove(Seq(id.0)).map(|c| MovedCall {
            method: c.spec.method,
            json: c.spec.json,
            payload: c.payload,
            deadline: c.deadline,
        })
    }

    pub(super) fn remove(&mut self, seq: Seq) -> Option<Call> {
        let call = self.calls.remove(&seq)?;
        self.forget(seq, &call);
        Some(call)
    }

    /// Updates every index after `call` (`seq`) left `calls`.
    pub(super) fn forget(&mut self, seq: Seq, call: &Call) {
        if self.queued_requests > 0 {
            // Its queued requests still go out as they were sent.
            for m in &mut self.transmit {
                if let Message::Request(r) = m
                    && r.seq == seq
                {
                    r.payload = call.payload.clone();
                }
            }
        }
        if call.retransmit_at.is_none() {
            self.held_idempotent.remove(&seq);
            self.held_at_most_once.remove(&seq);
        }
        if seq == self.lowest {
            self.advance_lowest();
        }
        self.prune_timers();
    }

    /// Moves `lowest` up to the lowest outstanding seq after that call
    /// ended: past the seqs in between, or by one search of the calls when
    /// those would be many more than the calls left. Either way at most
    /// linear in the calls outstanding, and constant per call on average.
    pub(super) fn advance_lowest(&mut self) {
        if self.calls.is_empty() {
            self.lowest = self.next_seq;
            return;
        }
        let gap = self.next_seq.0 - self.lowest.0;
        if gap > 4 * self.calls.len() as u64 {
            if let Some(&min) = self.calls.keys().min() {
                self.lowest = min;
            }
            return;
        }
        while !self.calls.contains_key(&self.lowest) {
            self.lowest = self.lowest.next();
        }
    }

    pub(super) fn finish(&mut self, seq: Seq, result: Result<Bytes, CallError>) {
        if self.remove(seq).is_some() {
            self.events.push_back((CallId(seq.0), result));
        }
    }
}
