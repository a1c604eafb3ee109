//! One request's way through the gateway: admission, a node from the
//! balancer (or a place in the held FIFO), the call to that node, and what
//! a failure means for the caller.
//!
//! The semantics kept here:
//! - an at-most-once call goes to one node; it goes to another only when the
//!   first provably did not start it (the node refused it without running,
//!   or it never left this gateway);
//! - a call refused unrun (the node full) goes to another ready node; with
//!   none, it waits in the held FIFO until a call ends and may then go back
//!   to the node that refused it: with one node there is nowhere else;
//! - when the node dies with an at-most-once call in flight, the caller gets
//!   [`GatewayError::OutcomeUnknown`] at once, not after its deadline;
//! - an idempotent call whose node died or stopped answering is sent to
//!   another node, within its deadline, while the retry budget allows;
//! - a request held for a node waits no longer than its deadline.
//!
//! Deduplication of a client's own retries happens before this, in the RPC
//! ingress's server session: a duplicate never reaches [`Forwarder::call`]
//! or [`Forwarder::start`].
//!
//! Two ways in: [`Forwarder::call`], a future (the HTTP ingress, and any
//! call that needs to wait), and [`Forwarder::start`] (`flight.rs`), the RPC
//! ingress's, which ends the call from the task that reads the node's reply.
//! Both take the same decisions ([`Forwarder::after_failure`]).

mod error;
mod flight;

use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::task::Poll;

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::hedge::{HedgeConfig, HedgeDelay};
use ebb_policy::retry::{RetryBudget, RetryBudgetConfig};
use ebb_rpc::CallError;
use ebb_rpc::service::{CallContext, CallOptions, MethodInfo, Transport};

pub use error::GatewayError;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::registry::{Acquired, Registry, Slot, gone_cause};
use crate::service::Encoding;

/// Most nodes one call is tried on (first attempt included).
pub const MAX_ATTEMPTS: usize = 4;
/// How long a call on a node just declared gone may take to say whether it
/// was ever sent (its transport ends it at once when it can tell); past
/// this it counts as sent.
pub const ABANDONED_CALL_WAIT_MS: u64 = 100;

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
    ahead: u32,
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
            .finish(node, latency, self.ahead, self.health, now)
        {
            self.metrics.ejected();
        }
    }
}

/// Whether an attempt's outcome was the node's answer (a latency sample).
fn answered(outcome: &Result<Bytes, CallError>) -> bool {
    matches!(outcome, Ok(_) | Err(CallError::Remote { .. }))
}

/// What an attempt's outcome says about its node's health, if anything
/// (not a refusal under load, not the caller's bad arguments).
fn health_of(outcome: &Result<Bytes, CallError>) -> Option<bool> {
    match outcome {
        Ok(_) => Some(true),
        Err(CallError::Remote { .. } | CallError::Panicked { .. } | CallError::Codec { .. }) => {
            Some(false)
        }
        Err(_) => None,
    }
}

/// Where a call has been: what its next attempt must take into account.
#[derive(Default)]
struct Route {
    /// Nodes it was tried on, in order.
    tried: Vec<NodeId>,
    /// Nodes the call must not go back to: they were lost with it, or
    /// could not carry it. A node that refused it under load is not here:
    /// it may take the call once a call there ends.
    lost: Vec<NodeId>,
    /// The node that refused the last attempt unrun, being full.
    refused_by: Option<NodeId>,
    /// A node may have had the call.
    sent: bool,
    /// The next attempt's node (or place in the held FIFO), when it was
    /// acquired before the async path took the call over.
    acquired: Option<Acquired>,
}

impl Route {
    fn from(acquired: Acquired) -> Route {
        Route {
            acquired: Some(acquired),
            ..Route::default()
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
    /// Set when idempotent calls are hedged: when to send the second copy.
    hedge: Option<Mutex<HedgeDelay>>,
    /// Calls started by [`Forwarder::start`] waiting for their node's
    /// outcome, by the token their transport hands back.
    flights: Mutex<slab::Slab<flight::Flight>>,
    /// The runtime `start` ran on, where a call that continues on the async
    /// path is spawned from whatever thread delivered its outcome.
    runtime: OnceLock<tokio::runtime::Handle>,
    /// This forwarder, for a delivered outcome that needs a task.
    me: OnceLock<Weak<Forwarder>>,
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
            hedge: None,
            flights: Mutex::new(slab::Slab::new()),
            runtime: OnceLock::new(),
            me: OnceLock::new(),
        }
    }

    /// Hedges idempotent calls: one that has not answered after the
    /// configured percentile of recent latencies gets a second copy on
    /// another node (if the retry budget allows and a node is free), and
    /// the first answer wins. At-most-once calls are never hedged.
    pub fn with_hedging(mut self, cfg: HedgeConfig) -> Forwarder {
        self.hedge = Some(Mutex::new(HedgeDelay::new(cfg)));
        self
    }

    fn hedge_delay(&self) -> Option<Nanos> {
        let h = self.hedge.as_ref()?;
        h.lock().unwrap_or_else(PoisonError::into_inner).delay()
    }

    /// Feeds the hedge delay a call that started at `started` and
    /// answered now; without hedging, not even the clock is read.
    fn observe_latency(&self, started: Instant) {
        if let Some(h) = &self.hedge {
            let latency = self.clock.now().saturating_since(started);
            h.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(latency);
        }
    }

    /// A hedge takes from the retry budget like a retry.
    fn may_hedge(&self, now: Instant) -> bool {
        let granted = self.take_from_budget(now);
        if granted {
            self.metrics.hedged();
        }
        granted
    }

    /// One retry's worth of the shared budget, if there is one left.
    fn take_from_budget(&self, now: Instant) -> bool {
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_retry(now)
    }

    /// The attempt on `slot`, and, for an idempotent call still unanswered
    /// after the hedge delay, a second one on another node; the first
    /// answer wins. The first copy goes at `at`; the call ends by
    /// `deadline`. Returns the node whose outcome counts; a node whose
    /// copy failed while the other answered is added to `tried`.
    ///
    /// A call that is not hedged awaits its one attempt here, and only a
    /// hedged one enters the (boxed) race of two: every call's future
    /// carries room for what it may await, and the race's two attempts and
    /// timer would make each forwarded call's future (allocated and moved
    /// once per call) twice as large.
    async fn attempt_maybe_hedged(
        self: &Arc<Self>,
        slot: Slot,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (at, deadline): (Instant, Instant),
        tried: &mut Vec<NodeId>,
    ) -> (NodeId, Attempt) {
        let left = deadline.saturating_since(at);
        let delay = self
            .hedge_delay()
            .filter(|d| method.idempotent && *d < left);
        match delay {
            None => {
                let node = slot.node;
                let done = Self::attempt(&**self, slot, method, args.clone(), encoding, left, at);
                (node, done.await)
            }
            Some(delay) => {
                let race = self.hedged(slot, method, args, encoding, (at, deadline), delay, tried);
                Box::pin(race).await
            }
        }
    }

    /// [`Forwarder::attempt_maybe_hedged`] for a call hedged after `delay`.
    #[allow(clippy::too_many_arguments)]
    async fn hedged(
        self: &Arc<Self>,
        slot: Slot,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (at, deadline): (Instant, Instant),
        delay: Nanos,
        tried: &mut Vec<NodeId>,
    ) -> (NodeId, Attempt) {
        let first_node = slot.node;
        let left = deadline.saturating_since(at);
        // Owned and boxed, so the copy that loses can be left running.
        let attempt = |slot, left, at| {
            let this = Arc::clone(self);
            Box::pin(Self::attempt(
                this,
                slot,
                method,
                args.clone(),
                encoding,
                left,
                at,
            ))
        };
        let mut first = attempt(slot, left, at);
        let wait = std::time::Duration::from(delay);
        if let Ok(done) = tokio::time::timeout(wait, &mut first).await {
            return (first_node, done);
        }
        let now = self.clock.now();
        let mut excluded = tried.clone();
        excluded.push(first_node);
        // A node first (an unused slot gives itself back when dropped),
        // then the budget, so a hedge that cannot go costs nothing.
        let second_slot = self
            .registry
            .acquire_other(&excluded, now)
            .filter(|_| self.may_hedge(now));
        let Some(second_slot) = second_slot else {
            return (first_node, first.await);
        };
        let second_node = second_slot.node;
        let left = deadline.saturating_since(now);
        let mut second = attempt(second_slot, left, now);
        let (first_won, done) = tokio::select! {
            a = &mut first => (true, a),
            b = &mut second => (false, b),
        };
        let (winner, other_node, rest) = if first_won {
            (first_node, second_node, second)
        } else {
            (second_node, first_node, first)
        };
        if matches!(done, Attempt::Reply(Ok(_))) {
            if winner == second_node {
                self.metrics.hedge_won();
            }
            // The losing copy still runs on its node: left running here,
            // it keeps that node's in-flight count until its reply (or the
            // node's loss, or the call's deadline) ends it, so the
            // balancer and admission see the node as busy as it is. Such
            // tasks are bounded by the nodes' in-flight bounds.
            drop(tokio::spawn(rest));
            return (winner, done);
        }
        // The first to end failed: the other copy may still answer.
        tried.push(winner);
        (other_node, rest.await)
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
        let granted = self.take_from_budget(now);
        if granted {
            self.registry.count_retry();
            self.metrics.retried();
        }
        granted
    }

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
    /// read the call, if before now; its deadline counts from then, and
    /// the wait since is the gateway's own delay, which admission judges.
    pub async fn call_encoded(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        timeout: Nanos,
        arrived: Option<Instant>,
    ) -> Result<Bytes, GatewayError> {
        let now = self.clock.now();
        let arrived = arrived.unwrap_or(now);
        let span = (arrived, now);
        let result = self.forward(method, args, encoding, timeout, span).await;
        self.record(method, arrived, &result);
        result
    }

    /// Counts one answered request in the registry and the metrics.
    fn record(
        &self,
        method: &'static MethodInfo,
        arrived: Instant,
        result: &Result<Bytes, GatewayError>,
    ) {
        let response = self.clock.now().saturating_since(arrived);
        self.registry.record_response(response);
        let secs = response.as_secs_f64();
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.metrics.answered(method, outcome, secs);
        if let Err(GatewayError::Overloaded { why, .. }) = result {
            self.metrics.refused(why);
        }
    }

    /// A new request's checks before its first attempt, and that attempt's
    /// node (or place in the held FIFO): its deadline and what `acquire`
    /// gave, or why it is answered at once.
    /// `arrived`: when the ingress read it; `now`: this decision.
    fn admit(
        &self,
        bytes: usize,
        timeout: Nanos,
        (arrived, now): (Instant, Instant),
    ) -> Result<(Instant, Acquired), GatewayError> {
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::ShuttingDown);
        }
        let deadline = arrived + timeout;
        self.budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .on_request(now);
        if deadline <= now {
            return Err(GatewayError::DeadlineExceeded {
                after: timeout,
                sent: false,
            });
        }
        match self.registry.acquire_first(bytes, deadline, arrived, now) {
            Acquired::Refused { why, retry_after } => {
                Err(GatewayError::Overloaded { why, retry_after })
            }
            acquired => Ok((deadline, acquired)),
        }
    }

    async fn forward(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        timeout: Nanos,
        (arrived, now): (Instant, Instant),
    ) -> Result<Bytes, GatewayError> {
        let (deadline, first) = self.admit(args.len(), timeout, (arrived, now))?;
        let span = (deadline, timeout);
        self.forward_from(method, &args, encoding, span, Route::from(first), now)
            .await
    }

    /// The attempts of one call from where it stands (`route`) until one
    /// answers or the call fails. `span`: its deadline and timeout.
    async fn forward_from(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (deadline, timeout): (Instant, Nanos),
        mut route: Route,
        mut now: Instant,
    ) -> Result<Bytes, GatewayError> {
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
                Acquired::Held(rx) => {
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
                Attempt::Reply(Ok(reply)) => return Ok(reply),
                Attempt::Reply(Err(e)) => e,
                Attempt::NodeGone => CallError::ConnectionLost {
                    sent: true,
                    cause: gone_cause(node),
                },
            };
            now = self.clock.now();
            self.after_failure(&mut route, node, failure, method, deadline, timeout, now)?;
        }
    }

    /// What a failed attempt on `node` means for the call: `Ok` to try
    /// again (`route` updated), or the error its caller gets.
    #[allow(clippy::too_many_arguments)]
    fn after_failure(
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

    /// What the end of an attempt started at `started` on `node` tells the
    /// registry and the hedge delay: the node's in-flight count given
    /// back, a latency sample if the node answered, its health.
    fn attempt_ended(
        &self,
        node: NodeId,
        ahead: u32,
        started: Instant,
        outcome: &Result<Bytes, CallError>,
        now: Instant,
    ) {
        if outcome.is_ok() {
            self.observe_latency(started);
        }
        let latency = answered(outcome).then(|| now.saturating_since(started));
        if self
            .registry
            .finish(node, latency, ahead, health_of(outcome), now)
        {
            self.metrics.ejected();
        }
    }

    /// One call on one node, cut short if the node is declared gone.
    /// `this` is the forwarder borrowed, or owned (an `Arc`) when the
    /// attempt may outlive its caller (a hedge's losing copy).
    async fn attempt<F: std::ops::Deref<Target = Forwarder>>(
        this: F,
        slot: Slot,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        left: Nanos,
        now: Instant,
    ) -> Attempt {
        let this = &*this;
        let mut slot = slot;
        slot.claim();
        let (node, client, mut gone, ahead) = (
            slot.node,
            slot.client.clone(),
            slot.gone.clone(),
            slot.ahead,
        );
        drop(slot);
        let mut guard = InFlight {
            registry: &this.registry,
            clock: &this.clock,
            node,
            ahead,
            started: now,
            answered: false,
            health: None,
            metrics: &this.metrics,
        };
        let options = CallOptions::default().with_timeout(left);
        let call = match encoding {
            Encoding::Postcard => client.call(method, args, options),
            Encoding::Json => client.call_json_text(method, args, options),
        };
        let mut call = call;
        let outcome = if client.abandons_at_once() {
            // `Registry::set_gone` sets `gone`, then abandons the node's
            // calls, which ends them at once; a call started as that
            // happened is abandoned here. Nothing to watch per call.
            let mut looked = false;
            let answered = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Pending if !std::mem::replace(&mut looked, true) && *gone.borrow() => {
                    client.abandon_calls(&gone_cause(node));
                    call.as_mut().poll(cx)
                }
                polled => polled,
            });
            Attempt::Reply(answered.await)
        } else {
            let answered = tokio::select! {
                biased;
                r = &mut call => Some(r),
                _ = gone.wait_for(|g| *g) => None,
            };
            match answered {
                Some(r) => Attempt::Reply(r),
                None => {
                    // The node is gone: its transport ends the calls it
                    // holds, saying which never left (those did not run
                    // and may go to another node, at-most-once or not).
                    client.abandon_calls(&gone_cause(node));
                    let wait = std::time::Duration::from_millis(ABANDONED_CALL_WAIT_MS);
                    match tokio::time::timeout(wait, &mut call).await {
                        Ok(r) => Attempt::Reply(r),
                        Err(_) => Attempt::NodeGone,
                    }
                }
            }
        };
        if let Attempt::Reply(r) = &outcome {
            guard.answered = answered(r);
            guard.health = health_of(r);
            if r.is_ok() {
                this.observe_latency(now);
            }
        }
        outcome
    }
}
