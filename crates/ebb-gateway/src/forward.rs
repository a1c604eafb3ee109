//! One request's way through the gateway: admission, a node from the
//! balancer (or a place in the held FIFO), the call to that node, and what
//! a failure means for the caller.
//!
//! The semantics kept here:
//! - an at-most-once call goes to one node; it goes to another only when the
//!   first provably did not start it (the node refused it without running,
//!   or it never left this gateway);
//! - when the node dies with an at-most-once call in flight, the caller gets
//!   [`GatewayError::OutcomeUnknown`] at once, not after its deadline;
//! - an idempotent call whose node died or stopped answering is sent to
//!   another node, within its deadline, while the retry budget allows;
//! - a request held for a node waits no longer than its deadline.
//!
//! Deduplication of a client's own retries happens before this, in the RPC
//! ingress's server session: a duplicate never reaches [`Forwarder::call`].

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::retry::{RetryBudget, RetryBudgetConfig};
use ebb_rpc::CallError;
use ebb_rpc::service::{CallOptions, DispatchError, MethodInfo, Transport};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::registry::{Acquired, Registry, Slot};

/// Most nodes one call is tried on (first attempt included).
pub const MAX_ATTEMPTS: usize = 4;

/// Why the gateway answers a request without the node's reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Refused at once, before any node saw it.
    #[error("overloaded: {why}; retry after {retry_after}")]
    Overloaded { why: String, retry_after: Nanos },
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
            GatewayError::Node(e) => !matches!(
                e,
                CallError::UnknownMethod { .. }
                    | CallError::BadRequest { .. }
                    | CallError::Refused { .. }
                    | CallError::TooManyOutstanding { .. }
            ),
        }
    }
}

/// How an RPC caller learns each outcome: one mapping, here.
impl From<GatewayError> for DispatchError {
    fn from(e: GatewayError) -> DispatchError {
        let msg = e.to_string();
        match e {
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
                CallError::TooManyOutstanding { .. } => DispatchError::Rejected(msg),
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

/// What one attempt on one node came to.
enum Attempt {
    Reply(Result<Bytes, CallError>),
    NodeGone,
}

/// Releases a node's in-flight count however the attempt ends (a caller
/// that gives up drops the future mid-call).
struct InFlight<'a> {
    registry: &'a Registry,
    clock: &'a Clock,
    metrics: &'a Metrics,
    node: NodeId,
    alone: bool,
    started: Instant,
    answered: bool,
    /// What the outcome says about the node's health, if anything.
    health: Option<bool>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.clock.now();
        let latency = self.answered.then(|| now.saturating_since(self.started));
        let node = self.node;
        if self
            .registry
            .finish(node, latency, self.alone, self.health, now)
        {
            self.metrics.ejected();
        }
    }
}

/// The request path, shared by the RPC and HTTP ingress.
pub struct Forwarder {
    registry: Registry,
    clock: Clock,
    metrics: Metrics,
    budget: Mutex<RetryBudget>,
    shutting_down: std::sync::atomic::AtomicBool,
}

impl Forwarder {
    pub fn new(
        registry: Registry,
        clock: Clock,
        metrics: Metrics,
        budget: RetryBudgetConfig,
    ) -> Forwarder {
        Forwarder {
            registry,
            clock,
            metrics,
            budget: Mutex::new(RetryBudget::new(budget)),
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// New calls are refused from now on; calls already taken finish.
    pub fn stop_taking_calls(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn may_retry(&self, now: Instant) -> bool {
        let granted = self
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_retry(now);
        if granted {
            self.registry.count_retry();
            self.metrics.retried();
        }
        granted
    }

    /// Forwards one call and records its outcome in the metrics.
    pub async fn call(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        timeout: Nanos,
    ) -> Result<Bytes, GatewayError> {
        let arrived = self.clock.now();
        let result = self.forward(method, args, timeout, arrived).await;
        let response = self.clock.now().saturating_since(arrived);
        self.registry.record_response(response);
        let secs = response.as_secs_f64();
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics.answered(method, outcome, secs);
        if matches!(result, Err(GatewayError::Overloaded { .. })) {
            self.metrics.refused();
        }
        result
    }

    async fn forward(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        timeout: Nanos,
        arrived: Instant,
    ) -> Result<Bytes, GatewayError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::ShuttingDown);
        }
        let deadline = arrived + timeout;
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_request(arrived);
        let mut tried: Vec<NodeId> = Vec::new();
        let mut sent = false;
        // The first attempt starts as the request arrived; a retry reads
        // the clock again.
        let mut now = arrived;
        loop {
            let Some(left) = deadline.checked_since(now).filter(|l| *l > Nanos::ZERO) else {
                return Err(GatewayError::DeadlineExceeded {
                    after: timeout,
                    sent,
                });
            };
            let (slot, at) =
                match self
                    .registry
                    .acquire(args.len(), deadline, now, &tried, tried.is_empty())
                {
                    // Handed out at once: no time passed that a read of the
                    // clock would see.
                    Acquired::Now(slot) => (slot, now),
                    Acquired::Refused { why, retry_after } => {
                        return Err(match tried.last() {
                            // A retry finds no room: the earlier failure stands.
                            Some(&node) if sent => GatewayError::NodeLost {
                                node,
                                why: format!("no node took the retry: {why}"),
                            },
                            _ => GatewayError::Overloaded { why, retry_after },
                        });
                    }
                    Acquired::Held(rx) => {
                        match tokio::time::timeout(std::time::Duration::from(left), rx).await {
                            Ok(Ok(slot)) => (slot, self.clock.now()),
                            // The registry dropped the request (its deadline
                            // passed at a tick) or the time ran out here.
                            Ok(Err(_)) | Err(_) => {
                                return Err(GatewayError::DeadlineExceeded {
                                    after: timeout,
                                    sent,
                                });
                            }
                        }
                    }
                };
            let node = slot.node;
            let left = deadline.saturating_since(at);
            let attempt = self.attempt(slot, method, args.clone(), left, at).await;
            let failure = match attempt {
                Attempt::Reply(Ok(reply)) => return Ok(reply),
                Attempt::Reply(Err(e)) => e,
                Attempt::NodeGone => CallError::ConnectionLost {
                    sent: true,
                    cause: format!("node {node} is gone"),
                },
            };
            tried.push(node);
            now = self.clock.now();
            let time_left = deadline > now;
            let more = tried.len() < MAX_ATTEMPTS && time_left;
            match failure {
                // Refused before running, or never sent: safe for any call.
                CallError::Refused { .. } | CallError::TooManyOutstanding { .. }
                    if more && self.may_retry(now) =>
                {
                    continue;
                }
                e @ (CallError::Refused { .. } | CallError::TooManyOutstanding { .. }) => {
                    return Err(GatewayError::Node(e));
                }
                // Never delivered: the node did not start it, so any call
                // may go elsewhere.
                CallError::ConnectionLost { sent: false, .. } if more && self.may_retry(now) => {
                    self.registry.suspect(node);
                    continue;
                }
                // The node is dead or unreachable with the call on it.
                CallError::ConnectionLost { .. } | CallError::ServerUnresponsive { .. } => {
                    sent = true;
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
                }
                CallError::OutcomeUnknown { .. } => {
                    return Err(GatewayError::OutcomeUnknown { node });
                }
                CallError::DeadlineExceeded { sent: on_node, .. } => {
                    return Err(GatewayError::DeadlineExceeded {
                        after: timeout,
                        sent: sent || on_node,
                    });
                }
                e => return Err(GatewayError::Node(e)),
            }
        }
    }

    /// One call on one node, cut short if the node is declared gone.
    async fn attempt(
        &self,
        slot: Slot,
        method: &'static MethodInfo,
        args: Bytes,
        left: Nanos,
        now: Instant,
    ) -> Attempt {
        let mut slot = slot;
        slot.claim();
        let (node, client, mut gone, alone) = (
            slot.node,
            slot.client.clone(),
            slot.gone.clone(),
            slot.alone,
        );
        drop(slot);
        let mut guard = InFlight {
            registry: &self.registry,
            clock: &self.clock,
            node,
            alone,
            started: now,
            answered: false,
            health: None,
            metrics: &self.metrics,
        };
        let options = CallOptions::default().with_timeout(left);
        let call = client.call(method, args, options);
        let outcome = tokio::select! {
            biased;
            r = call => Attempt::Reply(r),
            _ = gone.wait_for(|g| *g) => Attempt::NodeGone,
        };
        guard.answered = matches!(
            outcome,
            Attempt::Reply(Ok(_) | Err(CallError::Remote { .. }))
        );
        // What says something about the node's health (not a refusal under
        // load, not the caller's bad arguments).
        let health = match &outcome {
            Attempt::Reply(Ok(_)) => Some(true),
            Attempt::Reply(Err(
                CallError::Remote { .. } | CallError::Panicked { .. } | CallError::Codec { .. },
            )) => Some(false),
            _ => None,
        };
        guard.health = health;
        outcome
    }
}
