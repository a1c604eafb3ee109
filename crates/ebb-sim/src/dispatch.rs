//! One request's path: arrival, the gateway's balancer, a node's FIFO
//! queue, service, completion, and the idle report that may pull held work.

use crate::SimError;
use crate::engine::{NODE_BITS, Sim};
use crate::node::{Life, NO_DEADLINE, Req};
use ebb_core::{Instant, Nanos};
use ebb_policy::balance::{Choice, RequestInfo};

/// Weight of a new sample in a gateway's per-node latency EWMA. A sample above
/// the average replaces it (peak-EWMA), so a slow node is noticed at once and
/// forgiven gradually.
const EWMA_WEIGHT: f64 = 0.125;

impl Sim<'_> {
    pub(crate) fn arrive(&mut self) -> Result<(), SimError> {
        let now = self.now;
        let measured = self.arrived >= self.warmup_count;
        if self.arrived == self.warmup_count {
            self.integrate();
            self.measuring = true;
            self.window.0 = now;
        }
        self.arrived += 1;
        self.signals.arrivals_since_tick += 1;
        self.in_system += 1;
        if self.in_system > self.cfg.max_in_system {
            return Err(SimError::Overloaded {
                limit: self.cfg.max_in_system,
                at_secs: now as f64 * 1e-9,
            });
        }
        let gateway = if self.gws.len() == 1 {
            0
        } else {
            self.route_rng.below(self.gws.len() as u64) as u32
        };
        let req = Req {
            arrival: now,
            gateway,
            measured,
        };
        self.next_arrival = if self.arrived < self.cfg.requests {
            self.process.next(&mut self.arrival_rng).map(|t| (t, 0))
        } else {
            None
        };
        if let Some((t, _)) = self.next_arrival {
            self.next_arrival = Some((t.max(now), self.next_seq()));
        } else {
            self.integrate();
            self.measuring = false;
            self.window.1 = now;
        }
        self.dispatch(gateway as usize, req)
    }

    fn dispatch(&mut self, g: usize, req: Req) -> Result<(), SimError> {
        let gw = &mut self.gws[g];
        let info = RequestInfo {
            deadline: (self.deadline_ns != NO_DEADLINE)
                .then(|| at(req.arrival.saturating_add(self.deadline_ns))),
        };
        match gw.balancer.pick(&gw.views, info, at(self.now), &mut gw.rng) {
            Choice::Node(i) => {
                let Some(v) = gw.views.get_mut(i) else {
                    return Err(SimError::BadChoice {
                        policy: gw.balancer.name(),
                        index: i,
                        nodes: gw.views.len(),
                    });
                };
                v.in_flight += 1;
                self.enqueue(i, req);
            }
            Choice::Hold => {
                gw.held.push_back(req);
                self.held_total += 1;
            }
        }
        Ok(())
    }

    /// Hands `req` to node `i`: served now if the node is free, else queued.
    pub(crate) fn enqueue(&mut self, i: usize, req: Req) {
        match self.nodes[i].life {
            Life::Ready => {}
            Life::Booting | Life::Draining => self.misrouted += 1,
            Life::Gone => {
                // A policy sent work to a stopped node: restart it to drain.
                self.misrouted += 1;
                self.cold[i].up_since = self.now;
                self.set_life(i, Life::Draining);
                self.integrate();
                self.serving += 1;
            }
        }
        let node = &mut self.nodes[i];
        if node.busy || node.life == Life::Booting {
            node.queue.push_back(req);
        } else {
            self.start(i, req);
        }
    }

    /// Starts serving `req` on idle node `i`; false if its deadline passed
    /// while it waited, in which case it is dropped.
    #[inline]
    pub(crate) fn start(&mut self, i: usize, req: Req) -> bool {
        if self.now - req.arrival > self.deadline_ns {
            self.drop_at(i, req);
            return false;
        }
        let node = &mut self.nodes[i];
        let secs = self.cfg.service.sample(&mut self.service_rng) * node.inv_speed;
        // Durations are non-negative, so + 0.5 then truncation rounds.
        let at = self.now.saturating_add((secs * 1e9 + 0.5) as u64);
        node.busy = true;
        node.set_cur(req);
        node.started = self.now;
        self.integrate();
        self.busy += 1;
        self.seq += 1;
        self.completions
            .push((at, (self.seq << NODE_BITS) | i as u64));
        true
    }

    fn drop_at(&mut self, i: usize, req: Req) {
        if req.measured {
            self.stats.record_drop();
        }
        self.signals.drops_since_tick += 1;
        self.in_system -= 1;
        let v = &mut self.gws[req.gateway as usize].views[i];
        v.in_flight = v.in_flight.saturating_sub(1);
    }

    pub(crate) fn complete(&mut self, i: usize) {
        let now = self.now;
        self.integrate();
        self.busy -= 1;
        self.in_system -= 1;
        self.signals.completions_since_tick += 1;
        if self.measuring {
            self.window_completions += 1;
        }
        let node = &mut self.nodes[i];
        node.busy = false;
        let req = node.cur();
        let response = now - req.arrival;
        self.signals.busy_ns_since_tick += now - node.started;
        self.busy_ns_total += u128::from(now - node.started);
        self.signals.response_ns_since_tick += response;
        if self.hook.is_some() {
            self.tick_latency.record(response);
        }
        if req.measured {
            self.stats.record(response, node.started - req.arrival);
        }
        while let Some(next) = self.nodes[i].queue.pop_front() {
            if self.start(i, next) {
                break;
            }
        }
        let node = &self.nodes[i];
        let depth = node.queue.len() as u32 + u32::from(node.busy);
        let idle = !node.busy;
        let gw = &mut self.gws[req.gateway as usize];
        let v = &mut gw.views[i];
        v.in_flight = v.in_flight.saturating_sub(1);
        v.reported_queue = depth;
        v.ewma_latency = peak_ewma(v.ewma_latency, response);
        gw.balancer
            .on_complete(&gw.views, i, Nanos(response), at(now));
        if idle {
            match self.nodes[i].life {
                Life::Ready => self.offer_idle(i),
                Life::Draining => self.retire(i),
                Life::Booting | Life::Gone => {}
            }
        }
    }

    /// Node `i` is idle: it asks the gateways for held work, starting at a
    /// random one and skipping those holding nothing; the first that accepts
    /// (`on_idle` true) hands over its oldest request. A gateway that declines
    /// keeps the node as idle (join-idle-queue). With nothing held anywhere,
    /// the node reports idle to the random gateway alone, as in JIQ.
    pub(crate) fn offer_idle(&mut self, i: usize) {
        let n = self.gws.len();
        let g0 = if n == 1 {
            0
        } else {
            self.route_rng.below(n as u64) as usize
        };
        let now = at(self.now);
        let mut asked_g0 = false;
        if self.held_total > 0 {
            for k in 0..n {
                let g = (g0 + k) % n;
                let gw = &mut self.gws[g];
                if gw.held.is_empty() {
                    continue;
                }
                asked_g0 |= g == g0;
                if !gw.balancer.on_idle(&gw.views, i, now) {
                    return;
                }
                while let Some(r) = self.gws[g].held.pop_front() {
                    self.held_total -= 1;
                    self.gws[g].views[i].in_flight += 1;
                    if self.start(i, r) {
                        return;
                    }
                }
            }
        }
        if !asked_g0 {
            let gw = &mut self.gws[g0];
            gw.balancer.on_idle(&gw.views, i, now);
        }
    }
}

fn peak_ewma(old: Nanos, sample: u64) -> Nanos {
    if old == Nanos::ZERO || sample >= old.0 {
        Nanos(sample)
    } else {
        Nanos((old.0 as f64 * (1.0 - EWMA_WEIGHT) + sample as f64 * EWMA_WEIGHT) as u64)
    }
}

/// The simulator's clock (integer nanoseconds since the run's start) as the
/// instant the balancers take.
fn at(ns: u64) -> Instant {
    Instant::from_epoch(Nanos(ns))
}
