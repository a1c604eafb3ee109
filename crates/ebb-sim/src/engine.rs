//! The event loop: arrivals, dispatch through real balancers, FIFO nodes.
//!
//! Determinism: one seed fixes every random stream (each component forks its
//! own, so adding draws in one leaves the others alone); events are ordered
//! by (time in integer nanoseconds, sequence number of scheduling), so ties
//! resolve the same way on every machine; nothing iterates a hash map, reads
//! a clock or spawns a thread.
//!
//! Speed: the only heap holds completions and boots (one per busy node);
//! the next arrival and the next tick live outside it. A request is 24 bytes
//! copied through per-node `VecDeque`s that reach their peak size and stay
//! there, so a run does not allocate per request.

use crate::arrivals::ArrivalGen;
use crate::config::SimConfig;
use crate::heap::QuadHeap;
use crate::report::Report;
use crate::scale::{PoolSignals, ScaleHook};
use crate::stats::Stats;
use crate::{Progress, SimError};
use ebb_core::{Nanos, Rng};
use ebb_policy::balance::{Balancer, Choice, NodeState, NodeView, RequestInfo};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

pub(crate) const NO_DEADLINE: u64 = u64::MAX;
/// Bits of a completion key that hold the node index; the rest hold the
/// sequence number (2^44 events, about 20 days at 10 M events/s).
const NODE_BITS: u32 = 20;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// Events between two calls of the progress callback.
const PROGRESS_EVERY_EVENTS: u64 = 1 << 20;
/// Ticks with nothing but held requests left after which a run with a scale
/// hook gives up waiting for the hook to add a node.
const MAX_STALLED_TICKS: u64 = 100_000;
/// Weight of a new sample in a gateway's per-node latency EWMA. A sample above
/// the average replaces it (peak-EWMA), so a slow node is noticed at once and
/// forgiven gradually.
const EWMA_WEIGHT: f64 = 0.125;

/// 16 bytes: the deadline is `arrival` plus the run's one relative deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Req {
    pub arrival: u64,
    pub gateway: u32,
    /// False during warm-up: the request runs but is not counted.
    pub measured: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Life {
    Booting,
    Ready,
    Draining,
    /// Drained and stopped; the slot is reused by the next added node.
    Gone,
}

#[derive(Debug)]
pub(crate) struct Node {
    pub queue: VecDeque<Req>,
    pub busy: bool,
    pub cur: Req,
    pub started: u64,
    pub inv_speed: f64,
    pub cost_per_sec_micros: u64,
    pub life: Life,
    pub up_since: u64,
    /// Bumped when the slot is reused, so a stale boot event is ignored.
    pub generation: u32,
}

pub(crate) struct Gateway {
    pub balancer: Box<dyn Balancer + Send>,
    pub views: Vec<NodeView>,
    /// Requests the balancer chose to hold (`Choice::Hold`), oldest first.
    pub held: VecDeque<Req>,
    pub rng: Rng,
}

/// A boot finishing: (time, sequence, node, slot generation). Rare, so kept
/// out of the completion heap.
pub(crate) type BootKey = (u64, u64, u32, u32);

/// A run in progress. Build with [`Sim::new`], consume with [`Sim::run`].
pub struct Sim<'h> {
    pub(crate) cfg: SimConfig,
    pub(crate) nodes: Vec<Node>,
    pub(crate) gws: Vec<Gateway>,
    /// Completions as (time, sequence << NODE_BITS | node): the sequence
    /// number is unique, so tuple order is (time, sequence) order.
    pub(crate) heap: QuadHeap,
    pub(crate) boots: BinaryHeap<Reverse<BootKey>>,
    pub(crate) seq: u64,
    pub(crate) now: u64,
    next_arrival: Option<(u64, u64)>,
    next_tick: Option<(u64, u64)>,
    process: ArrivalGen,
    arrival_rng: Rng,
    service_rng: Rng,
    pub(crate) route_rng: Rng,
    pub(crate) hook_rng: Rng,
    pub(crate) hook: Option<&'h mut dyn ScaleHook>,
    pub(crate) stats: Stats,
    pub(crate) arrived: u64,
    pub(crate) warmup_count: u64,
    pub(crate) in_system: u64,
    pub(crate) held_total: u64,
    pub(crate) busy: u64,
    /// Nodes able to serve (ready or draining).
    pub(crate) serving: u64,
    pub(crate) measuring: bool,
    pub(crate) window: (u64, u64),
    last_integrated: u64,
    pub(crate) busy_area: u128,
    pub(crate) serving_area: u128,
    pub(crate) window_completions: u64,
    pub(crate) node_ns: u128,
    pub(crate) cost_micros: f64,
    pub(crate) events: u64,
    pub(crate) misrouted: u64,
    pub(crate) signals: PoolSignals,
    /// Relative deadline; `NO_DEADLINE` when requests have none.
    deadline_ns: u64,
    tick_ns: u64,
    pub(crate) boot_ns: u64,
    last_tick: u64,
}

impl<'h> Sim<'h> {
    /// A run with `balancers[g]` at gateway `g` (one per gateway).
    pub fn new(
        cfg: SimConfig,
        balancers: Vec<Box<dyn Balancer + Send>>,
    ) -> Result<Sim<'h>, SimError> {
        cfg.validate()?;
        if balancers.len() != cfg.gateways as usize {
            return Err(SimError::Config {
                field: "balancers",
                value: balancers.len().to_string(),
                accepted: "exactly one balancer per gateway",
            });
        }
        let mut master = Rng::seeded(cfg.seed);
        let mut arrival_rng = master.fork();
        let service_rng = master.fork();
        let route_rng = master.fork();
        let hook_rng = master.fork();
        let mut speed_rng = master.fork();
        let n = cfg.nodes as usize;
        let speeds = cfg.speeds.speeds(n, &mut speed_rng);
        let capacity_per_sec: f64 = speeds.iter().sum::<f64>() / cfg.service.mean();
        let rate = cfg.load * capacity_per_sec;
        let nodes: Vec<Node> = speeds
            .iter()
            .enumerate()
            .map(|(i, s)| Node {
                queue: VecDeque::new(),
                busy: false,
                cur: Req {
                    arrival: 0,
                    gateway: 0,
                    measured: false,
                },
                started: 0,
                inv_speed: 1.0 / s,
                cost_per_sec_micros: node_cost(&cfg.costs_per_sec_micros, i),
                life: Life::Ready,
                up_since: 0,
                generation: 0,
            })
            .collect();
        let views: Vec<NodeView> = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| NodeView {
                speed: 1.0 / node.inv_speed,
                cost_per_sec_micros: node.cost_per_sec_micros,
                ..NodeView::ready(i as u32)
            })
            .collect();
        let gws = balancers
            .into_iter()
            .map(|balancer| Gateway {
                balancer,
                views: views.clone(),
                held: VecDeque::new(),
                rng: master.fork(),
            })
            .collect();
        let mut process = ArrivalGen::new(&cfg.arrivals, rate, &mut arrival_rng);
        let first = process.next(&mut arrival_rng);
        // Warm-up is a fraction of the arrivals the run will have, which a
        // short trace may make fewer than `requests`.
        let total = cfg
            .arrivals
            .max_arrivals()
            .map_or(cfg.requests, |n| n.min(cfg.requests));
        let warmup_count = (total as f64 * cfg.warmup).floor() as u64;
        let tick_ns = (cfg.tick_secs * 1e9).round() as u64;
        let mut sim = Sim {
            deadline_ns: cfg
                .deadline_secs
                .map_or(NO_DEADLINE, |d| (d * 1e9).round() as u64),
            boot_ns: (cfg.boot_secs * 1e9).round() as u64,
            cfg,
            nodes,
            gws,
            heap: QuadHeap::default(),
            boots: BinaryHeap::new(),
            seq: 0,
            now: 0,
            next_arrival: None,
            next_tick: None,
            process,
            arrival_rng,
            service_rng,
            route_rng,
            hook_rng,
            hook: None,
            stats: Stats::new(),
            arrived: 0,
            warmup_count,
            in_system: 0,
            held_total: 0,
            busy: 0,
            serving: n as u64,
            measuring: false,
            window: (0, 0),
            last_integrated: 0,
            busy_area: 0,
            serving_area: 0,
            window_completions: 0,
            node_ns: 0,
            cost_micros: 0.0,
            events: 0,
            misrouted: 0,
            signals: PoolSignals::default(),
            tick_ns,
            last_tick: 0,
        };
        sim.next_arrival = first.map(|t| (t, sim.next_seq()));
        if tick_ns > 0 {
            sim.next_tick = Some((tick_ns, sim.next_seq()));
        }
        Ok(sim)
    }

    /// Lets `hook` add and remove nodes on every tick.
    pub fn with_scale_hook(mut self, hook: &'h mut dyn ScaleHook) -> Sim<'h> {
        self.hook = Some(hook);
        self
    }

    /// Runs to the end: every arrival served or dropped.
    pub fn run(mut self, progress: &mut dyn FnMut(&Progress)) -> Result<Report, SimError> {
        for g in &mut self.gws {
            g.balancer.on_nodes_changed(&g.views);
        }
        for i in 0..self.nodes.len() {
            self.offer_idle(i);
        }
        let mut idle_ticks = 0u64;
        loop {
            let mut best = (u64::MAX, u64::MAX);
            let mut src = 0u8;
            if let Some(a) = self.next_arrival {
                best = a;
                src = 1;
            }
            if let Some((at, key)) = self.heap.peek() {
                let k = (*at, key >> NODE_BITS);
                if k < best {
                    best = k;
                    src = 2;
                }
            }
            if let Some(Reverse((at, seq, ..))) = self.boots.peek() {
                if (*at, *seq) < best {
                    best = (*at, *seq);
                    src = 4;
                }
            }
            if let Some(t) = self.next_tick {
                if t < best {
                    best = t;
                    src = 3;
                }
            }
            match src {
                1 => {
                    self.now = best.0;
                    self.arrive()?;
                }
                2 => {
                    let Some((at, key)) = self.heap.pop() else {
                        break;
                    };
                    self.now = at;
                    self.complete((key & NODE_MASK) as usize);
                }
                4 => {
                    let Some(Reverse((at, _, node, generation))) = self.boots.pop() else {
                        break;
                    };
                    self.now = at;
                    self.booted(node as usize, generation);
                }
                3 => {
                    let stalled = self.next_arrival.is_none()
                        && self.heap.peek().is_none()
                        && self.boots.is_empty();
                    if stalled {
                        idle_ticks += 1;
                    } else {
                        idle_ticks = 0;
                    }
                    // Done, or stuck with held requests no node will ask
                    // for and no hook (or a hook that stays idle) to help.
                    if (self.next_arrival.is_none() && self.in_system == 0)
                        || (stalled && (self.hook.is_none() || idle_ticks > MAX_STALLED_TICKS))
                    {
                        break;
                    }
                    self.now = best.0;
                    self.tick();
                }
                _ => break,
            }
            self.events += 1;
            if self.events % PROGRESS_EVERY_EVENTS == 0 {
                progress(&Progress {
                    arrived: self.arrived,
                    requests: self.cfg.requests,
                    events: self.events,
                    sim_secs: self.now as f64 * 1e-9,
                });
            }
        }
        Ok(self.finish())
    }

    #[inline]
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Accumulates busy and serving node-time inside the measurement window;
    /// call before either count changes.
    #[inline]
    pub(crate) fn integrate(&mut self) {
        if self.measuring {
            let dt = u128::from(self.now - self.last_integrated);
            self.busy_area += u128::from(self.busy) * dt;
            self.serving_area += u128::from(self.serving) * dt;
        }
        self.last_integrated = self.now;
    }

    fn arrive(&mut self) -> Result<(), SimError> {
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
                .then(|| Nanos(req.arrival.saturating_add(self.deadline_ns))),
        };
        match gw
            .balancer
            .pick(&gw.views, info, Nanos(self.now), &mut gw.rng)
        {
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
        let node = &mut self.nodes[i];
        match node.life {
            Life::Ready => {}
            Life::Booting | Life::Draining => self.misrouted += 1,
            Life::Gone => {
                // A policy sent work to a stopped node: restart it to drain.
                self.misrouted += 1;
                node.life = Life::Draining;
                node.up_since = self.now;
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
        node.cur = req;
        node.started = self.now;
        self.integrate();
        self.busy += 1;
        self.seq += 1;
        self.heap.push((at, (self.seq << NODE_BITS) | i as u64));
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

    fn complete(&mut self, i: usize) {
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
        let req = node.cur;
        let response = now - req.arrival;
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
            .on_complete(&gw.views, i, Nanos(response), Nanos(now));
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
        let now = Nanos(self.now);
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

    fn tick(&mut self) {
        for gw in &mut self.gws {
            for (v, node) in gw.views.iter_mut().zip(&self.nodes) {
                v.reported_queue = node.queue.len() as u32 + u32::from(node.busy);
            }
        }
        self.signals.interval_secs = (self.now - self.last_tick) as f64 * 1e-9;
        self.last_tick = self.now;
        self.scale_tick();
        self.signals = PoolSignals::default();
        self.next_tick = Some((self.now + self.tick_ns, self.next_seq()));
    }
}

/// Cost of slot `i`: the list repeats over the nodes.
pub(crate) fn node_cost(costs: &[u64], i: usize) -> u64 {
    costs.get(i % costs.len().max(1)).copied().unwrap_or(0)
}

fn peak_ewma(old: Nanos, sample: u64) -> Nanos {
    if old == Nanos::ZERO || sample >= old.0 {
        Nanos(sample)
    } else {
        Nanos((old.0 as f64 * (1.0 - EWMA_WEIGHT) + sample as f64 * EWMA_WEIGHT) as u64)
    }
}

/// Marks node slots' view state in every gateway.
pub(crate) fn set_view_state(gws: &mut [Gateway], i: usize, state: NodeState) {
    for gw in gws {
        if let Some(v) = gw.views.get_mut(i) {
            v.state = state;
        }
    }
}
