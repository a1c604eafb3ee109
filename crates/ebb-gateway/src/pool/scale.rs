//! What the pool should be and getting there: the autoscaler asked each
//! scale tick for a target, and nodes started or drained until the live
//! ones match it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use ebb_core::{Instant, Nanos, NodeId, Rng};
use ebb_policy::scale::{Limits, NodeCounts, ScalePolicy};

use super::manager::Manager;
use super::{MAX_CAPACITY_PER_NODE, MAX_POOL_SIZE, MAX_STARTS_PER_TICK, NodeChange};
use crate::clock::unix_ms;
use crate::decisions::DecisionRecord;
use crate::registry::{Life, NewNode};
use crate::signals::{TickContext, to_signals};

/// An autoscaling policy and the random stream its decisions draw from.
pub struct Scaler {
    pub policy: Box<dyn ScalePolicy + Send>,
    pub rng: Rng,
    /// The response-time objective the policy is told about.
    pub objective: Option<Nanos>,
}

impl Manager {
    pub(super) fn autoscale(&mut self, now: Instant) {
        let Some(scaler) = self.autoscaler.as_mut() else {
            return;
        };
        let interval = now.saturating_since(self.last_tick);
        if interval < Nanos::from_millis(self.cfg.scale_tick_ms) {
            return;
        }
        self.last_tick = now;
        let counters = self.registry.tick();
        let mut nodes = NodeCounts::default();
        for (_, life, _) in self.registry.lives() {
            match life {
                Life::Booting => nodes.booting += 1,
                Life::Ready => nodes.ready += 1,
                Life::Draining => nodes.draining += 1,
                Life::Gone => {}
            }
        }
        let max = self.cfg.max.min(MAX_POOL_SIZE);
        let ctx = TickContext {
            boot_time: self.provider.expected_start(),
            cost_per_node_sec_micros: self.cfg.cost_per_node_sec_micros,
            objective: scaler.objective,
            limits: Limits {
                min_nodes: self.cfg.min as u32,
                max_nodes: max as u32,
                max_capacity_per_node: self
                    .cfg
                    .max_capacity_per_node
                    .clamp(1, MAX_CAPACITY_PER_NODE),
            },
            capacity_per_node: self.registry.capacity_in_force(),
        };
        let signals = to_signals(counters, interval, nodes, &ctx);
        let decision = scaler.policy.decide(&signals, now, &mut scaler.rng);
        let t = (decision.target_nodes as usize).clamp(self.cfg.min, max);
        // A policy that decides no capacity leaves it as it is (by hand).
        let capacity = decision
            .capacity_per_node
            .map(|c| c.clamp(1, ctx.limits.max_capacity_per_node));
        if let Some(c) = capacity {
            self.capacity.store(c, Ordering::SeqCst);
        }
        let record =
            DecisionRecord::new(unix_ms(), &signals, &decision, t as u32).with_capacity(capacity);
        self.metrics.decided(record.direction, record.applied_nodes);
        self.decisions.record(record);
        let before = self.target.swap(t, Ordering::SeqCst);
        debug_assert!(before <= MAX_POOL_SIZE && t <= MAX_POOL_SIZE);
    }

    pub(super) fn reconcile(&mut self, now: Instant) {
        let target = self.target.load(Ordering::SeqCst);
        self.registry
            .set_target(target, self.provider.expected_start());
        let lives = self.registry.lives();
        let live: Vec<_> = lives
            .iter()
            .filter(|(_, l, _)| matches!(l, Life::Booting | Life::Ready))
            .collect();
        if live.len() > target {
            // Booting nodes first (newest first), then the least busy.
            let mut victims: Vec<_> = live.iter().map(|&&(id, l, f)| (id, l, f)).collect();
            victims.sort_by_key(|&(id, l, f)| (l != Life::Booting, f, std::cmp::Reverse(id.0)));
            for (id, _, _) in victims.into_iter().take(live.len() - target) {
                self.drain(id, "pool shrinks");
            }
            return;
        }
        let missing = target - live.len();
        if missing == 0 || now < self.next_start_at {
            return;
        }
        for _ in 0..missing.min(MAX_STARTS_PER_TICK) {
            let id = NodeId(self.next_id);
            self.next_id += 1;
            match self.provider.start(id) {
                Ok(started) => {
                    self.addrs.insert(id, started.addr);
                    let node = NewNode {
                        id,
                        kind: started.kind,
                        addr: started.addr,
                        cost_per_sec_micros: self.cfg.cost_per_node_sec_micros,
                        started_unix_ms: unix_ms(),
                        expected_boot: self.provider.expected_start(),
                    };
                    self.registry.add_booting(node, now);
                    self.change(id, None, Life::Booting, None);
                }
                Err(e) => {
                    (self.on_change)(&NodeChange {
                        id,
                        kind: self.provider.kind(),
                        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                        from: None,
                        to: Life::Gone,
                        reason: Some(format!("start failed: {e}")),
                        capacity: None,
                    });
                    self.back_off(now);
                    return;
                }
            }
        }
    }
}
