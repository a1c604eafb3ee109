//! Where a call has been and whether it may go on: what a failed attempt
//! means for the call (`after_failure`, shared by both ways in), and the
//! retry budget that bounds retries and hedges.

use ebb_core::{Instant, Nanos, NodeId};
use ebb_rpc::CallError;
use ebb_rpc::service::MethodInfo;

use super::{Forwarder, GatewayError};
use crate::registry::Acquired;

/// Most nodes one call is tried on (first attempt included).
pub const MAX_ATTEMPTS: usize = 4;

/// Where a call has been: what its next attempt must take into account.
#[derive(Default)]
pub(super) struct Route {
    /// Nodes it was tried on, in order.
    pub(super) tried: Vec<NodeId>,
    /// Nodes the call must not go back to: they were lost with it, or
    /// could not carry it. A node that refused it under load is not here:
    /// it may take the call once a call there ends.
    pub(super) lost: Vec<NodeId>,
    /// The node that refused the last attempt unrun, being full.
    pub(super) refused_by: Option<NodeId>,
    /// A node may have had the call.
    pub(super) sent: bool,
    /// The next attempt's node (or place in the held FIFO), when it was
    /// acquired before the async path took the call over.
    pub(super) acquired: Option<Acquired>,
}

impl Route {
    pub(super) fn from(acquired: Acquired) -> Route {
        Route {
            acquired: Some(acquired),
            ..Route::default()
        }
    }
}

impl Forwarder {
    /// One retry's worth of the shared budget, if there is one left.
    pub(super) fn take_from_budget(&self, now: Instant) -> bool {
        self.registry.try_retry(now)
    }

    fn may_retry(&self, now: Instant) -> bool {
        let granted = self.take_from_budget(now);
        if granted {
            self.registry.count_retry();
            self.metrics.retried();
        }
        granted
    }

    /// What a failed attempt on `node` means for the call: `Ok` to try
    /// again (`route` updated), or the error its caller gets.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_failure(
        &self,
        route: &mut Route,
        node: NodeId,
        failure: CallError,
        method: &'static MethodInfo,
        deadline: Instant,
        timeout: Nanos,
        now: Instant,
    ) -> Result<(), GatewayError> {
        route.tried.push(node);
        route.refused_by = None;
        let time_left = deadline > now;
        let more = route.tried.len() < MAX_ATTEMPTS && time_left;
        match failure {
            // Refused before running, or never sent: safe for any call.
            CallError::Refused { .. }
            | CallError::Overloaded { .. }
            | CallError::TooManyOutstanding { .. }
                if more && self.may_retry(now) =>
            {
                route.refused_by = Some(node);
                Ok(())
            }
            e @ (CallError::Refused { .. }
            | CallError::Overloaded { .. }
            | CallError::TooManyOutstanding { .. }) => Err(GatewayError::Node(e)),
            // Never delivered: the node did not start it, so any call
            // may go elsewhere. Nothing ran, so this adds no load and
            // takes nothing from the retry budget.
            CallError::ConnectionLost { sent: false, .. } if more => {
                route.lost.push(node);
                self.registry.suspect(node);
                self.registry.count_retry();
                self.metrics.retried();
                Ok(())
            }
            e @ CallError::ConnectionLost { sent: false, .. } => {
                self.registry.suspect(node);
                Err(if route.sent {
                    GatewayError::NodeLost {
                        node,
                        why: "attempts or time used up".into(),
                    }
                } else {
                    GatewayError::Node(e)
                })
            }
            // The node is dead or unreachable with the call on it.
            CallError::ConnectionLost { .. } | CallError::ServerUnresponsive { .. } => {
                route.sent = true;
                route.lost.push(node);
                self.registry.suspect(node);
                if !method.idempotent {
                    return Err(GatewayError::OutcomeUnknown { node });
                }
                if !more {
                    let why = if time_left {
                        "attempts used up"
                    } else {
                        "no time left"
                    };
                    return Err(GatewayError::NodeLost {
                        node,
                        why: why.into(),
                    });
                }
                if !self.may_retry(now) {
                    return Err(GatewayError::NodeLost {
                        node,
                        why: "retry budget spent".into(),
                    });
                }
                Ok(())
            }
            CallError::OutcomeUnknown { .. } => Err(GatewayError::OutcomeUnknown { node }),
            CallError::DeadlineExceeded { sent: on_node, .. } => {
                Err(GatewayError::DeadlineExceeded {
                    after: timeout,
                    sent: route.sent || on_node,
                })
            }
            e => Err(GatewayError::Node(e)),
        }
    }
}
