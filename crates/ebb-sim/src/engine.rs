//! The event loop: arrivals, dispatch through real balancers, FIFO nodes.
//!
//! Determinism: one seed fixes every random stream (each component forks its
//! own, so adding draws in one leaves the others alone); events are ordered
//! by (time in integer nanoseconds, sequence number of scheduling), so ties
//! resolve the same way on every machine; nothing iterates a hash map, reads
//! a clock or spawns a thread.
//!
//! Speed: completions (one per busy node) wait on a timing wheel
//! (`wheel.rs`), boots in a heap of their own; the next arrival and the
//! next tick live outside both. A request is 16 bytes
//! copied through per-node `VecDeque`s that reach their peak size and stay
//! there, so a run does not allocate per request.

use crate::arrival_gen::ArrivalGen;
use crate::config::SimConfig;
use crate::node::{Gateway, Life, NO_DEADLINE, Node, NodeCold, Req, node_cost};
use crate::report::Report;
use crate::scale::{PoolSignals, ScaleHook};
use crate::stats::Stats;
use crate::tick_latency::TickLatency;
use crate::wheel::Wheel;
use crate::{Progress, SimError};
use ebb_core::Rng;
use ebb_policy::balance::{Balancer, NodeView};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Bits of a completion key that hold the node index; the rest hold the
/// sequence number (2^44 events, about 20 days at 10 M events/s).
pub(crate) const NODE_BITS: u32 = 20;
pub(crate) const NODE_MASK: u64 = (1 << NODE_BITS) - 1;
/// Events between two calls of the progress callback.
const PROGRESS_EVERY_EVENTS: u64 = 1 << 20;
/// Pools at least this large outgrow the CPU caches, and prefetching the
/// next completion's node pays (about −20% CPU time at 10,000 nodes); on
/// smaller pools it only costs.
const PREFETCH_MIN_NODES: usize = 1024;
/// Ticks with nothing but held requests left after which a run with a scale
/// hook gives up waiting for the hook to add a node.
const MAX_STALLED_TICKS: u64 = 100_000;

/// A boot finishing: (time, sequence, node, slot generation). Rare, so kept
/// out of the completion heap.
pub(crate) type BootKey = (u64, u64, u32, u32);

/// A run in progress. Build with [`Sim::new`], consume with [`Sim::run`].
pub struct Sim<'h> {
    pub(crate) cfg: SimConfig,
    pub(crate) nodes: Vec<Node>,
    /// Indexed like `nodes`.
    pub(crate) cold: Vec<NodeCold>,
    pub(crate) gws: Vec<Gateway>,
    /// Completions as (time, sequence << NODE_BITS | node): the sequence
    /// number is unique, so tuple order is (time, sequence) order.
    pub(crate) completions: Wheel,
    pub(crate) boots: BinaryHeap<Reverse<BootKey>>,
    pub(crate) seq: u64,
    pub(crate) now: u64,
    pub(crate) next_arrival: Option<(u64, u64)>,
    next_tick: Option<(u64, u64)>,
    pub(crate) process: ArrivalGen,
    pub(crate) arrival_rng: Rng,
    pub(crate) service_rng: Rng,
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
    pub(crate) deadline_ns: u64,
    tick_ns: u64,
    pub(crate) boot_ns: u64,
    last_tick: u64,
    /// Nodes booting, ready and draining (indexed by `Life as usize`).
    pub(crate) life_counts: [u32; 3],
    /// Fewest and most nodes up (booting, ready or draining) at any time.
    pub(crate) live_range: (u32, u32),
    /// Capacity (speed multiplier) of every node, set by the scale hook.
    pub(crate) capacity: u32,
    /// Ticks on which the hook changed the pool or the nodes' capacity.
    pub(crate) scale_actions: u64,
    pub(crate) tick_latency: TickLatency,
    /// Service time of every completion, whole run.
    pub(crate) busy_ns_total: u128,
    /// Retired slots, for reuse without a scan (at most one entry per slot
    /// plus revivals, bounded by the slot count).
    pub(crate) free_slots: Vec<u32>,
}

impl<'h> Sim<'h> {
    /// A run with `balancers[g]` at gateway `g` (one per gateway).
    pub fn new(
        mut cfg: SimConfig,
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
        let rate = cfg.rate_per_sec.unwrap_or(cfg.load * capacity_per_sec);
        cfg.load = rate / capacity_per_sec;
        let nodes: Vec<Node> = speeds
            .iter()
            .map(|s| Node::new(1.0 / s, Life::Ready))
            .collect();
        let cold: Vec<NodeCold> = (0..n)
            .map(|i| NodeCold {
                cost_per_sec_micros: node_cost(&cfg.costs_per_sec_micros, i),
                ..NodeCold::default()
            })
            .collect();
        let views: Vec<NodeView> = speeds
            .iter()
            .zip(&cold)
            .enumerate()
            .map(|(i, (s, c))| NodeView {
                speed: *s,
                cost_per_sec_micros: c.cost_per_sec_micros,
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
            cold,
            gws,
            completions: Wheel::new(n, rate),
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
            life_counts: [0, n as u32, 0],
            live_range: (n as u32, n as u32),
            capacity: 1,
            scale_actions: 0,
            tick_latency: TickLatency::default(),
            busy_ns_total: 0,
            free_slots: Vec::new(),
        };
        sim.stats.objective_ns = sim
            .cfg
            .objective_secs
            .map_or(u64::MAX, |o| (o * 1e9).round() as u64);
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
            if let Some((at, key)) = self.completions.peek() {
                let k = (at, key >> NODE_BITS);
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
                    let Some((at, key)) = self.completions.pop() else {
                        break;
                    };
                    if self.nodes.len() >= PREFETCH_MIN_NODES {
                        // Two deep: the node after next is asked for by
                        // address; the next one's line was asked for one
                        // completion ago, so reading its queue head to
                        // prefetch the request behind it is cheap now.
                        if let Some((_, next)) = self.completions.peek() {
                            self.prefetch_queue((next & NODE_MASK) as usize);
                        }
                        if let Some((_, after)) = self.completions.second() {
                            self.prefetch_node((after & NODE_MASK) as usize);
                        }
                    }
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
                        && self.completions.peek().is_none()
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

    /// Asks the cache for what the next completion will touch (the node's
    /// line and the first gateway's view of it) while the current event is
    /// processed: with thousands of nodes those are cache misses that
    /// otherwise stall the loop. Only addresses are computed here, nothing
    /// is loaded, so the hint itself never waits.
    #[inline]
    fn prefetch_node(&self, j: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            if let Some(n) = self.nodes.get(j) {
                // SAFETY: a prefetch is only a hint to the cache: it never
                // faults and has no effect a program can observe.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((n as *const Node).cast::<i8>()) };
            }
            if let Some(v) = self.gws.first().and_then(|g| g.views.get(j)) {
                // SAFETY: as above.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((v as *const NodeView).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = j;
    }

    /// Prefetches the head of node `j`'s queue (the request its next
    /// completion starts).
    #[inline]
    fn prefetch_queue(&self, j: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            if let Some(r) = self.nodes.get(j).and_then(|n| n.queue.front()) {
                // SAFETY: a prefetch is only a hint to the cache: it never
                // faults and has no effect a program can observe.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((r as *const Req).cast::<i8>()) };
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = j;
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
        self.tick_latency.clear();
        self.next_tick = Some((self.now + self.tick_ns, self.next_seq()));
    }
}
