//! How a forwarded call fails, and how each failure reaches an RPC caller.

use ebb_core::{Nanos, NodeId};
use ebb_policy::admission::Refusal;
use ebb_rpc::CallError;
use ebb_rpc::service::DispatchError;

/// Why the gateway answers a request without the node's reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Refused at once, before any node saw it.
    #[error("overloaded: {why}; retry after {retry_after}")]
    Overloaded { why: Refusal, retry_after: Nanos },
    /// The deadline passed. `sent` says whether a node had the call.
    #[error("deadline exceeded after {after} ({})", if *.sent { "a node had the call: it may have run" } else { "no node had the call: it did not run" })]
    DeadlineExceeded { after: Nanos, sent: bool },
    /// The node died (or stopped answering) with the at-most-once call in
    /// flight: it may have run once; it will not run again.
    #[error(
        "outcome unknown: node {node} was lost with the call in flight; it ran at most once and will not be retried"
    )]
    OutcomeUnknown { node: NodeId },
    /// An idempotent call's node was lost and no retry was possible (budget
    /// spent, attempts used up, or no time left).
    #[error("node {node} was lost and the call was not retried ({why}); it may have run")]
    NodeLost { node: NodeId, why: String },
    /// The gateway is shutting down and takes no new calls.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The node answered with this error.
    #[error(transparent)]
    Node(CallError),
}

impl GatewayError {
    /// A short stable name, for metrics and JSON errors.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Overloaded { .. } => "overloaded",
            GatewayError::DeadlineExceeded { .. } => "deadline_exceeded",
            GatewayError::OutcomeUnknown { .. } => "outcome_unknown",
            GatewayError::NodeLost { .. } => "node_lost",
            GatewayError::ShuttingDown => "shutting_down",
            GatewayError::Node(e) => match e {
                CallError::UnknownMethod { .. } => "unknown_method",
                CallError::BadRequest { .. } => "bad_request",
                CallError::Remote { .. } | CallError::Panicked { .. } => "remote",
                CallError::Refused { .. } => "rejected",
                CallError::Overloaded { .. } => "overloaded",
                _ => "node_error",
            },
        }
    }

    /// Whether the call may have run on a node.
    pub fn may_have_run(&self) -> bool {
        match self {
            GatewayError::Overloaded { .. } | GatewayError::ShuttingDown => false,
            GatewayError::DeadlineExceeded { sent, .. } => *sent,
            GatewayError::OutcomeUnknown { .. } | GatewayError::NodeLost { .. } => true,
            GatewayError::Node(e) => e.may_have_run(),
        }
    }
}

/// How an RPC caller learns each outcome: one mapping, here.
impl From<GatewayError> for DispatchError {
    fn from(e: GatewayError) -> DispatchError {
        if let GatewayError::Overloaded { why, retry_after } = e {
            // The refusal is the one answer a saturated gateway gives most
            // often: its message is formatted once.
            return DispatchError::Overloaded {
                message: why.to_string(),
                retry_after,
            };
        }
        let msg = e.to_string();
        match e {
            // (`Overloaded` is answered above.)
            GatewayError::Overloaded { .. } | GatewayError::ShuttingDown => {
                DispatchError::Rejected(msg)
            }
            GatewayError::DeadlineExceeded { sent: false, .. } => DispatchError::Rejected(msg),
            GatewayError::DeadlineExceeded { sent: true, .. }
            | GatewayError::OutcomeUnknown { .. }
            | GatewayError::NodeLost { .. } => DispatchError::OutcomeUnknown(msg),
            GatewayError::Node(e) => match e {
                CallError::UnknownMethod { method } => DispatchError::UnknownMethod(method),
                CallError::BadRequest { message } => DispatchError::BadArgs(message),
                CallError::Refused { message, .. } => DispatchError::Rejected(message),
                CallError::Overloaded {
                    message,
                    retry_after,
                } => DispatchError::Overloaded {
                    message,
                    retry_after,
                },
                CallError::TooManyOutstanding { .. }
                | CallError::ConnectionLost { sent: false, .. } => DispatchError::Rejected(msg),
                CallError::Remote { message }
                | CallError::Codec { message, .. }
                | CallError::Panicked { message } => DispatchError::EncodeReply(message),
                CallError::DeadlineExceeded { .. }
                | CallError::OutcomeUnknown { .. }
                | CallError::ConnectionLost { .. }
                | CallError::ServerUnresponsive { .. }
                | CallError::Protocol { .. } => DispatchError::OutcomeUnknown(msg),
            },
        }
    }
}
