//! The server half of the call semantics: decides, per incoming frame,
//! whether to run a call, answer from memory, wait, or drop.
//!
//! Rules, in the order they are checked for an at-most-once request:
//! 1. it names another incarnation than ours (and not 0): `OutcomeUnknown`,
//!    nothing runs (orphans of a previous incarnation are cancelled here);
//! 2. no session for the client: `OutcomeUnknown` (we may have forgotten it);
//! 3. `seq` below the client's acknowledged-below: dropped (the client no
//!    longer waits for it);
//! 4. `seq` below the session's floor: `OutcomeUnknown`;
//! 5. `seq` outside the window `ack_below + MAX_REPLIES_PER_CLIENT`:
//!    `BadRequest` (a client that breaks the protocol);
//! 6. completed before: the saved reply; running: wait, the reply goes out
//!    when it completes; new: run it (or record `Rejected` if its deadline
//!    has already passed).
//!
//! Idempotent requests keep no state: they run (again) every time.

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use super::reply_table::{Entry, ReplyTable};
use super::{MAX_CLIENTS, MAX_REPLIES_PER_CLIENT, SESSION_EXPIRY};
use crate::wire::{Frame, FrameKind, Status};

/// A fresh incarnation number for a starting server process: 64 random bits
/// (never 0), so two incarnations collide with probability 2^-64 without
/// any durable counter.
pub fn random_incarnation(rng: &mut ebb_core::Rng) -> u64 {
    rng.next_u64().max(1)
}

/// Bounds of a server's at-most-once state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub max_clients: usize,
    pub session_expiry: Nanos,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: MAX_CLIENTS,
            session_expiry: SESSION_EXPIRY,
        }
    }
}

/// Names one call for [`ServerSession::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub client: ClientId,
    pub seq: u64,
    pub method: u16,
    pub idempotent: bool,
}

/// A call to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub key: CallKey,
    /// Time the call had left when the client sent it.
    pub deadline: Nanos,
    pub payload: Bytes,
}

/// What to do with one incoming frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the method, then call [`ServerSession::complete`] with its outcome.
    Execute(Incoming),
    /// Send this frame back to the client; nothing runs.
    Reply(Frame),
    /// A duplicate of a running call: its reply goes out on completion.
    Wait,
    /// Nothing to do (a reply-kind frame, or a call the client gave up on).
    Drop,
}

/// One server process's call semantics, for the lifetime of one incarnation.
/// A crash loses it; the restarted process builds a new one with a new
/// incarnation number.
#[derive(Debug)]
pub struct ServerSession {
    incarnation: u64,
    table: ReplyTable,
}

impl ServerSession {
    /// `incarnation` must differ from every earlier incarnation of this
    /// server and must not be 0 (0 means "unknown" on the wire): the
    /// transport derives it from e.g. the start time and randomness.
    pub fn new(incarnation: u64, config: ServerConfig) -> ServerSession {
        ServerSession {
            incarnation: incarnation.max(1),
            table: ReplyTable::new(config.max_clients, config.session_expiry),
        }
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn table(&self) -> &ReplyTable {
        &self.table
    }

    /// Frees sessions idle past expiry; call it now and then.
    pub fn expire_idle(&mut self, now: Instant) -> usize {
        self.table.expire_idle(now)
    }

    /// Decides what to do with a frame from a client.
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Action {
        match frame.kind {
            FrameKind::Request => self.handle_request(frame, now),
            FrameKind::Ping => Action::Reply(self.handle_ping(&frame, now)),
            FrameKind::Reply | FrameKind::Pong => Action::Drop,
        }
    }

    /// The ping is the session handshake and heartbeat: it opens (or keeps
    /// alive) the client's session and tells the client our incarnation.
    pub fn handle_ping(&mut self, ping: &Frame, now: Instant) -> Frame {
        let (status, payload) = match self.table.open(ping.client, ping.seq, now) {
            Ok(state) => {
                state.acknowledge_below(ping.ack_below);
                (Status::Ok, Bytes::new())
            }
            Err(full) => (Status::Rejected, Bytes::from(full.to_string())),
        };
        Frame {
            kind: FrameKind::Pong,
            flags: 0,
            status,
            client: ping.client,
            seq: ping.seq,
            ack_below: 0,
            incarnation: self.incarnation,
            deadline: Nanos::ZERO,
            method: 0,
            payload,
        }
    }

    pub fn handle_request(&mut self, req: Frame, now: Instant) -> Action {
        let idempotent = req.is_idempotent();
        if let Some(state) = self.table.touch(req.client, now) {
            state.acknowledge_below(req.ack_below);
            if req.seq < state.ack_below {
                return Action::Drop;
            }
        }
        if idempotent {
            return if req.deadline == Nanos::ZERO {
                self.reply(
                    &req,
                    Status::Rejected,
                    "deadline passed before the call arrived",
                )
            } else {
                self.execute(req)
            };
        }
        if req.incarnation != 0 && req.incarnation != self.incarnation {
            let msg = format!(
                "request names incarnation {}, server is at {}",
                req.incarnation, self.incarnation
            );
            return self.reply(&req, Status::OutcomeUnknown, &msg);
        }
        let incarnation = self.incarnation;
        let Some(state) = self.table.get_mut(req.client) else {
            return self.reply(
                &req,
                Status::OutcomeUnknown,
                "no session for this client (never opened, expired, or lost in a restart)",
            );
        };
        if req.seq < state.floor {
            return self.reply(
                &req,
                Status::OutcomeUnknown,
                "call predates this client session; it may have run in a forgotten one",
            );
        }
        if req.seq >= req.ack_below.saturating_add(MAX_REPLIES_PER_CLIENT) {
            return self.reply(
                &req,
                Status::BadRequest,
                "seq outside the client's at-most-once window",
            );
        }
        match state.entries.get_mut(&req.seq) {
            Some(Entry::Done(saved)) => Action::Reply(saved.clone()),
            Some(Entry::Running) => Action::Wait,
            None if req.deadline == Nanos::ZERO => {
                // Recorded, so a slower copy of this request cannot run it
                // after the client was told it did not run.
                let reply = Frame::reply_to(
                    &req,
                    incarnation,
                    Status::Rejected,
                    Bytes::from_static(b"deadline passed before the call arrived"),
                );
                state.entries.insert(req.seq, Entry::Done(reply.clone()));
                Action::Reply(reply)
            }
            None => {
                state.entries.insert(req.seq, Entry::Running);
                self.execute(req)
            }
        }
    }

    /// Records a finished call's outcome and returns the reply to send to the
    /// client's current connection. At-most-once outcomes are saved until the
    /// client acknowledges them, so duplicates get this same reply.
    ///
    /// Call it exactly once per `Execute`, whatever the outcome (an unknown
    /// method or undecodable arguments too): until then duplicates wait.
    pub fn complete(
        &mut self,
        key: CallKey,
        status: Status,
        payload: Bytes,
        now: Instant,
    ) -> Frame {
        let reply = Frame {
            kind: FrameKind::Reply,
            flags: if key.idempotent {
                crate::wire::FLAG_IDEMPOTENT
            } else {
                0
            },
            status,
            client: key.client,
            seq: key.seq,
            ack_below: 0,
            incarnation: self.incarnation,
            deadline: Nanos::ZERO,
            method: key.method,
            payload,
        };
        if !key.idempotent {
            // A session evicted meanwhile has nothing to record into; its
            // client will get `OutcomeUnknown` for this call if it asks again.
            if let Some(state) = self.table.touch(key.client, now)
                && let Some(entry) = state.entries.get_mut(&key.seq)
            {
                *entry = Entry::Done(reply.clone());
            }
        }
        reply
    }

    fn execute(&self, req: Frame) -> Action {
        Action::Execute(Incoming {
            key: CallKey {
                client: req.client,
                seq: req.seq,
                method: req.method,
                idempotent: req.is_idempotent(),
            },
            deadline: req.deadline,
            payload: req.payload,
        })
    }

    fn reply(&self, req: &Frame, status: Status, msg: &str) -> Action {
        Action::Reply(Frame::reply_to(
            req,
            self.incarnation,
            status,
            Bytes::copy_from_slice(msg.as_bytes()),
        ))
    }
}
