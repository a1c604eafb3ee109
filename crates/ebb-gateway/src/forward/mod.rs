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

mod attempt;
mod batch;
mod call;
mod error;
mod flight;
mod hedge;
mod retry;

use std::sync::{Mutex, OnceLock, Weak};

use bytes::Bytes;
use ebb_core::{Instant, Nanos};
use ebb_policy::hedge::HedgeDelay;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::service::MethodInfo;

pub use attempt::ABANDONED_CALL_WAIT_MS;
pub use error::GatewayError;
pub use retry::MAX_ATTEMPTS;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::registry::{Acquired, ParkedCall, Registry};

/// When a request came in, on the gateway's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// When the ingress took it in (the read of its frame, or the HTTP
    /// server's hand-over of its head): its deadline counts from here.
    pub at: Instant,
    /// When all of it was in: the gateway's own delay, which admission
    /// judges, counts from here. Later than `at` when an HTTP client sent
    /// its body slowly: that wait was the client's, not the gateway's.
    pub complete: Instant,
}

impl Arrival {
    /// A request that came in whole at `at` (a frame).
    pub fn whole(at: Instant) -> Arrival {
        Arrival { at, complete: at }
    }
}

/// The request path, shared by the RPC and HTTP ingress.
pub struct Forwarder {
    registry: Registry,
    clock: Clock,
    metrics: Metrics,
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
    /// Set once the timer of the calls parked in the held FIFO runs
    /// (`Forwarder::watch_parked`).
    parked_timer: OnceLock<()>,
    /// The async path's requests of one turn of the runtime, written
    /// together.
    turn_writes: std::sync::Arc<batch::TurnWrites>,
    /// Every request taken in and answered, for the busy-polling spinner.
    activity: crate::busy_poll::Activity,
}

impl Forwarder {
    pub fn new(
        registry: Registry,
        clock: Clock,
        metrics: Metrics,
        budget: RetryBudgetConfig,
    ) -> Forwarder {
        // The budget lives under the registry's lock, which a request's
        // first acquisition takes anyway.
        registry.set_retry_budget(budget);
        Forwarder {
            registry,
            clock,
            metrics,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
            hedge: None,
            flights: Mutex::new(slab::Slab::new()),
            runtime: OnceLock::new(),
            me: OnceLock::new(),
            parked_timer: OnceLock::new(),
            turn_writes: std::sync::Arc::default(),
            activity: crate::busy_poll::Activity::default(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Requests coming and going, which keep a busy-polling gateway awake.
    pub fn activity(&self) -> &crate::busy_poll::Activity {
        &self.activity
    }

    /// New calls are refused from now on; calls already taken finish.
    pub fn stop_taking_calls(&self) {
        self.shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Counts one request answered at `now` in the registry and the
    /// metrics.
    fn record(
        &self,
        method: &'static MethodInfo,
        arrived: Instant,
        result: &Result<Bytes, GatewayError>,
        now: Instant,
    ) {
        let response = now.saturating_since(arrived);
        self.registry.record_response(response);
        self.count_answer(method, response, result.as_ref().err());
    }

    /// The metrics' side of [`Forwarder::record`]: alone for an answer
    /// whose response time the registry took with the attempt's end
    /// (`Registry::finish`), which spares the call a lock.
    fn count_answer(
        &self,
        method: &'static MethodInfo,
        response: Nanos,
        error: Option<&GatewayError>,
    ) {
        self.activity.event();
        let outcome = error.map_or("ok", GatewayError::kind);
        self.metrics
            .answered(method, outcome, response.as_secs_f64());
        if let Some(GatewayError::Overloaded { why, .. }) = error {
            self.metrics.refused(why);
        }
    }

    /// A new request's checks before its first attempt, and that attempt's
    /// node (or place in the held FIFO): its deadline and what `acquire`
    /// gave, or why it is answered at once.
    /// `arrived`: when the ingress read it (its deadline counts from its
    /// start, the gateway's delay from its completion); `now`: this
    /// decision. `park`: makes the call to park in the held FIFO, should
    /// it wait there ([`Registry::acquire_parked`]).
    fn admit(
        &self,
        bytes: usize,
        timeout: Nanos,
        (arrived, now): (Arrival, Instant),
        park: Option<&mut dyn FnMut() -> Option<ParkedCall>>,
    ) -> Result<(Instant, Acquired), GatewayError> {
        self.activity.event();
        if self.shutting_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(GatewayError::ShuttingDown);
        }
        debug_assert!(arrived.at <= arrived.complete);
        let deadline = arrived.at + timeout;
        if deadline <= now {
            self.registry.count_request(now);
            return Err(GatewayError::DeadlineExceeded {
                after: timeout,
                sent: false,
            });
        }
        let acquired = match park {
            Some(park) => {
                let at = (arrived.complete, now);
                self.registry.acquire_parked(bytes, deadline, at, park)
            }
            None => self
                .registry
                .acquire_first(bytes, deadline, arrived.complete, now),
        };
        match acquired {
            Acquired::Refused { why, retry_after } => {
                Err(GatewayError::Overloaded { why, retry_after })
            }
            acquired => Ok((deadline, acquired)),
        }
    }
}
