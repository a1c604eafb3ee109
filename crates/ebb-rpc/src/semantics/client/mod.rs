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

//!
//! The session is one type; its methods are grouped by concern: starting
//! and ending calls and the indexes that follow them (`calls.rs`), what the
//! connection and the server report (`receive.rs`), the timers
//! (`timeouts.rs`), what goes out (`transmit.rs`) and the invariant checks
//! (`check.rs`).

mod calls;
mod check;
mod receive;
mod timeouts;
mod transmit;

use std::collections::{BTreeSet, VecDeque};

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use super::CallId;
use super::call::{Call, ClientConfig, LinkState};
use super::timers::TimerQueue;
use crate::CallError;
use crate::fast_map::FastMap;
use crate::wire::{ClientSecret, Incarnation, Message, Seq};

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

    /// Retransmits put off because the copy before was still being written,
    /// or a message from the server was arriving (a reply may be it).
    pub fn postponed_retransmits(&self) -> u64 {
        self.postponed_retransmits
    }

    /// Calls that ended and are not yet polled ([`ClientSession::poll_event`]).
    pub fn ended(&self) -> usize {
        self.events.len()
    }

    /// The next call that ended.
    pub fn poll_event(&mut self) -> Option<CallOutcome> {
        self.events.pop_front()
    }

    /// True once after the failure detector gave up on the connection (or
    /// the server closed it): the transport should close it and reconnect
    /// (then `handle_connected`).
    pub fn poll_close(&mut self) -> bool {
        std::mem::take(&mut self.close_requested)
    }
}
