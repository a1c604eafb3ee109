//! The ways a call can end other than with its reply, and every mapping
//! onto them: this file is the one place a wire outcome, a connection
//! error, a dispatch failure or a codec failure becomes a [`CallError`].
//!
//! Each variant calls for a different action by the caller, which is why they
//! are distinct: a dead server is not a slow network, and a restarted server
//! is neither. Each carries what the caller needs as data, in particular
//! whether the call was sent at all: [`CallError::may_have_run`] tells "never
//! sent, did not run" (safe to retry anywhere) from "may have run".

use ebb_core::Nanos;

use crate::service::DispatchError;
use crate::wire::{ConnError, ConnErrorKind, Incarnation, Outcome, Refusal, Reply, WireError};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call's final timeout passed. `sent`: a copy went out, so an
    /// at-most-once call may or may not have run; otherwise it did not.
    #[error("deadline exceeded after {elapsed}{}", never_sent(*sent))]
    DeadlineExceeded { elapsed: Nanos, sent: bool },

    /// The server lost its state (new incarnation) while an at-most-once call
    /// was outstanding: it may have run once, it will never run again.
    #[error(
        "outcome unknown: the server restarted (incarnation {old} -> {new}) while the call was outstanding; it ran at most once and will not be retried"
    )]
    OutcomeUnknown { old: u64, new: u64 },

    /// The transport connection broke, or could not be made, and was not
    /// re-established before the deadline (network or server process gone).
    #[error("connection lost: {cause}{}", never_sent(*sent))]
    ConnectionLost { sent: bool, cause: String },

    /// The connection stayed up but the server sent nothing, not even
    /// heartbeats, for longer than the failure detector allows: the server is
    /// presumed dead or partitioned, not merely slow. Only calls already sent
    /// end this way.
    #[error("server unresponsive: no heartbeat for {silent}")]
    ServerUnresponsive { silent: Nanos },

    /// The server does not know the method; nothing ran.
    #[error("unknown method: {method}")]
    UnknownMethod { method: String },

    /// The server could not decode the arguments, or the request broke a
    /// protocol rule, or it was refused before sending; nothing ran.
    #[error("bad request: {message}")]
    BadRequest { message: String },

    /// The server refused the call without running it (over a bound, the
    /// deadline already passed, the server full); retry later or elsewhere.
    #[error("refused without running ({reason}): {message}")]
    Refused { reason: Refusal, message: String },

    /// Refused without running because the service (a gateway's admission
    /// control) cannot meet the call's deadline with the work ahead of it.
    /// Nothing ran; try again after `retry_after`, or with a longer deadline.
    #[error("overloaded, nothing ran; retry after {retry_after}: {message}")]
    Overloaded { retry_after: Nanos, message: String },

    /// The method started and panicked; it may have had part of its effect.
    /// Recorded like a reply, so it never runs again for this call.
    #[error("the method panicked: {message}")]
    Panicked { message: String },

    /// The method ran and failed.
    #[error("remote error: {message}")]
    Remote { message: String },

    /// Refused locally before anything was sent: the client session already
    /// has its maximum of outstanding calls. Nothing ran; retry later.
    #[error("too many outstanding calls on this session (limit {limit})")]
    TooManyOutstanding { limit: usize },

    /// Encoding the arguments (`sent: false`) or decoding the reply (`sent:
    /// true`: it ran) failed on this side.
    #[error("codec error: {message}")]
    Codec { message: String, sent: bool },

    /// The server could not parse what this client sent and closed the
    /// connection; a resend would repeat it. `sent`: calls that went out on
    /// that connection may have run (frames before the bad one were served).
    #[error("protocol error: {message}{}", never_sent(*sent))]
    Protocol { message: String, sent: bool },
}

fn never_sent(sent: bool) -> &'static str {
    if sent {
        ""
    } else {
        " (never sent: it did not run)"
    }
}

impl CallError {
    /// False only when the call certainly did not run: it was never sent,
    /// or the server answered that it refused it, does not know the method,
    /// or could not decode it. True when it ran or may have run: the caller
    /// must not blindly repeat an at-most-once call then.
    pub fn may_have_run(&self) -> bool {
        match self {
            CallError::DeadlineExceeded { sent, .. }
            | CallError::ConnectionLost { sent, .. }
            | CallError::Codec { sent, .. }
            | CallError::Protocol { sent, .. } => *sent,
            CallError::OutcomeUnknown { .. }
            | CallError::ServerUnresponsive { .. }
            | CallError::Panicked { .. }
            | CallError::Remote { .. } => true,
            CallError::UnknownMethod { .. }
            | CallError::BadRequest { .. }
            | CallError::Refused { .. }
            | CallError::Overloaded { .. }
            | CallError::TooManyOutstanding { .. } => false,
        }
    }

    /// What a server's reply means for a call first sent to incarnation
    /// `sent_to` (`None`: sent before any incarnation was known). `Ok` for
    /// [`Outcome::Ok`].
    pub fn from_reply(reply: &Reply, sent_to: Option<Incarnation>) -> Result<(), CallError> {
        if reply.outcome == Outcome::Ok {
            // The payload is the result, not a message: read it as text
            // only for an error (doing so for every reply was once 40% of
            // a client's instructions per call).
            return Ok(());
        }
        let message = reply.message();
        Err(match reply.outcome {
            Outcome::Ok => return Ok(()),
            Outcome::UnknownMethod => CallError::UnknownMethod { method: message },
            Outcome::BadRequest => CallError::BadRequest { message },
            Outcome::OutcomeUnknown => CallError::OutcomeUnknown {
                old: sent_to.map_or(0, Incarnation::get),
                new: reply.incarnation.get(),
            },
            Outcome::Refused(reason) => CallError::Refused { reason, message },
            Outcome::Overloaded { retry_after } => CallError::Overloaded {
                retry_after,
                message,
            },
            Outcome::AppError => CallError::Remote { message },
            Outcome::Panicked => CallError::Panicked { message },
        })
    }

    /// What a server's connection error means for a call on that
    /// connection; `sent`: the call went out on it or an earlier one.
    pub fn from_conn_error(e: &ConnError, sent: bool) -> CallError {
        let message = e.message();
        match e.kind {
            ConnErrorKind::ServerFull => CallError::Refused {
                reason: Refusal::ServerFull,
                message,
            },
            ConnErrorKind::PeerFull => CallError::Refused {
                reason: Refusal::PeerFull,
                message,
            },
            ConnErrorKind::BadFrame => CallError::Protocol { message, sent },
            ConnErrorKind::Timeout => CallError::ConnectionLost {
                sent,
                cause: format!("the server closed the connection: {message}"),
            },
        }
    }

    /// A failure to encode arguments here: nothing was sent.
    pub fn encoding(e: impl std::fmt::Display) -> CallError {
        CallError::Codec {
            message: e.to_string(),
            sent: false,
        }
    }

    /// A failure to decode a reply here: the call ran.
    pub fn decoding(e: impl std::fmt::Display) -> CallError {
        CallError::Codec {
            message: e.to_string(),
            sent: true,
        }
    }

    /// What a dispatch failure of the service itself means to the caller
    /// (an in-process call, or a server's dispatcher).
    pub fn from_dispatch(e: DispatchError) -> CallError {
        match e {
            DispatchError::UnknownMethod(method) => CallError::UnknownMethod { method },
            DispatchError::BadArgs(message) => CallError::BadRequest { message },
            DispatchError::EncodeReply(message) => CallError::Remote { message },
            DispatchError::BadReply(message) => CallError::decoding(message),
            DispatchError::Rejected(message) => CallError::Refused {
                reason: Refusal::Overloaded,
                message,
            },
            DispatchError::Overloaded {
                message,
                retry_after,
            } => CallError::Overloaded {
                retry_after,
                message,
            },
            // A forwarding service lost the call: it may have run.
            DispatchError::OutcomeUnknown(message) => CallError::ConnectionLost {
                sent: true,
                cause: message,
            },
        }
    }
}

impl From<DispatchError> for CallError {
    fn from(e: DispatchError) -> CallError {
        CallError::from_dispatch(e)
    }
}

impl From<WireError> for CallError {
    /// A wire error met while preparing a call: nothing was sent.
    fn from(e: WireError) -> CallError {
        CallError::encoding(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_calls_that_were_never_sent_or_were_refused_certainly_did_not_run() {
        let not_run = [
            CallError::DeadlineExceeded {
                elapsed: Nanos::ZERO,
                sent: false,
            },
            CallError::ConnectionLost {
                sent: false,
                cause: "cannot connect".into(),
            },
            CallError::Refused {
                reason: Refusal::ServerFull,
                message: String::new(),
            },
            CallError::TooManyOutstanding { limit: 1 },
            CallError::encoding("x"),
        ];
        for e in not_run {
            assert!(!e.may_have_run(), "{e}");
            assert!(
                !e.to_string().is_empty() && !matches!(e, CallError::Remote { .. }),
                "{e}"
            );
        }
        let maybe = [
            CallError::DeadlineExceeded {
                elapsed: Nanos::ZERO,
                sent: true,
            },
            CallError::ConnectionLost {
                sent: true,
                cause: "reset".into(),
            },
            CallError::ServerUnresponsive {
                silent: Nanos::ZERO,
            },
            CallError::OutcomeUnknown { old: 1, new: 2 },
            CallError::decoding("x"),
        ];
        for e in maybe {
            assert!(e.may_have_run(), "{e}");
        }
    }

    #[test]
    fn an_overloaded_refusal_keeps_its_retry_after_from_dispatch_to_caller() {
        let retry_after = Nanos::from_millis(250);
        let refused = DispatchError::Overloaded {
            message: "queue ahead is 40 ms".into(),
            retry_after,
        };
        let (outcome, payload) = crate::transport::frames::outcome_of(Err(refused.clone()));
        assert_eq!(outcome, Outcome::Overloaded { retry_after });
        let reply = Reply {
            client: ebb_core::ClientId(1),
            seq: crate::wire::Seq(1),
            incarnation: Incarnation::new(7).expect("7 is not zero"),
            method: 0,
            idempotent: false,
            json: false,
            outcome,
            load: 0,
            service_time: Nanos::ZERO,
            payload,
        };
        let e = CallError::from_reply(&reply, None).expect_err("a refusal is no reply");
        assert_eq!(
            e,
            CallError::Overloaded {
                retry_after,
                message: "queue ahead is 40 ms".into()
            }
        );
        assert!(!e.may_have_run(), "{e}");
        assert!(e.to_string().contains("retry after 250.000ms"), "{e}");
        assert_eq!(CallError::from_dispatch(refused), e);
    }

    #[test]
    fn a_never_sent_call_says_so() {
        let e = CallError::ConnectionLost {
            sent: false,
            cause: "cannot connect to 127.0.0.1:1".into(),
        };
        assert!(e.to_string().contains("did not run"), "{e}");
    }
}
