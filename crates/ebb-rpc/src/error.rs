//! The ways a call can end other than with its reply.
//!
//! Each variant calls for a different action by the caller, which is why they
//! are distinct: a dead server is not a slow network, and a restarted server
//! is neither.

use ebb_core::Nanos;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call's final timeout passed. For an at-most-once call the method
    /// may or may not have run.
    #[error("deadline exceeded after {0}")]
    DeadlineExceeded(Nanos),

    /// The server lost its state (new incarnation) while an at-most-once call
    /// was outstanding: it may have run once, it will never run again.
    #[error(
        "outcome unknown: the server restarted (incarnation {old} -> {new}) while the call was outstanding; it ran at most once and will not be retried"
    )]
    OutcomeUnknown { old: u64, new: u64 },

    /// The transport connection broke and could not be re-established before
    /// the deadline (network or server process gone).
    #[error("connection lost: {0}")]
    ConnectionLost(String),

    /// The connection stayed up but the server sent nothing, not even
    /// heartbeats, for longer than the failure detector allows: the server is
    /// presumed dead or partitioned, not merely slow.
    #[error("server unresponsive: no heartbeat for {0}")]
    ServerUnresponsive(Nanos),

    /// The server does not know the method.
    #[error("unknown method: {0}")]
    UnknownMethod(String),

    /// The server could not decode the arguments, or the frame was malformed.
    #[error("bad request: {0}")]
    BadRequest(String),

    /// The server refused the call because it could not meet its deadline or
    /// was over its bounds; it did not run.
    #[error("rejected by the server without running: {0}")]
    Rejected(String),

    /// The method started and panicked; it may have had part of its effect.
    /// Recorded like a reply, so it never runs again for this call.
    #[error("the method panicked: {0}")]
    Panicked(String),

    /// The method ran and failed, or the reply could not be decoded.
    #[error("remote error: {0}")]
    Remote(String),

    /// Refused locally before anything was sent: the client session already
    /// has its maximum of outstanding calls. Nothing ran; retry later.
    #[error("too many outstanding calls on this session (limit {limit})")]
    TooManyOutstanding { limit: usize },

    /// Encoding the arguments or decoding the reply failed on this side.
    #[error("codec error: {0}")]
    Codec(String),
}
