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
//! One `ClientSession` per `ClientId`: give each session a fresh random
//! secret ([`ClientSecret::random`], from the operating system's randomness)
//! and keep the session across reconnects to the same server, since
//! sequence numbers are only unique within it. The id is derived from the
//! secret, and every handshake shows the secret, so no other peer can act
//! on this session.

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use super::call::{Call, CallSpec, ClientConfig, LinkState, MovedCall};
use super::timers::TimerQueue;
use super::{CallId, MAX_REPLIES_PER_CLIENT};
use crate::CallError;
use crate::fast_map::FastMap;
use crate::wire::{
    ClientSecret, ConnError, Incarnation, Message, Ping, Pong, Refusal, Reply, Request, Seq,
};

/// A call's end, as `poll_event` hands it out.
pub type CallOutcome = (CallId, Result<Bytes, CallError>);

#[derive(Debug)]
pub struct ClientSession {
    id: ClientId,
    /// Proves `id` in every handshake.
    secret: ClientSecret,
    /// The bearer token every handshake carries (empty: none).
    token: Bytes,
    /// The server refused our last handshake for our credentials
    /// (`Unauthorized`), with its message: at-most-once calls that would
    /// wait for the next handshake end at once instead, since a resent
    /// handshake carries the same credentials. Cleared by an accepted one.
    refused_credentials: Option<String>,
    cfg: ClientConfig,
    next_seq: Seq,
    /// One above the highest at-most-once seq ever sent: the session floor
    /// the server records at the handshake.
    amo_floor: Seq,
    /// Calls outstanding, by seq. Hashed, not ordered: the per-call path
    /// only looks calls up; the rare paths that walk them in seq order sort
    /// ([`ClientSession::seqs`]).
    calls: FastMap<Seq, Call>,
    /// No call below this seq is outstanding; while any is, this one is:
    /// `ack_below` without a search.
    lowest: Seq,
    /// Each call's deadline (exactly one live entry per call).
    deadlines: TimerQueue,
    /// Live entries: calls in flight on the current connection, at their
    /// `retransmit_at`.
    retransmit_timers: TimerQueue,
    /// Calls not in flight on the current connection, waiting to be sent.
    held_idempotent: BTreeSet<Seq>,
    held_at_most_once: BTreeSet<Seq>,
    link: LinkState,
    disconnected_since: Instant,
    /// The server's incarnation as last heard; `None` until first heard.
    incarnation: Option<Incarnation>,
    /// The server's load as last reported (calls executing), if ever.
    reported_load: Option<u32>,
    /// The service time the server last reported measuring, if ever.
    reported_service_time: Option<Nanos>,
    last_heard: Instant,
    last_ping: Instant,
    /// Messages to send. A request's payload stays in its call until the
    /// request is polled (see [`ClientSession::drain_transmit`]); a call
    /// removed meanwhile hands its payload to its queued requests.
    transmit: VecDeque<Message>,
    /// Requests in `transmit`.
    queued_requests: usize,
    events: VecDeque<CallOutcome>,
    close_requested: bool,
    /// Bytes of messages handed to the transport on the current connection.
    handed_bytes: u64,
    /// Of those, bytes the transport reported written; `None` while it
    /// reports nothing (then a retransmit never waits for a copy to leave).
    written_bytes: Option<u64>,
    /// Part of a message from the server has arrived and not the rest.
    receiving: bool,
    /// Retransmits put off because the copy before was still being written
    /// or a message from the server was arriving.
    postponed_retransmits: u64,
}

impl ClientSession {
    /// A session whose id is `secret`'s ([`ClientSecret::client_id`]).
    pub fn new(secret: ClientSecret, cfg: ClientConfig, now: Instant) -> ClientSession {
        ClientSession {
            id: secret.client_id(),
            secret,
            token: Bytes::new(),
            refused_credentials: None,
            cfg,
            next_seq: Seq::FIRST,
            amo_floor: Seq::FIRST,
            calls: FastMap::default(),
            lowest: Seq::FIRST,
            deadlines: TimerQueue::default(),
            retransmit_timers: TimerQueue::default(),
            held_idempotent: BTreeSet::new(),
            held_at_most_once: BTreeSet::new(),
            link: LinkState::Disconnected,
            disconnected_since: now,
            incarnation: None,
            reported_load: None,
            reported_service_time: None,
            last_heard: now,
            last_ping: now,
            transmit: VecDeque::new(),
            queued_requests: 0,
            events: VecDeque::new(),
            close_requested: false,
            handed_bytes: 0,
            written_bytes: None,
            receiving: false,
            postponed_retransmits: 0,
        }
    }

    pub fn client_id(&self) -> ClientId {
        self.id
    }

    /// Makes every handshake from now on carry `token`, for a server that
    /// requires a bearer token (at most `wire::MAX_TOKEN_BYTES`; a longer
    /// one makes the ping undecodable and the server closes the
    /// connection).
    pub fn set_token(&mut self, token: Bytes) {
        self.token = token;
    }

    /// Why the server refused our last handshake for our credentials
    /// (`Unauthorized`), if it did and no later one was accepted: requests
    /// that need no session, such as a Describe, end on it too.
    pub fn refused_credentials(&self) -> Option<&str> {
        self.refused_credentials.as_deref()
    }

    pub fn link(&self) -> LinkState {
        self.link
    }

    /// The server incarnation last heard (`None`: none heard yet).
    pub fn incarnation(&self) -> Option<Incarnation> {
        self.incarnation
    }

    /// The load (calls executing) the server last reported in a reply or
    /// a pong; `None` before the first.
    pub fn reported_load(&self) -> Option<u32> {
        self.reported_load
    }

    /// The service time the server last reported measuring itself (busy
    /// time per completed call); `None` before the first reply that
    /// carried one.
    pub fn reported_service_time(&self) -> Option<Nanos> {
        self.reported_service_time
    }

    pub fn outstanding(&self) -> usize {
        self.calls.len()
    }

    /// The lowest seq this session still waits for.
    pub fn ack_below(&self) -> Seq {
        if self.calls.is_empty() {
            self.next_seq
        } else {
            self.lowest
        }
    }

    /// The outstanding calls' seqs, in order: for the rare paths that end
    /// or resend many calls, so outcomes come out in call order whatever
    /// the hash map's order.
    fn seqs(&self) -> Vec<Seq> {
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

    fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    fn handle_pong(&mut self, pong: Pong, now: Instant) {
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

    fn handle_reply(&mut self, reply: Reply, now: Instant) {
        self.heard(now);
        self.reported_load = Some(reply.load);
        if reply.service_time > Nanos::ZERO {
            self.reported_service_time = Some(reply.service_time);
        }
        self.observe_incarnation(reply.incarnation, now);
        let matches = self.calls.get(&reply.seq).is_some_and(|c| {
            c.sent
                && c.spec.method == reply.method
                && c.spec.idempotent == reply.idempotent
                && c.spec.json == reply.json
        });
        if !matches {
            return;
        }
        // A refused copy of an idempotent call that went out more than once
        // says only that this copy did not run: an earlier one may be
        // running (the server keeps no state to tell), so "did not run"
        // would be a lie. Its reply, a later copy's, or the deadline ends
        // the call.
        let refused = matches!(
            reply.outcome,
            crate::wire::Outcome::Refused(_) | crate::wire::Outcome::Overloaded { .. }
        );
        if refused
            && self
                .calls
                .get(&reply.seq)
                .is_some_and(|c| c.spec.idempotent && (c.retransmits > 0 || c.sent_before))
        {
            return;
        }
        let sent_to = self.calls.get(&reply.seq).and_then(|c| c.sent_to);
        let seq = reply.seq;
        let result = CallError::from_reply(&reply, sent_to).map(|()| reply.payload);
        self.finish(seq, result);
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

    /// Retransmits put off because the copy before was still being written,
    /// or a message from the server was arriving (a reply may be it).
    pub fn postponed_retransmits(&self) -> u64 {
        self.postponed_retransmits
    }

    /// The server answered the connection, not a call, and closes it. When
    /// it refused the connection unread (server full), calls sent only on
    /// this connection did not run and end now, truthfully; calls sent on
    /// an earlier one wait for a later connection or their deadline. When it
    /// could not parse our frames, which a resend would repeat, every call
    /// ends. When it timed the connection out, calls wait for the next one.
    fn handle_connection_error(&mut self, e: &ConnError, now: Instant) {
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
    fn handed(&mut self, message: &Message, copy_of: Option<Seq>) {
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

    /// The next call that ended.
    pub fn poll_event(&mut self) -> Option<CallOutcome> {
        self.events.pop_front()
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

    /// True once after the failure detector gave up on the connection (or
    /// the server closed it): the transport should close it and reconnect
    /// (then `handle_connected`).
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

    /// A message naming a new incarnation: the server lost its state. Calls
    /// sent at-most-once to the old one end `OutcomeUnknown`; idempotent
    /// calls in flight are resent at once.
    fn observe_incarnation(&mut self, new: Incarnation, now: Instant) {
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

    /// Whether a new call may skip the held queues: the fast path, taken
    /// only when it would be sent first anyway.
    fn can_send_now(&self, idempotent: bool, seq: Seq) -> bool {
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
    fn send(&mut self, seq: Seq, now: Instant) {
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

    fn send_ping(&mut self, now: Instant) {
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

    fn hold(&mut self, seq: Seq) {
        if let Some(call) = self.calls.get_mut(&seq) {
            call.retransmit_at = None;
            if call.spec.idempotent {
                self.held_idempotent.insert(seq);
            } else {
                self.held_at_most_once.insert(seq);
            }
        }
    }

    fn remove(&mut self, seq: Seq) -> Option<Call> {
        let call = self.calls.remove(&seq)?;
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
        Some(call)
    }

    /// Moves `lowest` up to the lowest outstanding seq after that call
    /// ended: past the seqs in between, or by one search of the calls when
    /// those would be many more than the calls left. Either way at most
    /// linear in the calls outstanding, and constant per call on average.
    fn advance_lowest(&mut self) {
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

    /// Whether `(at, seq)` is `seq`'s current retransmission timer.
    fn timer_live(&self, at: Instant, seq: Seq) -> bool {
        self.calls
            .get(&seq)
            .is_some_and(|c| c.retransmit_at == Some(at))
    }

    /// Drops the timers of ended or re-armed calls from the tops of both
    /// queues, and all of them when they pile up.
    fn prune_timers(&mut self) {
        let calls = &self.calls;
        self.deadlines.prune(|_, s| calls.contains_key(&s));
        let timer_live = |at, s| calls.get(&s).is_some_and(|c| c.retransmit_at == Some(at));
        self.retransmit_timers.prune(timer_live);
        self.retransmit_timers.compact(calls.len(), timer_live);
    }

    fn finish(&mut self, seq: Seq, result: Result<Bytes, CallError>) {
        if self.remove(seq).is_some() {
            self.events.push_back((CallId(seq.0), result));
        }
    }

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
    fn debug_check(&self) {
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
