//! The async path: a call as a future, from admission to its answer,
//! through as many attempts as its route allows. The HTTP ingress's way
//! in, and where an RPC call continues when it must wait (held for a
//! node, hedged, retried).

use std::sync::Arc;

use bytes::Bytes;
use ebb_core::{Instant, Nanos};
use ebb_rpc::CallError;
use ebb_rpc::service::{CallContext, MethodInfo};

use super::attempt::Attempt;
use super::retry::Route;
use super::{Arrival, Forwarder, GatewayError};
use crate::registry::{Acquired, gone_cause};
use crate::service::Encoding;

impl Forwarder {
    /// Forwards one postcard-encoded call that arrives now and records its
    /// outcome in the metrics.
    pub async fn call(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        timeout: Nanos,
    ) -> Result<Bytes, GatewayError> {
        self.call_encoded(method, args, Encoding::Postcard, timeout, None)
            .await
    }

    /// The gateway's time now: what an ingress notes as a request's
    /// arrival when no read of a socket brought one.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// When a call whose context is `cx` arrived, on the gateway's clock:
    /// the server's read of its frame, if it came off a socket.
    pub fn arrival(&self, cx: &CallContext) -> Option<Instant> {
        cx.received.map(|at| self.clock.at(at))
    }

    /// [`Forwarder::call`] with arguments encoded as `encoding` says; the
    /// reply comes back encoded the same way. `arrived`: when the ingress
    /// read the call, if before now; its deadline counts from its start,
    /// and the wait since its completion is the gateway's own delay, which
    /// admission judges.
    pub async fn call_encoded(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        timeout: Nanos,
        arrived: Option<Arrival>,
    ) -> Result<Bytes, GatewayError> {
        let now = self.clock.now();
        let arrived = arrived.unwrap_or(Arrival::whole(now));
        let span = (arrived, now);
        let (result, ended) = match self.forward(method, args, encoding, timeout, span).await {
            Ok((reply, ended)) => (Ok(reply), ended),
            Err(e) => (Err(e), self.clock.now()),
        };
        self.record(method, arrived.at, &result, ended);
        result
    }

    async fn forward(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        timeout: Nanos,
        (arrived, now): (Arrival, Instant),
    ) -> Result<(Bytes, Instant), GatewayError> {
        let (deadline, first) = self.admit(args.len(), timeout, (arrived, now), None)?;
        let span = (deadline, timeout);
        self.forward_from(method, &args, encoding, span, Route::from(first), now)
            .await
    }

    /// The attempts of one call from where it stands (`route`) until one
    /// answers (the reply, and when it came) or the call fails. `span`:
    /// its deadline and timeout.
    pub(super) async fn forward_from(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (deadline, timeout): (Instant, Nanos),
        mut route: Route,
        mut now: Instant,
    ) -> Result<(Bytes, Instant), GatewayError> {
        loop {
            let Some(left) = deadline.checked_since(now).filter(|l| *l > Nanos::ZERO) else {
                return Err(GatewayError::DeadlineExceeded {
                    after: timeout,
                    sent: route.sent,
                });
            };
            let acquired = match route.acquired.take() {
                Some(acquired) => acquired,
                None => self.registry.acquire(
                    args.len(),
                    deadline,
                    now,
                    &route.lost,
                    route.tried.is_empty(),
                    route.refused_by,
                ),
            };
            let (slot, at) = match acquired {
                // Handed out at once: no time passed that a read of the
                // clock would see.
                Acquired::Now(slot) => (slot, now),
                Acquired::Refused { why, retry_after } => {
                    return Err(match route.tried.last() {
                        // A retry finds no room: the earlier failure stands.
                        Some(&node) if route.sent => GatewayError::NodeLost {
                            node,
                            why: format!("no node took the retry: {why}"),
                        },
                        _ => GatewayError::Overloaded { why, retry_after },
                    });
                }
                // Only `Forwarder::start` parks a call, and it takes it
                // back whole: not on this path.
                Acquired::Parked => {
                    debug_assert!(false, "a parked call on the async path");
                    return Err(GatewayError::ShuttingDown);
                }
                Acquired::Held(rx) => {
                    self.metrics.held();
                    match tokio::time::timeout(std::time::Duration::from(left), rx).await {
                        Ok(Ok(slot)) => (slot, self.clock.now()),
                        // The registry dropped the request (its deadline
                        // passed at a tick) or the time ran out here.
                        Ok(Err(_)) | Err(_) => {
                            return Err(GatewayError::DeadlineExceeded {
                                after: timeout,
                                sent: route.sent,
                            });
                        }
                    }
                }
            };
            let (node, attempt) = self
                .attempt_maybe_hedged(
                    slot,
                    method,
                    args,
                    encoding,
                    (at, deadline),
                    &mut route.tried,
                )
                .await;
            let failure = match attempt {
                Attempt::Reply(Ok(reply), ended) => return Ok((reply, ended)),
                Attempt::Reply(Err(e), _) => e,
                Attempt::NodeGone => CallError::ConnectionLost {
                    sent: true,
                    cause: gone_cause(node),
                },
            };
            now = self.clock.now();
            self.after_failure(&mut route, node, failure, method, deadline, timeout, now)?;
        }
    }
}
