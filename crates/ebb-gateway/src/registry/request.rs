//! The request path: admission and a node (or a place in the held FIFO)
//! for each call, and what its end tells the registry.

use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::admission::{self, AdmissionConfig, Admit};
use ebb_policy::balance::{Choice, RequestInfo};
use tokio::sync::oneshot;

use super::{
    Acquired, Ended, HeldRequest, Inner, LATENCY_TAU, ParkedCall, Registry, SERVICE_TIME_WEIGHT,
    Slot, Waiter,
};

/// What makes a call to park in the held FIFO, should it wait there
/// ([`Registry::acquire_parked`]); `None`: it waits on a channel.
type Park<'a> = Option<&'a mut dyn FnMut() -> Option<ParkedCall>>;

impl Registry {
    /// Admission, then a node now, a place in the held FIFO, or a refusal.
    /// `refused_by`: the node that just refused the request unrun, being
    /// full. The request goes to another ready node if there is one;
    /// otherwise it is held until a call ends (that frees room, on the
    /// refusing node too) rather than sent straight back, unless nothing is
    /// in flight anywhere (then no call would end to wake it).
    pub fn acquire(
        &self,
        bytes: usize,
        deadline: Instant,
        now: Instant,
        excluded: &[NodeId],
        first_attempt: bool,
        refused_by: Option<NodeId>,
    ) -> Acquired {
        let arrived = first_attempt.then_some(now);
        self.acquire_at(bytes, deadline, now, excluded, arrived, refused_by, None)
    }

    /// A new request that gets no [`Registry::acquire_first`] (its time
    /// ran out before) still counts toward the retry budget.
    pub fn count_request(&self, now: Instant) {
        self.lock().budget.on_request(now);
    }

    /// One retry's (or hedge's) worth of the retry budget at `now`, if
    /// there is one left.
    pub fn try_retry(&self, now: Instant) -> bool {
        self.lock().budget.try_retry(now)
    }

    /// A new request's first [`Registry::acquire`] at `now`, read by the
    /// ingress at `arrived`: the wait in between is the gateway's own
    /// delay, which admission judges. It counts toward the retry budget.
    pub fn acquire_first(
        &self,
        bytes: usize,
        deadline: Instant,
        arrived: Instant,
        now: Instant,
    ) -> Acquired {
        self.acquire_at(bytes, deadline, now, &[], Some(arrived), None, None)
    }

    /// [`Registry::acquire_first`] for a call that, if it must wait, is
    /// parked in the held FIFO whole (`park` makes it: only a call that
    /// waits is boxed), with no task and no timer of its own
    /// ([`Acquired::Parked`]). The held sink ([`Registry::set_held_sink`])
    /// later launches it on the node handed to it, or answers it when its
    /// deadline passes.
    pub fn acquire_parked(
        &self,
        bytes: usize,
        deadline: Instant,
        (arrived, now): (Instant, Instant),
        park: &mut dyn FnMut() -> Option<ParkedCall>,
    ) -> Acquired {
        self.acquire_at(bytes, deadline, now, &[], Some(arrived), None, Some(park))
    }

    /// [`Registry::acquire`]; `arrived` is set for a request's first
    /// attempt: when the ingress read it. `park`: makes the call to park,
    /// rather than wait for on a channel, if it must wait.
    #[allow(clippy::too_many_arguments)]
    fn acquire_at(
        &self,
        bytes: usize,
        deadline: Instant,
        now: Instant,
        excluded: &[NodeId],
        arrived: Option<Instant>,
        refused_by: Option<NodeId>,
        park: Park<'_>,
    ) -> Acquired {
        self.with(|inner| {
            inner.acquire(
                bytes,
                deadline,
                now,
                excluded,
                (arrived, refused_by, park),
                self,
            )
        })
    }
}

impl Inner {
    fn acquire(
        &mut self,
        bytes: usize,
        deadline: Instant,
        now: Instant,
        excluded: &[NodeId],
        (arrived, refused_by, park): (Option<Instant>, Option<NodeId>, Park<'_>),
        me: &Registry,
    ) -> Acquired {
        let inner = self;
        if let Some(arrived) = arrived {
            inner.counters.arrivals += 1;
            inner.budget.on_request(now);
            // A retry was admitted once already; a new request is refused
            // when the gateway is behind.
            let delay = inner.gateway_delay(arrived, now);
            if let Admit::Refuse { why, retry_after } =
                admission::admit_delay(&inner.admission, delay, now)
            {
                inner.counters.refusals += 1;
                return Acquired::Refused { why, retry_after };
            }
        }
        let load = inner.load(now);
        let deadline_cfg = AdmissionConfig {
            max_held_requests: usize::MAX,
            max_held_bytes: usize::MAX,
            ..inner.admission
        };
        if let Admit::Refuse { why, retry_after } =
            admission::admit(&deadline_cfg, &load, bytes, deadline, now, false)
        {
            inner.counters.refusals += 1;
            return Acquired::Refused { why, retry_after };
        }
        let req = RequestInfo {
            deadline: Some(deadline),
        };
        let wait_for_room = refused_by.is_some() && inner.views.iter().any(|v| v.in_flight > 0);
        // The balancer's pick, unless the request may not go there (it
        // failed there) or the node is at its bound of calls in flight.
        let mut unusable_pick = false;
        if !wait_for_room {
            match inner.balancer.pick(&inner.views, req, now, &mut inner.rng) {
                Choice::Node(i) if inner.may_take(i, excluded) => {
                    if let Some(slot) = inner.take(i, me, now) {
                        return Acquired::Now(slot);
                    }
                }
                Choice::Node(_) => unusable_pick = true,
                Choice::Hold => {}
            }
        }
        // A retry that the balancer sent back to a node it failed on (or
        // that must not go straight back to the node that refused it), or a
        // request whose node is full, takes the least busy other ready node
        // with room instead; with none it is held.
        if unusable_pick || !excluded.is_empty() || wait_for_room {
            let avoid = refused_by.filter(|_| wait_for_room);
            if let Some(slot) = inner
                .other_node(excluded, avoid)
                .and_then(|i| inner.take(i, me, now))
            {
                return Acquired::Now(slot);
            }
        }
        // A new request is not held for room the gateway itself has not
        // read back: that wait would be its own, and holding costs a
        // saturated gateway more than refusing.
        if arrived.is_some() {
            let behind = inner.dispatch_behind();
            if let Admit::Refuse { why, retry_after } =
                admission::admit_hold(&inner.admission, behind)
            {
                inner.counters.refusals += 1;
                return Acquired::Refused { why, retry_after };
            }
        }
        let queue_cfg = AdmissionConfig {
            deadline_check: false,
            ..inner.admission
        };
        if let Admit::Refuse { why, retry_after } =
            admission::admit(&queue_cfg, &load, bytes, deadline, now, true)
        {
            inner.counters.refusals += 1;
            return Acquired::Refused { why, retry_after };
        }
        let (waiter, acquired) = match park.and_then(|make| make()) {
            Some(call) => (Waiter::Parked(call), Acquired::Parked),
            None => {
                let (tx, rx) = oneshot::channel();
                (Waiter::Task(tx), Acquired::Held(rx))
            }
        };
        let wake = inner.push_held(HeldRequest {
            seq: 0,
            waiter,
            arrived: now,
            bytes,
            deadline,
            excluded: excluded.to_vec(),
        });
        if wake {
            inner.parked.wake.notify_one();
        }
        acquired
    }
}

impl Registry {
    /// A ready node other than `excluded`, now, for a hedge: no admission
    /// check, no place in the held FIFO (a hedge that cannot go at once is
    /// not worth sending). The balancer's pick if it is allowed, else the
    /// least busy other ready node.
    pub fn acquire_other(&self, excluded: &[NodeId], now: Instant) -> Option<Slot> {
        let mut g = self.lock();
        let inner = &mut *g;
        let req = RequestInfo { deadline: None };
        let picked = match inner.balancer.pick(&inner.views, req, now, &mut inner.rng) {
            Choice::Node(i) if inner.may_take(i, excluded) => Some(i),
            _ => inner.other_node(excluded, None),
        };
        picked.and_then(|i| inner.take(i, self, now))
    }

    /// The call sent through `slot` ended; `latency` is set when it was
    /// answered by the node (not cut short by the node's death).
    pub fn release(&self, node: NodeId, latency: Option<Nanos>, ahead: u32, now: Instant) {
        let ended = Ended {
            latency,
            ahead,
            health: None,
            response: None,
        };
        self.finish(node, ended, now);
    }

    /// [`Registry::release`], [`Registry::report`] and
    /// [`Registry::record_response`] under one lock: what ends every
    /// forwarded call. True if the node was just ejected.
    pub fn finish(&self, node: NodeId, ended: Ended, now: Instant) -> bool {
        let Ended {
            latency,
            ahead,
            health,
            response,
        } = ended;
        self.with(|inner| {
            if let Some(response) = response {
                inner.counters.record_response(response);
            }
            let ejected = match health {
                Some(ok) => inner.report(node, ok, now).is_some(),
                None => false,
            };
            inner.counters.completions += 1;
            let Some(i) = inner.index(node) else {
                return ejected;
            };
            debug_assert!(inner.views[i].in_flight > 0);
            inner.views[i].in_flight = inner.views[i].in_flight.saturating_sub(1);
            // The reply carried the node's load; the transport kept it.
            inner.refresh_reported(i);
            if let Some(l) = latency {
                // Node time: a call on a node that runs c at once holds a
                // c-th of it, so busy time per call is the node's service
                // time at its capacity, as the autoscaler reads it.
                let share = Nanos(l.as_nanos() / u64::from(inner.meta[i].capacity.max(1)));
                inner.counters.busy = inner.counters.busy.saturating_add(share);
                inner.meta[i].ewma.observe(l, now, LATENCY_TAU);
                // Just observed at `now`: the estimate at `now` is the latest.
                inner.views[i].ewma_latency = Nanos(inner.meta[i].ewma.latest() as u64);
                // A call that found n ahead on its node waited for their
                // services and then its own (a node serving one at a time, as
                // admission's estimate assumes): every call is a sample, not
                // only those that were alone, which under load are none.
                let x = l.as_nanos() as f64 / (f64::from(ahead) + 1.0);
                inner.service_time = if inner.service_time == 0.0 {
                    x
                } else {
                    inner.service_time + (x - inner.service_time) * SERVICE_TIME_WEIGHT
                };
                inner.balancer.on_complete(&inner.views, i, l, now);
            }
            if inner.views[i].in_flight == 0
                && inner.views[i].is_ready()
                && inner.balancer.on_idle(&inner.views, i, now)
            {
                inner.hand_oldest_to(i, self, now);
            }
            inner.drain_held(self, now);
            ejected
        })
    }

    /// A call failed in a way that says the node is dead (unresponsive, or
    /// its connection could not be restored): the pool manager removes it.
    pub fn suspect(&self, node: NodeId) {
        let mut g = self.lock();
        if let Some(i) = g.index(node) {
            g.meta[i].suspect = true;
        }
    }

    /// A request was answered `response` after it arrived.
    pub fn record_response(&self, response: Nanos) {
        self.lock().counters.record_response(response);
    }

    pub fn count_retry(&self) {
        self.lock().counters.retries += 1;
    }
}
