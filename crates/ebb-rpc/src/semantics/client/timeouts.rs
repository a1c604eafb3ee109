//! The session's timers: deadlines, the failure detector, retransmissions
//! and heartbeats, and when the transport must call next.

use ebb_core::Instant;

use super::super::call::LinkState;
use super::ClientSession;
use crate::CallError;
use crate::wire::Seq;

impl ClientSession {
    /// Fires every timer due at `now`: deadlines, the failure detector,
    /// retransmissions, heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            let Some(call) = self.calls.get(&seq) else {
                continue;
            };
            let sent = call.sent;
            let err = match self.link {
                LinkState::Disconnected => CallError::ConnectionLost {
                    sent,
                    cause: format!(
                        "disconnected since {}, not reconnected before the deadline",
                        self.disconnected_since
                    ),
                },
                _ => CallError::DeadlineExceeded {
                    elapsed: at.saturating_since(call.started),
                    sent,
                },
            };
            self.finish(seq, Err(err));
        }
        if self.link != LinkState::Disconnected
            && now >= self.last_heard + self.cfg.heartbeat_silence
        {
            // Calls sent to the silent server end now, so the caller can act
            // (move idempotent ones); calls never sent wait for the next
            // connection, since nothing is known to be wrong with them.
            let silent = now.saturating_since(self.last_heard);
            let sent: Vec<Seq> = self
                .seqs()
                .into_iter()
                .filter(|s| self.calls.get(s).is_some_and(|c| c.sent))
                .collect();
            for seq in sent {
                self.finish(seq, Err(CallError::ServerUnresponsive { silent }));
            }
            self.handle_disconnect(now);
            self.close_requested = true;
            self.debug_check();
            return;
        }
        let mut postponed = Vec::new();
        while let Some((at, seq)) = self.retransmit_timers.first() {
            if at > now {
                break;
            }
            self.retransmit_timers.pop();
            if !self.timer_live(at, seq) {
                continue;
            }
            let Some(call) = self.calls.get_mut(&seq) else {
                continue;
            };
            call.retransmit_at = None;
            let leaving = self.written_bytes.is_some_and(|w| call.copy_end > w);
            let just_left = call.was_leaving && !leaving;
            call.was_leaving = leaving;
            if !call.spec.idempotent && self.link != LinkState::Ready {
                self.hold(seq);
            } else if leaving || just_left || self.receiving {
                // The copy is still being written, or has only just been,
                // or a message (maybe its reply) is arriving: a resend now
                // would cross the same stream behind it, or reach a server
                // that has had the request for no time at all. Asked again
                // one backoff later; the silence detector and the deadline
                // still end the call.
                postponed.push(seq);
            } else if call.retransmits < self.cfg.max_retransmits {
                call.retransmits += 1;
                self.send(seq, now);
            }
        }
        for seq in postponed {
            if let Some(call) = self.calls.get_mut(&seq) {
                let at = now + self.cfg.backoff(call.retransmits);
                call.retransmit_at = Some(at);
                self.retransmit_timers.push(at, seq);
                self.postponed_retransmits += 1;
            }
        }
        if let Some(at) = self.next_ping_at()
            && at <= now
        {
            self.send_ping(now);
        }
        self.flush(now);
        self.prune_timers();
        self.debug_check();
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Both queues' earliest entries are live (pruned after every
        // removal), so this is no earlier than it must be.
        let mut t = self.deadlines.first().map(|(at, _)| at);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.retransmit_timers.first().map(|(at, _)| at));
        consider(self.next_ping_at());
        if self.link != LinkState::Disconnected {
            consider(Some(self.last_heard + self.cfg.heartbeat_silence));
        }
        t
    }

    pub(super) fn next_ping_at(&self) -> Option<Instant> {
        match self.link {
            LinkState::Disconnected => None,
            LinkState::Handshaking => Some(self.last_ping + self.cfg.retransmit_after),
            LinkState::Ready => {
                Some(self.last_heard.max(self.last_ping) + self.cfg.heartbeat_interval)
            }
        }
    }

    /// Whether `(at, seq)` is `seq`'s current retransmission timer.
    pub(super) fn timer_live(&self, at: Instant, seq: Seq) -> bool {
        self.calls
            .get(&seq)
            .is_some_and(|c| c.retransmit_at == Some(at))
    }

    /// Drops the timers of ended or re-armed calls from the tops of both
    /// queues, and all of them when they pile up.
    pub(super) fn prune_timers(&mut self) {
        let calls = &self.calls;
        self.deadlines.prune(|_, s| calls.contains_key(&s));
        let timer_live = |at, s| calls.get(&s).is_some_and(|c| c.retransmit_at == Some(at));
        self.retransmit_timers.prune(timer_live);
        self.retransmit_timers.compact(calls.len(), timer_live);
    }
}
