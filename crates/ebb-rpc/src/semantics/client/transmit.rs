//! What the session puts on the wire: requests (sent, held until the
//! handshake or the window allows, resent) and pings, and how the
//! transport takes them.

use bytes::Bytes;
use ebb_core::Instant;

use super::super::MAX_REPLIES_PER_CLIENT;
use super::super::call::LinkState;
use super::ClientSession;
use crate::wire::{Message, Ping, Request, Seq};

impl ClientSession {
    /// The next message to write to the connection.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        let mut message = self.transmit.pop_front()?;
        let mut copy_of = None;
        if let Message::Request(r) = &mut message {
            self.queued_requests -= 1;
            if let Some(call) = self.calls.get(&r.seq) {
                r.payload = call.payload.clone();
                copy_of = Some(r.seq);
            }
        }
        self.handed(&message, copy_of);
        Some(message)
    }

    /// Counts `message` as handed to the transport; `copy_of` names the
    /// call it is a copy of.
    pub(super) fn handed(&mut self, message: &Message, copy_of: Option<Seq>) {
        self.handed_bytes += message.encoded_len() as u64;
        if let Some(call) = copy_of.and_then(|s| self.calls.get_mut(&s)) {
            call.copy_end = self.handed_bytes;
        }
    }

    /// Hands every message to write to `write`, in order, as
    /// [`ClientSession::poll_transmit`] would, but lends each request its
    /// call's payload instead of sharing it: sharing a payload made from a
    /// `Vec` costs an allocation, which a transport that copies small
    /// payloads into its output buffer does not need.
    pub fn drain_transmit(&mut self, mut write: impl FnMut(&Message)) {
        while let Some(message) = self.transmit.pop_front() {
            let Message::Request(mut r) = message else {
                write(&message);
                self.handed(&message, None);
                continue;
            };
            self.queued_requests -= 1;
            let Some(call) = self.calls.get_mut(&r.seq) else {
                let orphan = Message::Request(r);
                write(&orphan);
                self.handed(&orphan, None);
                continue;
            };
            r.payload = std::mem::take(&mut call.payload);
            let lent = Message::Request(r);
            write(&lent);
            self.handed_bytes += lent.encoded_len() as u64;
            call.copy_end = self.handed_bytes;
            if let Message::Request(r) = lent {
                call.payload = r.payload;
            }
        }
    }

    /// Whether a new call may skip the held queues: the fast path, taken
    /// only when it would be sent first anyway.
    pub(super) fn can_send_now(&self, idempotent: bool, seq: Seq) -> bool {
        match self.link {
            LinkState::Disconnected => false,
            _ if idempotent => self.held_idempotent.is_empty(),
            LinkState::Handshaking => false,
            LinkState::Ready => {
                self.held_at_most_once.is_empty()
                    && seq < self.ack_below().plus(MAX_REPLIES_PER_CLIENT)
            }
        }
    }

    /// Sends held calls the connection state and the window allow.
    pub(super) fn flush(&mut self, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        while let Some(seq) = self.held_idempotent.pop_first() {
            self.send(seq, now);
        }
        if self.link != LinkState::Ready {
            return;
        }
        let limit = self.ack_below().plus(MAX_REPLIES_PER_CLIENT);
        while let Some(&seq) = self.held_at_most_once.first() {
            if seq >= limit {
                break;
            }
            self.held_at_most_once.remove(&seq);
            self.send(seq, now);
        }
    }

    /// Puts `seq` on the wire (again) and arms its retransmission timer.
    pub(super) fn send(&mut self, seq: Seq, now: Instant) {
        let ack_below = self.ack_below();
        let incarnation = self.incarnation;
        let Some(call) = self.calls.get_mut(&seq) else {
            return;
        };
        // A timer armed before goes stale: the call's `retransmit_at`
        // names the new one.
        if !call.sent {
            call.sent = true;
            call.sent_to = incarnation;
        }
        if !call.spec.idempotent {
            debug_assert!(
                call.sent_to.is_some(),
                "at-most-once calls wait for the handshake"
            );
            self.amo_floor = self.amo_floor.max(seq.next());
        }
        let at = now + self.cfg.backoff(call.retransmits);
        call.retransmit_at = Some(at);
        self.retransmit_timers.push(at, seq);
        self.transmit.push_back(Message::Request(Request {
            client: self.id,
            seq,
            ack_below,
            // An at-most-once call names the incarnation it was first sent
            // to, so a restarted server refuses it rather than run it again.
            incarnation: if call.spec.idempotent {
                incarnation
            } else {
                call.sent_to
            },
            deadline: call.deadline.saturating_since(now),
            method: call.spec.method,
            idempotent: call.spec.idempotent,
            json: call.spec.json,
            // Lent from the call when polled.
            payload: Bytes::new(),
        }));
        self.queued_requests += 1;
    }

    pub(super) fn send_ping(&mut self, now: Instant) {
        self.last_ping = now;
        self.transmit.push_back(Message::Ping(Ping {
            client: self.id,
            floor: self.amo_floor,
            ack_below: self.ack_below(),
            incarnation: self.incarnation,
            secret: self.secret,
            token: self.token.clone(),
        }));
    }

    pub(super) fn hold(&mut self, seq: Seq) {
        if let Some(call) = self.calls.get_mut(&seq) {
            call.retransmit_at = None;
            if call.spec.idempotent {
                self.held_idempotent.insert(seq);
            } else {
                self.held_at_most_once.insert(seq);
            }
        }
    }
}
