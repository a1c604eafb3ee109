//! Calls answered later, from wherever their outcome becomes known, with no
//! future for anyone to poll.
//!
//! A forwarding server (the gateway) learns a call's outcome in the task
//! that reads its node's reply. Handing that outcome back to the ingress
//! connection's task through a channel costs a channel, a boxed future, a
//! place in the connection's set of running calls and a wake-up per call.
//! Instead the server hands the dispatcher a [`DeferredReply`], and the
//! node client hands its reader a [`CallSink`]: the reader's task answers
//! the ingress call itself. The server session records a deferred reply
//! exactly as it records any other (at-most-once stays the session's), so
//! a deferred call differs from an awaited one only in who ends it.

use std::sync::Arc;

use bytes::Bytes;

use super::DispatchError;
use crate::CallError;
use crate::semantics::CallKey;
use crate::transport::WriteBatch;
use crate::wire::Outcome;

/// What records a deferred call's outcome and sends its reply: the server
/// that made the [`DeferredReply`].
pub trait ReplySink: Send + Sync {
    /// Records call `key`'s outcome in the server session and sends the
    /// reply to the route the session names.
    fn send_reply(&self, key: CallKey, outcome: Outcome, payload: Bytes);

    /// [`ReplySink::send_reply`], except that the reply is only appended to
    /// its connection's output and leaves with `batch`'s flush, together
    /// with the other replies `batch` gathered for that connection.
    fn append_reply(&self, key: CallKey, outcome: Outcome, payload: Bytes, batch: &mut WriteBatch) {
        let _ = batch;
        self.send_reply(key, outcome, payload);
    }
}

/// The one answer a server owes a call it handed to
/// [`super::ServiceDispatch::dispatch_deferred`]. Sent at most once; one
/// dropped unsent answers the call as lost (`OutcomeUnknown`), or as
/// panicked if dropped by a panic, so a duplicate never waits for an answer
/// that cannot come.
pub struct DeferredReply {
    sink: Option<Arc<dyn ReplySink>>,
    key: CallKey,
}

impl DeferredReply {
    pub fn new(sink: Arc<dyn ReplySink>, key: CallKey) -> DeferredReply {
        DeferredReply {
            sink: Some(sink),
            key,
        }
    }

    /// The method the call is for.
    pub fn method(&self) -> u16 {
        self.key.method
    }

    /// Answers the call: the server records the outcome and sends the
    /// reply, from the calling thread.
    pub fn send(mut self, result: Result<Bytes, DispatchError>) {
        if let Some(sink) = self.sink.take() {
            let (outcome, payload) = crate::transport::frames::outcome_of(result);
            sink.send_reply(self.key, outcome, payload);
        }
    }

    /// Answers the call as [`DeferredReply::send`] does, but its reply
    /// leaves with `batch`'s flush.
    pub fn send_in(mut self, result: Result<Bytes, DispatchError>, batch: &mut WriteBatch) {
        if let Some(sink) = self.sink.take() {
            let (outcome, payload) = crate::transport::frames::outcome_of(result);
            sink.append_reply(self.key, outcome, payload, batch);
        }
    }
}

impl Drop for DeferredReply {
    fn drop(&mut self) {
        let Some(sink) = self.sink.take() else {
            return;
        };
        let (outcome, payload) = if std::thread::panicking() {
            (
                Outcome::Panicked,
                Bytes::from_static(b"the method panicked"),
            )
        } else {
            (
                Outcome::OutcomeUnknown,
                Bytes::from_static(b"the call was dropped unanswered; it may have run"),
            )
        };
        sink.send_reply(self.key, outcome, payload);
    }
}

impl std::fmt::Debug for DeferredReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredReply")
            .field("key", &self.key)
            .field("sent", &self.sink.is_none())
            .finish()
    }
}

/// Where a call started with [`super::Transport::start_call`] delivers its
/// outcome: called once per started call, with the token it was started
/// with, by whichever thread learns the outcome (a client's reader, a
/// caller abandoning the connection's calls, the client shutting down),
/// never with a lock of the transport held.
pub trait CallSink: Send + Sync {
    fn deliver(&self, token: u64, outcome: Result<Bytes, CallError>);

    /// [`CallSink::deliver`] for one of several outcomes learnt together
    /// (the replies of one socket read): replies the sink sends through
    /// [`DeferredReply::send_in`] with `batch` leave together once the
    /// deliverer has handed over them all.
    fn deliver_in(&self, token: u64, outcome: Result<Bytes, CallError>, batch: &mut WriteBatch) {
        let _ = batch;
        self.deliver(token, outcome);
    }
}
