//! What the connection and the server tell the session: connected,
//! disconnected, a pong, a reply, a connection error, bytes arriving or
//! leaving, a new server incarnation.

use std::collections::hash_map::Entry;

use ebb_core::{Instant, Nanos};

use super::super::CallId;
use super::super::call::LinkState;
use super::ClientSession;
use crate::CallError;
use crate::wire::{ConnError, Incarnation, Message, Pong, Refusal, Reply, Seq};

impl ClientSession {
    /// A (new) transport connection to the server is up.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.link != LinkState::Disconnected {
            self.handle_disconnect(now);
        }
        self.link = LinkState::Handshaking;
        self.last_heard = now;
        self.handed_bytes = 0;
        self.written_bytes = self.written_bytes.map(|_| 0);
        self.receiving = false;
        for call in self.calls.values_mut() {
            call.retransmits = 0;
            call.sent_before = call.sent;
            call.copy_end = 0;
            call.was_leaving = false;
        }
        self.send_ping(now);
        self.flush(now);
    }

    /// The transport connection broke. Calls stay; they are resent on the
    /// next connection, or end with `ConnectionLost` at their deadline.
    pub fn handle_disconnect(&mut self, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        self.link = LinkState::Disconnected;
        self.disconnected_since = now;
        self.transmit.clear();
        self.queued_requests = 0;
        let timed: Vec<Seq> = self
            .retransmit_timers
            .entries()
            .filter(|&(at, s)| self.timer_live(at, s))
            .map(|(_, s)| s)
            .collect();
        self.retransmit_timers.clear();
        for seq in timed {
            self.hold(seq);
        }
    }

    /// A message arrived from the server on the current connection.
    pub fn handle_message(&mut self, message: Message, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        self.receiving = false;
        match message {
            Message::Pong(pong) if pong.client == self.id => self.handle_pong(pong, now),
            Message::Reply(reply) if reply.client == self.id => self.handle_reply(reply, now),
            Message::ConnError(e) => {
                self.heard(now);
                self.handle_connection_error(&e, now);
                return;
            }
            // Another client's, or not for a session (descriptions).
            _ => return,
        }
        self.flush(now);
        self.debug_check();
    }

    pub(super) fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    pub(super) fn handle_pong(&mut self, pong: Pong, now: Instant) {
        self.heard(now);
        self.reported_load = Some(pong.load);
        self.observe_incarnation(pong.incarnation, now);
        match pong.refused {
            None => {
                self.refused_credentials = None;
                if self.link == LinkState::Handshaking {
                    self.link = LinkState::Ready;
                }
            }
            Some(reason) => {
                if reason == Refusal::Unauthorized {
                    self.refused_credentials =
                        Some(String::from_utf8_lossy(&pong.message).into_owned());
                }
                // No session on the server: calls never sent can be refused
                // truthfully; sent ones wait for a later handshake, which
                // the ping timer retries.
                self.link = LinkState::Handshaking;
                let never_sent: Vec<Seq> = self
                    .held_at_most_once
                    .iter()
                    .copied()
                    .filter(|s| self.calls.get(s).is_some_and(|c| !c.sent))
                    .collect();
                let message = String::from_utf8_lossy(&pong.message).into_owned();
                for seq in never_sent {
                    let e = CallError::Refused {
                        reason,
                        message: message.clone(),
                    };
                    self.finish(seq, Err(e));
                }
            }
        }
    }

    pub(super) fn handle_reply(&mut self, reply: Reply, now: Instant) {
        self.heard(now);
        self.reported_load = Some(reply.load);
        if reply.service_time > Nanos::ZERO {
            self.reported_service_time = Some(reply.service_time);
        }
        self.observe_incarnation(reply.incarnation, now);
        // One hash lookup finds the call, decides and removes it.
        let Entry::Occupied(entry) = self.calls.entry(reply.seq) else {
            return;
        };
        let call = entry.get();
        let answers = call.sent
            && call.spec.method == reply.method
            && call.spec.idempotent == reply.idempotent
            && call.spec.json == reply.json;
        // A refused copy of an idempotent call that went out more than once
        // says only that this copy did not run: an earlier one may be
        // running (the server keeps no state to tell), so "did not run"
        // would be a lie. Its reply, a later copy's, or the deadline ends
        // the call.
        let refused = matches!(
            reply.outcome,
            crate::wire::Outcome::Refused(_) | crate::wire::Outcome::Overloaded { .. }
        );
        let inconclusive =
            refused && call.spec.idempotent && (call.retransmits > 0 || call.sent_before);
        if !answers || inconclusive {
            return;
        }
        let call = entry.remove();
        let seq = reply.seq;
        let result =
            if reply.outcome == crate::wire::Outcome::OutcomeUnknown && now >= call.deadline {
                // Read at or past the deadline, "may have run" is the server's
                // word for that deadline (it cancels a call still running past
                // it): the call ends as its own timer would have ended it. A
                // driver woken late on a loaded machine reads what arrived
                // before it fires its timers, so which of the two it saw first
                // must not decide the answer.
                Err(CallError::DeadlineExceeded {
                    elapsed: call.deadline.saturating_since(call.started),
                    sent: true,
                })
            } else {
                CallError::from_reply(&reply, call.sent_to).map(|()| reply.payload)
            };
        self.forget(seq, &call);
        self.events.push_back((CallId(seq.0), result));
    }

    /// Bytes of a message not yet complete arrived from the server. They
    /// prove it alive as well as a whole message would, so they restart
    /// the silence clock: the stream is in order, so while a large reply
    /// crosses, the pong to any ping comes only after it, and counting
    /// silence until the reply is whole would declare a server dead for
    /// sending us a large reply slowly. A server that stops sending
    /// mid-frame is silent again from its last bytes.
    pub fn handle_progress(&mut self, now: Instant) {
        if self.link != LinkState::Disconnected {
            self.heard(now);
            self.receiving = true;
        }
    }

    /// The transport has written `written` bytes in all of the messages
    /// handed to it on the current connection (a running total, counted
    /// from 0 at each connection). Bytes the transport wrote of its own
    /// accord must be left out: subtracting all of them, wherever they went
    /// in the stream, errs on the side of a copy still leaving. Two rules
    /// follow. Bytes leaving count as
    /// hearing from the server, as arriving ones do: while a large request
    /// of ours is being written, the server's answer to any later ping
    /// waits behind it in the stream, and a slow link would otherwise look
    /// like a dead server. And a call is not resent while its previous
    /// copy is still being written: the resend would queue behind it on
    /// the same stream and carry the whole payload a second time. A
    /// transport that never calls this gets neither rule. Progress is
    /// noticed when the transport reports it, so a write that stalls is
    /// declared silent up to one report late.
    pub fn handle_written(&mut self, written: u64, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        let before = self.written_bytes.unwrap_or(0);
        if written > before {
            self.heard(now);
        }
        self.written_bytes = Some(written.max(before));
    }

    /// The server answered the connection, not a call, and closes it. When
    /// it refused the connection unread (server full), calls sent only on
    /// this connection did not run and end now, truthfully; calls sent on
    /// an earlier one wait for a later connection or their deadline. When it
    /// could not parse our frames, which a resend would repeat, every call
    /// ends. When it timed the connection out, calls wait for the next one.
    pub(super) fn handle_connection_error(&mut self, e: &ConnError, now: Instant) {
        self.observe_incarnation(e.incarnation, now);
        let ending: Vec<(Seq, bool)> = self
            .seqs()
            .into_iter()
            .filter_map(|s| Some((s, self.calls.get(&s)?)))
            .filter(|(_, c)| {
                if e.kind.unread() {
                    !c.sent_before
                } else {
                    e.kind == crate::wire::ConnErrorKind::BadFrame
                }
            })
            .map(|(s, c)| (s, c.sent && !e.kind.unread()))
            .collect();
        for (seq, sent) in ending {
            self.finish(seq, Err(CallError::from_conn_error(e, sent)));
        }
        self.handle_disconnect(now);
        self.close_requested = true;
        self.debug_check();
    }

    /// A message naming a new incarnation: the server lost its state. Calls
    /// sent at-most-once to the old one end `OutcomeUnknown`; idempotent
    /// calls in flight are resent at once.
    pub(super) fn observe_incarnation(&mut self, new: Incarnation, now: Instant) {
        let Some(old) = self.incarnation.replace(new) else {
            return;
        };
        if old == new {
            return;
        }
        let affected: Vec<(Seq, bool, Option<Incarnation>, bool, bool)> = self
            .seqs()
            .into_iter()
            .filter_map(|s| {
                let c = self.calls.get(&s)?;
                let in_flight = c.retransmit_at.is_some();
                Some((s, c.spec.idempotent, c.sent_to, c.sent, in_flight))
            })
            .collect();
        for (seq, idempotent, sent_to, sent, in_flight) in affected {
            match (idempotent, sent_to) {
                (false, Some(at)) if sent && at != new => {
                    let e = CallError::OutcomeUnknown {
                        old: at.get(),
                        new: new.get(),
                    };
                    self.finish(seq, Err(e));
                }
                (true, _) if sent && in_flight => self.send(seq, now),
                _ => {}
            }
        }
        // Resends left their earlier timers stale.
        self.prune_timers();
    }
}
