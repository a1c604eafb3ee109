//! The client half of the call semantics, one per server connection.
//!
//! Life of a connection: `handle_connected` sends a ping (the handshake);
//! idempotent calls go out at once, at-most-once calls wait for the pong,
//! which names the server's incarnation and opens our session on the server.
//! Every at-most-once request then names the incarnation it was first sent
//! to, so a restarted server refuses it (`OutcomeUnknown`) instead of running
//! it a second time. Calls are resent on a backoff timer and after a
//! reconnect; every call ends by its deadline at the latest.
//!
//! One `ClientSession` per `ClientId`: give each session a fresh random id
//! ([`ClientId::random`]) and keep the session across reconnects to the same
//! server, since sequence numbers are only unique within it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use super::call::{Call, ClientConfig, LinkState, MovedCall, outcome};
use super::{CallId, MAX_REPLIES_PER_CLIENT};
use crate::CallError;
use crate::wire::{FLAG_IDEMPOTENT, Frame, FrameKind, NO_CALL, Status};

/// A call's end, as `poll_event` hands it out.
pub type CallOutcome = (CallId, Result<Bytes, CallError>);

#[derive(Debug)]
pub struct ClientSession {
    id: ClientId,
    cfg: ClientConfig,
    next_seq: u64,
    /// One above the highest at-most-once seq ever sent: the session floor
    /// the server records at the handshake.
    amo_floor: u64,
    calls: BTreeMap<u64, Call>,
    deadlines: BTreeSet<(Instant, u64)>,
    retransmit_timers: BTreeSet<(Instant, u64)>,
    /// Calls not in flight on the current connection, waiting to be sent.
    held_idempotent: BTreeSet<u64>,
    held_at_most_once: BTreeSet<u64>,
    link: LinkState,
    disconnected_since: Instant,
    /// The server's incarnation as last heard; 0 until first heard.
    incarnation: u64,
    last_heard: Instant,
    last_ping: Instant,
    transmit: VecDeque<Frame>,
    events: VecDeque<CallOutcome>,
    close_requested: bool,
}

impl ClientSession {
    pub fn new(id: ClientId, cfg: ClientConfig, now: Instant) -> ClientSession {
        ClientSession {
            id,
            cfg,
            next_seq: 1,
            amo_floor: 1,
            calls: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            retransmit_timers: BTreeSet::new(),
            held_idempotent: BTreeSet::new(),
            held_at_most_once: BTreeSet::new(),
            link: LinkState::Disconnected,
            disconnected_since: now,
            incarnation: 0,
            last_heard: now,
            last_ping: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            close_requested: false,
        }
    }

    pub fn client_id(&self) -> ClientId {
        self.id
    }

    pub fn link(&self) -> LinkState {
        self.link
    }

    /// The server incarnation last heard (0: none heard yet).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn outstanding(&self) -> usize {
        self.calls.len()
    }

    /// The lowest seq this session still waits for.
    pub fn ack_below(&self) -> u64 {
        self.calls.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// Starts a call that must end by the absolute instant `deadline`.
    /// Refuses with `TooManyOutstanding` at the session's bound.
    pub fn start_call(
        &mut self,
        method: u16,
        idempotent: bool,
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
        self.next_seq += 1;
        self.calls
            .insert(seq, Call::new(method, idempotent, payload, now, deadline));
        self.deadlines.insert((deadline, seq));
        if deadline <= now {
            self.finish(seq, Err(CallError::DeadlineExceeded(Nanos::ZERO)));
        } else if self.can_send_now(idempotent, seq) {
            self.send(seq, now);
        } else {
            self.hold(seq);
            self.flush(now);
        }
        Ok(CallId(seq))
    }

    /// Forgets a call without an outcome event (the caller gave up on it).
    /// An at-most-once call may still run on the server.
    pub fn cancel(&mut self, id: CallId) -> bool {
        self.remove(id.0).is_some()
    }

    /// Takes an idempotent call out of this session so the caller can start
    /// it on another server. `None` for at-most-once calls, which must not
    /// move: a second server would not know the first already ran it.
    pub fn take_idempotent(&mut self, id: CallId) -> Option<MovedCall> {
        if !self.calls.get(&id.0)?.idempotent {
            return None;
        }
        self.remove(id.0).map(|c| MovedCall {
            method: c.method,
            payload: c.payload,
            deadline: c.deadline,
        })
    }

    /// A (new) transport connection to the server is up.
    pub fn handle_connected(&mut self, now: Instant) {
        if self.link != LinkState::Disconnected {
            self.handle_disconnect(now);
        }
        self.link = LinkState::Handshaking;
        self.last_heard = now;
        for call in self.calls.values_mut() {
            call.retransmits = 0;
            call.sent_before = call.sent_to.is_some();
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
        for (_, seq) in std::mem::take(&mut self.retransmit_timers) {
            self.hold(seq);
        }
    }

    /// A frame arrived from the server on the current connection.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        if frame.kind == FrameKind::Reply && frame.seq == NO_CALL {
            self.handle_connection_error(&frame, now);
            return;
        }
        if frame.client != self.id {
            return;
        }
        self.last_heard = self.last_heard.max(now);
        self.observe_incarnation(frame.incarnation, now);
        match frame.kind {
            FrameKind::Pong if frame.status == Status::Ok => {
                if self.link == LinkState::Handshaking {
                    self.link = LinkState::Ready;
                }
            }
            FrameKind::Pong => {
                // No session on the server: calls never sent can be refused
                // truthfully; sent ones wait for a later handshake, which
                // the ping timer retries.
                self.link = LinkState::Handshaking;
                let never_sent: Vec<u64> = self
                    .held_at_most_once
                    .iter()
                    .copied()
                    .filter(|s| self.calls.get(s).is_some_and(|c| c.sent_to.is_none()))
                    .collect();
                for seq in never_sent {
                    self.finish(seq, Err(CallError::Rejected(frame.message())));
                }
            }
            FrameKind::Reply => {
                let matches = self.calls.get(&frame.seq).is_some_and(|c| {
                    c.sent_to.is_some()
                        && c.method == frame.method
                        && c.idempotent == frame.is_idempotent()
                });
                if matches {
                    let sent_to = self.calls[&frame.seq].sent_to.unwrap_or(0);
                    let seq = frame.seq;
                    self.finish(seq, outcome(frame, sent_to));
                }
            }
            FrameKind::Request | FrameKind::Ping => {}
        }
        self.flush(now);
    }

    /// The server answered the connection, not a call, and closes it.
    /// `Rejected`: it refused the connection unread (server full), so calls
    /// sent only on this connection did not run and end now, truthfully;
    /// calls sent on an earlier one wait for a later connection or their
    /// deadline. Anything else: the server could not parse our frames, which
    /// a resend would repeat, so every call ends with the server's reason.
    fn handle_connection_error(&mut self, frame: &Frame, now: Instant) {
        let ending: Vec<u64> = if frame.status == Status::Rejected {
            self.calls
                .iter()
                .filter(|(_, c)| !c.sent_before)
                .map(|(&s, _)| s)
                .collect()
        } else {
            self.calls.keys().copied().collect()
        };
        for seq in ending {
            let e = match frame.status {
                Status::Rejected => CallError::Rejected(frame.message()),
                _ => CallError::BadRequest(frame.message()),
            };
            self.finish(seq, Err(e));
        }
        self.handle_disconnect(now);
        self.close_requested = true;
    }

    /// Fires every timer due at `now`: deadlines, the failure detector,
    /// retransmissions, heartbeats.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.deadlines.first() {
            if at > now {
                break;
            }
            let err = match self.link {
                LinkState::Disconnected => CallError::ConnectionLost(format!(
                    "disconnected since {}, not reconnected before the deadline",
                    self.disconnected_since
                )),
                _ => CallError::DeadlineExceeded(at.saturating_since(self.calls[&seq].started)),
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
            let sent: Vec<u64> = self
                .calls
                .iter()
                .filter(|(_, c)| c.sent_to.is_some())
                .map(|(&s, _)| s)
                .collect();
            for seq in sent {
                self.finish(seq, Err(CallError::ServerUnresponsive(silent)));
            }
            self.handle_disconnect(now);
            self.close_requested = true;
            return;
        }
        while let Some(&(at, seq)) = self.retransmit_timers.first() {
            if at > now {
                break;
            }
            self.retransmit_timers.remove(&(at, seq));
            let Some(call) = self.calls.get_mut(&seq) else {
                continue;
            };
            call.retransmit_at = None;
            if !call.idempotent && self.link != LinkState::Ready {
                self.hold(seq);
            } else if call.retransmits < self.cfg.max_retransmits {
                call.retransmits += 1;
                self.send(seq, now);
            }
        }
        if let Some(at) = self.next_ping_at()
            && at <= now
        {
            self.send_ping(now);
        }
        self.flush(now);
    }

    /// The next frame to write to the connection.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.transmit.pop_front()
    }

    /// The next call that ended.
    pub fn poll_event(&mut self) -> Option<CallOutcome> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.deadlines.first().map(|&(at, _)| at);
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        consider(self.retransmit_timers.first().map(|&(at, _)| at));
        consider(self.next_ping_at());
        if self.link != LinkState::Disconnected {
            consider(Some(self.last_heard + self.cfg.heartbeat_silence));
        }
        t
    }

    /// True once after the failure detector gave up on the connection: the
    /// transport should close it and reconnect (then `handle_connected`).
    pub fn poll_close(&mut self) -> bool {
        std::mem::take(&mut self.close_requested)
    }

    fn next_ping_at(&self) -> Option<Instant> {
        match self.link {
            LinkState::Disconnected => None,
            LinkState::Handshaking => Some(self.last_ping + self.cfg.retransmit_after),
            LinkState::Ready => {
                Some(self.last_heard.max(self.last_ping) + self.cfg.heartbeat_interval)
            }
        }
    }

    /// A frame naming a new incarnation: the server lost its state. Calls
    /// sent at-most-once to the old one end `OutcomeUnknown`; idempotent
    /// calls in flight are resent at once.
    fn observe_incarnation(&mut self, new: u64, now: Instant) {
        if new == 0 || new == self.incarnation {
            return;
        }
        let old = self.incarnation;
        self.incarnation = new;
        if old == 0 {
            return;
        }
        let affected: Vec<(u64, bool, Option<u64>, bool)> = self
            .calls
            .iter()
            .map(|(&s, c)| (s, c.idempotent, c.sent_to, c.retransmit_at.is_some()))
            .collect();
        for (seq, idempotent, sent_to, in_flight) in affected {
            match (idempotent, sent_to) {
                (false, Some(at)) if at != new => {
                    self.finish(seq, Err(CallError::OutcomeUnknown { old: at, new }));
                }
                (true, Some(_)) if in_flight => self.send(seq, now),
                _ => {}
            }
        }
    }

    /// Whether a new call may skip the held queues: the fast path, taken
    /// only when it would be sent first anyway.
    fn can_send_now(&self, idempotent: bool, seq: u64) -> bool {
        match self.link {
            LinkState::Disconnected => false,
            _ if idempotent => self.held_idempotent.is_empty(),
            LinkState::Handshaking => false,
            LinkState::Ready => {
                self.held_at_most_once.is_empty()
                    && seq < self.ack_below().saturating_add(MAX_REPLIES_PER_CLIENT)
            }
        }
    }

    /// Sends held calls the connection state and the window allow.
    fn flush(&mut self, now: Instant) {
        if self.link == LinkState::Disconnected {
            return;
        }
        while let Some(seq) = self.held_idempotent.pop_first() {
            self.send(seq, now);
        }
        if self.link != LinkState::Ready {
            return;
        }
        let limit = self.ack_below().saturating_add(MAX_REPLIES_PER_CLIENT);
        while let Some(&seq) = self.held_at_most_once.first() {
            if seq >= limit {
                break;
            }
            self.held_at_most_once.remove(&seq);
            self.send(seq, now);
        }
    }

    /// Puts `seq` on the wire (again) and arms its retransmission timer.
    fn send(&mut self, seq: u64, now: Instant) {
        let ack_below = self.ack_below();
        let Some(call) = self.calls.get_mut(&seq) else {
            return;
        };
        if let Some(at) = call.retransmit_at.take() {
            self.retransmit_timers.remove(&(at, seq));
        }
        let named = *call.sent_to.get_or_insert(self.incarnation);
        if !call.idempotent {
            self.amo_floor = self.amo_floor.max(seq + 1);
        }
        let at = now + self.cfg.backoff(call.retransmits);
        call.retransmit_at = Some(at);
        self.retransmit_timers.insert((at, seq));
        self.transmit.push_back(Frame {
            kind: FrameKind::Request,
            flags: if call.idempotent { FLAG_IDEMPOTENT } else { 0 },
            status: Status::Ok,
            client: self.id,
            seq,
            ack_below,
            incarnation: if call.idempotent {
                self.incarnation
            } else {
                named
            },
            deadline: call.deadline.saturating_since(now),
            method: call.method,
            payload: call.payload.clone(),
        });
    }

    fn send_ping(&mut self, now: Instant) {
        self.last_ping = now;
        self.transmit.push_back(Frame {
            kind: FrameKind::Ping,
            flags: 0,
            status: Status::Ok,
            client: self.id,
            seq: self.amo_floor,
            ack_below: self.ack_below(),
            incarnation: self.incarnation,
            deadline: Nanos::ZERO,
            method: 0,
            payload: Bytes::new(),
        });
    }

    fn hold(&mut self, seq: u64) {
        if let Some(call) = self.calls.get_mut(&seq) {
            call.retransmit_at = None;
            if call.idempotent {
                self.held_idempotent.insert(seq);
            } else {
                self.held_at_most_once.insert(seq);
            }
        }
    }

    fn remove(&mut self, seq: u64) -> Option<Call> {
        let call = self.calls.remove(&seq)?;
        self.deadlines.remove(&(call.deadline, seq));
        if let Some(at) = call.retransmit_at {
            self.retransmit_timers.remove(&(at, seq));
        }
        self.held_idempotent.remove(&seq);
        self.held_at_most_once.remove(&seq);
        Some(call)
    }

    fn finish(&mut self, seq: u64, result: Result<Bytes, CallError>) {
        if self.remove(seq).is_some() {
            self.events.push_back((CallId(seq), result));
        }
    }
}
