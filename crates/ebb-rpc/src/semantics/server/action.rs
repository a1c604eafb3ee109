//! What the session tells its transport to do with a frame, and the key a
//! running call is completed by: the whole vocabulary between the two, so
//! the transport needs nothing else to obey a decision.

use bytes::Bytes;
use ebb_core::{ClientId, Instant, Nanos};

use crate::semantics::conns::{Caller, ConnId};
use crate::wire::{Message, Resized, Seq};

/// Names one call for [`ServerSession::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallKey {
    pub client: ClientId,
    pub seq: Seq,
    pub method: u16,
    pub idempotent: bool,
    /// The arguments are JSON and the reply must be JSON too.
    pub json: bool,
    /// The connection it arrived on, whose in-flight count it holds.
    pub conn: ConnId,
    /// `conn` proved the client id: the reply follows the client to its
    /// current connection. Otherwise it goes back on `conn` alone.
    pub proven: bool,
    /// Who the call counts against for per-caller bounds.
    pub caller: Caller,
}

/// A call to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    pub key: CallKey,
    /// Time the call had left when the client sent it.
    pub deadline: Nanos,
    /// When its caller stops waiting, counted from when the request was
    /// read: a call that has not started by then does not start
    /// ([`super::ServerSession::start_with`]).
    pub due: Instant,
    /// When a call still running is cancelled: `due` plus the configured
    /// `overdue_grace` ([`super::ServerSession::cancel_with`]).
    pub overdue_at: Instant,
    pub payload: Bytes,
}

/// What to do with one incoming frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the method, then call [`ServerSession::complete`] with its outcome.
    Execute(Incoming),
    /// Send this back on the connection the message came from; nothing
    /// runs.
    Reply(Message),
    /// Set the workers to this message's capacity, then send it back with
    /// the capacity the workers took; nothing runs.
    Resize(Resized),
    /// A duplicate of a running call: its reply goes out on completion.
    Wait,
    /// Nothing to do (a reply-kind frame, a closed connection, or a call the
    /// client gave up on).
    Drop,
}
