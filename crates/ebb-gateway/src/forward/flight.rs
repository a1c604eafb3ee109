//! A forwarded RPC call with no future of its own: started by the ingress
//! connection's task, ended by the task that reads the node's reply.
//!
//! The ingress server hands [`Forwarder::start`] the call with a
//! [`DeferredReply`]; the call goes to its node through
//! [`Transport::start_call`] with the forwarder as its [`CallSink`], and
//! whoever learns the outcome (the node client's reader, a caller
//! abandoning a gone node's calls, the node's deadline timer) ends it here:
//! the registry's bookkeeping, the metrics, and the reply, which the ingress
//! server records and writes from that same task. The call's state waits
//! in a slab under the token the transport hands back, so once the slab has
//! grown to the calls in flight a call allocates nothing here: no boxed
//! future, no channel, no place in a set of running futures, and no task
//! is woken to pass the reply on.
//!
//! Only the common case runs so: a first attempt, not hedged, over a
//! transport that starts calls this way. One that must wait for a node is
//! parked in the held FIFO whole, with no task or timer of its own, and
//! launched the same way when a node is handed to it ([`HeldSink`]); one
//! timer for all parked calls answers those whose deadline passes there. A
//! hedged call, or a retry after a failure, continues on the async path
//! (`Forwarder::forward_from`) in a task of its own, taking the same
//! decisions ([`Forwarder::after_failure`]).

use std::sync::{Arc, PoisonError};

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_rpc::CallError;
use ebb_rpc::service::{
    CallContext, CallOptions, CallSink, DeferredReply, MethodInfo, Transport, WriteBatch,
};

use super::retry::Route;
use super::{Arrival, Forwarder, GatewayError};
use crate::registry::{Acquired, HeldSink, ParkedCall, Slot, gone_cause};
use crate::service::Encoding;

/// One call on its node, waiting for the outcome.
pub(super) struct Flight {
    reply: DeferredReply,
    method: &'static MethodInfo,
    /// Kept for a retry on another node (a reference count, not a copy).
    args: Bytes,
    node: NodeId,
    /// Calls the node had from the gateway when this one was sent.
    ahead: u32,
    /// When the ingress read it: its deadline and response time count
    /// from here.
    arrived: Instant,
    /// When it was admitted and sent: the node's latency counts from here.
    sent: Instant,
    timeout: Nanos,
}

impl Forwarder {
    /// Forwards one postcard-encoded call and answers it through `reply`,
    /// from whichever task learns its outcome. Runs on the ingress
    /// connection's task (inside the gateway's runtime). `cx`: the caller's
    /// time left and when the server read the call, whose wait since is
    /// the gateway's own delay.
    pub fn start(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
    ) {
        self.start_with(method, args, cx, reply, None);
    }

    /// [`Forwarder::start`] for one of the calls of one ingress read: the
    /// request to the node waits in `writes`, which the ingress flushes
    /// once the read's calls have all started, so they leave in one write
    /// per node connection.
    pub fn start_in(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
        writes: &mut WriteBatch,
    ) {
        self.start_with(method, args, cx, reply, Some(writes));
    }

    fn start_with(
        self: &Arc<Self>,
        method: &'static MethodInfo,
        args: Bytes,
        cx: CallContext,
        reply: DeferredReply,
        writes: Option<&mut WriteBatch>,
    ) {
        let (timeout, now) = (cx.timeout, self.clock.now());
        let arrived = self.arrival(&cx).unwrap_or(now);
        self.me.get_or_init(|| {
            let sink: std::sync::Weak<dyn HeldSink> = Arc::downgrade(self) as _;
            self.registry.set_held_sink(sink);
            Arc::downgrade(self)
        });
        self.runtime.get_or_init(tokio::runtime::Handle::current);
        if self.hedge.is_some() && method.idempotent {
            // A hedged call races two attempts: the async path's.
            let this = Arc::clone(self);
            self.spawn(async move {
                let postcard = Encoding::Postcard;
                let arrival = Some(Arrival::whole(arrived));
                let call = this.call_encoded(method, args, postcard, timeout, arrival);
                let result = call.await;
                reply.send(result.map_err(Into::into));
            });
            return;
        }
        let whole = Arrival::whole(arrived);
        let bytes = args.len();
        let mut flight = Some(Flight {
            reply,
            method,
            args,
            node: NodeId(0),
            ahead: 0,
            arrived,
            sent: now,
            timeout,
        });
        // Boxed only if it must wait.
        let mut park = || flight.take().map(|f| Box::new(f) as ParkedCall);
        let admitted = self.admit(bytes, timeout, (whole, now), Some(&mut park));
        if let Ok((_, Acquired::Parked)) = admitted {
            self.metrics.held();
            return self.watch_parked();
        }
        let Some(flight) = flight else {
            debug_assert!(false, "a call taken to park was not parked");
            return;
        };
        match admitted {
            Ok((deadline, Acquired::Now(slot))) => self.launch(slot, flight, deadline, writes),
            Ok((deadline, held)) => self.continue_async(flight, deadline, Route::from(held), now),
            Err(e) => self.answer(flight.reply, method, arrived, Err(e), now),
        }
    }

    /// Starts, once, the one timer of the calls parked in the held FIFO:
    /// it sleeps until the earliest deadline among them, answers those
    /// out of time ([`HeldSink::expired`]), and sleeps again; a call parked
    /// with an earlier deadline wakes it. Without a task or timer per held
    /// call, no held call waits past its deadline in the gateway.
    fn watch_parked(self: &Arc<Self>) {
        self.parked_timer.get_or_init(|| {
            let me = Arc::downgrade(self);
            let registry = self.registry.clone();
            let wake = registry.held_timer_wake();
            let clock = self.clock;
            self.spawn(async move {
                loop {
                    let next = registry.expire_parked(clock.now());
                    if me.strong_count() == 0 {
                        return;
                    }
                    match next {
                        Some(at) => {
                            let at = tokio::time::Instant::from_std(clock.to_std(at));
                            tokio::select! {
                                () = tokio::time::sleep_until(at) => {}
                                () = wake.notified() => {}
                            }
                        }
                        None => wake.notified().await,
                    }
                }
            });
        });
    }

    /// Sends `flight` to `slot`'s node, whose transport delivers the
    /// outcome to [`CallSink::deliver`]; one that cannot continues on the
    /// async path with the same slot.
    fn launch(
        self: &Arc<Self>,
        mut slot: Slot,
        mut flight: Flight,
        deadline: Instant,
        writes: Option<&mut WriteBatch>,
    ) {
        flight.node = slot.node;
        flight.ahead = slot.ahead;
        let (method, args, sent) = (flight.method, flight.args.clone(), flight.sent);
        let left = deadline.saturating_since(sent);
        let token = self.flights().insert(flight);
        let sink: Arc<dyn CallSink> = Arc::clone(self) as Arc<dyn CallSink>;
        let options = CallOptions::default().with_timeout(left);
        let client = &slot.client;
        let started = match writes {
            Some(writes) => {
                client.start_call_in(method, args, options, &sink, token as u64, writes)
            }
            None => client.start_call(method, args, options, &sink, token as u64),
        };
        match started {
            Ok(()) => {
                // The outcome (perhaps delivered already) releases the node.
                slot.claim();
                // `Registry::set_gone` sets `gone`, then abandons the
                // node's calls; a call started as that happened is
                // abandoned here.
                if *slot.gone.borrow() {
                    slot.client.abandon_calls(&gone_cause(slot.node));
                }
            }
            Err(_) => {
                // This transport answers through futures only.
                let Some(flight) = self.flights().try_remove(token) else {
                    debug_assert!(false, "a call the transport refused was delivered");
                    return;
                };
                let route = Route::from(Acquired::Now(slot));
                self.continue_async(flight, deadline, route, sent);
            }
        }
    }

    /// The rest of a call on the async path, in a task of its own, from
    /// where `route` says it stands: a place in the held FIFO or a node
    /// handed out, or the next acquisition after a failure.
    fn continue_async(
        self: &Arc<Self>,
        flight: Flight,
        deadline: Instant,
        route: Route,
        now: Instant,
    ) {
        let this = Arc::clone(self);
        self.spawn(async move {
            let Flight {
                reply,
                method,
                args,
                arrived,
                timeout,
                ..
            } = flight;
            let span = (deadline, timeout);
            let result = this
                .forward_from(method, &args, Encoding::Postcard, span, route, now)
                .await;
            let (result, ended) = match result {
                Ok((reply, ended)) => (Ok(reply), ended),
                Err(e) => (Err(e), this.clock.now()),
            };
            this.answer(reply, method, arrived, result, ended);
        });
    }

    /// Records the outcome, reached at `now`, and answers the caller.
    fn answer(
        &self,
        reply: DeferredReply,
        method: &'static MethodInfo,
        arrived: Instant,
        result: Result<Bytes, GatewayError>,
        now: Instant,
    ) {
        self.record(method, arrived, &result, now);
        reply.send(result.map_err(Into::into));
    }

    fn flights(&self) -> std::sync::MutexGuard<'_, slab::Slab<Flight>> {
        // Every critical section is one insert or one removal.
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `task` on the gateway's runtime, from any thread (a gone
    /// node's calls are abandoned from the pool manager's).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match self.runtime.get() {
            Some(rt) => drop(rt.spawn(task)),
            // Only `start` launches calls, and it sets the runtime first.
            None => drop(tokio::spawn(task)),
        }
    }
}

impl CallSink for Forwarder {
    /// A lone outcome (the only one of its node read): its reply is
    /// written before the registry and the metrics count the call, so the
    /// caller does not wait for that bookkeeping.
    fn deliver(&self, token: u64, outcome: Result<Bytes, CallError>) {
        self.end_flight(token, outcome, &mut WriteBatch::default(), true);
    }

    /// One of several outcomes of a node read: its reply leaves with
    /// `batch`, which the deliverer flushes once all are handed over.
    fn deliver_in(&self, token: u64, outcome: Result<Bytes, CallError>, batch: &mut WriteBatch) {
        self.end_flight(token, outcome, batch, false);
    }
}

impl Forwarder {
    /// The outcome of a call [`Forwarder::launch`] sent: the answer
    /// (appended to `batch`, written at once when `alone`), what the
    /// attempt's end tells the registry, or a retry.
    fn end_flight(
        &self,
        token: u64,
        outcome: Result<Bytes, CallError>,
        batch: &mut WriteBatch,
        alone: bool,
    ) {
        let flight = usize::try_from(token)
            .ok()
            .and_then(|t| self.flights().try_remove(t));
        let Some(flight) = flight else {
            debug_assert!(false, "an outcome for no call in flight");
            return;
        };
        let (node, ahead, arrived) = (flight.node, flight.ahead, flight.arrived);
        if let Ok(reply) = outcome {
            // The reply first: the session records it and it leaves now
            // (or with the batch). Then one reading of the clock ends the
            // attempt and the request, which the registry counts in one
            // lock.
            flight.reply.send_in(Ok(reply), batch);
            if alone {
                batch.flush();
            }
            let now = self.clock.now();
            let response = now.saturating_since(arrived);
            let answered = (now, Some(response));
            self.attempt_ended(node, ahead, flight.sent, &Ok(Bytes::new()), answered);
            return self.count_answer(flight.method, response, None);
        }
        // A failure may yet be retried: the registry learns of it first.
        let now = self.clock.now();
        self.attempt_ended(node, ahead, flight.sent, &outcome, (now, None));
        let Err(failure) = outcome else {
            return;
        };
        let deadline = flight.arrived + flight.timeout;
        let mut route = Route::default();
        match self.after_failure(
            &mut route,
            flight.node,
            failure,
            flight.method,
            deadline,
            flight.timeout,
            now,
        ) {
            Err(e) => self.answer(flight.reply, flight.method, arrived, Err(e), now),
            Ok(()) => match self.me.get().and_then(std::sync::Weak::upgrade) {
                Some(this) => this.continue_async(flight, deadline, route, now),
                // Only `start` launches, and it sets `me` first.
                None => self.answer(
                    flight.reply,
                    flight.method,
                    arrived,
                    Err(GatewayError::ShuttingDown),
                    now,
                ),
            },
        }
    }
}

impl HeldSink for Forwarder {
    /// A parked call got a node: it is sent as a call that got one at
    /// once is, its node's latency timed from now.
    fn launch(&self, slot: Slot, call: ParkedCall) {
        let Ok(flight) = call.downcast::<Flight>() else {
            debug_assert!(false, "only flights are parked");
            return;
        };
        let mut flight = *flight;
        flight.sent = self.clock.now();
        let deadline = flight.arrived + flight.timeout;
        match self.me.get().and_then(std::sync::Weak::upgrade) {
            Some(this) => this.launch(slot, flight, deadline, None),
            // Parked only by `start`, which sets `me` first.
            None => {
                let now = flight.sent;
                let (method, arrived) = (flight.method, flight.arrived);
                let e = Err(GatewayError::ShuttingDown);
                self.answer(flight.reply, method, arrived, e, now);
            }
        }
    }

    /// A parked call's deadline passed in the held FIFO: it was never
    /// sent, as a held future's is not.
    fn expired(&self, call: ParkedCall) {
        let Ok(flight) = call.downcast::<Flight>() else {
            debug_assert!(false, "only flights are parked");
            return;
        };
        let e = GatewayError::DeadlineExceeded {
            after: flight.timeout,
            sent: false,
        };
        let now = self.clock.now();
        self.answer(flight.reply, flight.method, flight.arrived, Err(e), now);
    }
}
