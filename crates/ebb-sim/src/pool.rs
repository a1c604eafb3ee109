//! Growing and shrinking the pool during a run: boots, drains, retirements,
//! and the node-second accounting that makes a scaling policy's cost visible.
//!
//! Slots are never removed, so indices in views and pending events stay
//! valid; a retired slot (`Gone`) is reused by the next added node, which
//! keeps the slot count at the run's peak node count.

use crate::config::MAX_NODES;
use crate::engine::Sim;
use crate::node::{Life, Node, NodeCold, node_cost, set_view_state};
use crate::scale::{PoolSignals, ScaleAction};
use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::balance::{NodeState, NodeView};
use std::cmp::Reverse;

impl Sim<'_> {
    /// Calls the scale hook, if any, and applies its decision.
    pub(crate) fn scale_tick(&mut self) {
        let Some(hook) = self.hook.as_mut() else {
            return;
        };
        let [booting, ready, draining] = self.life_counts;
        let s = PoolSignals {
            in_service: self.busy,
            queued: self.in_system - self.busy,
            ready,
            booting,
            draining,
            p50_ns: self.tick_latency.quantile(0.5),
            p99_ns: self.tick_latency.quantile(0.99),
            capacity_per_node: self.capacity,
            ..self.signals
        };
        let action = hook.on_tick(&s, Instant::from_epoch(Nanos(self.now)), &mut self.hook_rng);
        let capacity = hook.capacity_per_node().map(|c| c.max(1));
        let mut changed = false;
        if let Some(c) = capacity.filter(|c| *c != self.capacity) {
            self.set_capacity(c);
            changed = true;
        }
        match action {
            ScaleAction::Hold => {}
            ScaleAction::Add(0) | ScaleAction::Remove(0) => {}
            ScaleAction::Add(k) => {
                self.add_nodes(k);
                changed = true;
            }
            ScaleAction::Remove(k) => {
                self.remove_nodes(k);
                changed = true;
            }
        }
        if changed {
            self.scale_actions += 1;
            for gw in &mut self.gws {
                gw.balancer.on_nodes_changed(&gw.views);
            }
        }
    }

    /// Moves node `i` to `life`, keeping the per-state counts and the range
    /// of live nodes.
    pub(crate) fn set_life(&mut self, i: usize, life: Life) {
        let node = &mut self.nodes[i];
        let slot = |l: Life| match l {
            Life::Booting => Some(0),
            Life::Ready => Some(1),
            Life::Draining => Some(2),
            Life::Gone => None,
        };
        if let Some(k) = slot(node.life) {
            self.life_counts[k] -= 1;
        }
        node.life = life;
        if let Some(k) = slot(life) {
            self.life_counts[k] += 1;
        }
        let live: u32 = self.life_counts.iter().sum();
        self.live_range = (self.live_range.0.min(live), self.live_range.1.max(live));
    }

    /// Every node's speed and price scale with its capacity; up time so far
    /// is charged at the old price.
    fn set_capacity(&mut self, c: u32) {
        let ratio = f64::from(c) / f64::from(self.capacity);
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].life != Life::Gone {
                self.account_up_time(i, now);
                self.cold[i].up_since = now;
            }
            self.nodes[i].inv_speed /= ratio;
            let cold = &mut self.cold[i];
            cold.cost_per_sec_micros =
                cold.cost_per_sec_micros / u64::from(self.capacity) * u64::from(c);
            for gw in &mut self.gws {
                let v = &mut gw.views[i];
                v.speed *= ratio;
                v.cost_per_sec_micros = cold.cost_per_sec_micros;
            }
        }
        self.capacity = c;
    }

    fn add_nodes(&mut self, k: u32) {
        let mut ready_now = Vec::new();
        for _ in 0..k {
            let live: u32 = self.life_counts.iter().sum();
            if live >= MAX_NODES {
                break;
            }
            let slot = match self.take_free_slot() {
                Some(s) => s,
                None => {
                    self.nodes.push(Node::new(1.0, Life::Gone));
                    self.cold.push(NodeCold::default());
                    let id = self.nodes.len() as u32 - 1;
                    for gw in &mut self.gws {
                        gw.views.push(NodeView::ready(id));
                    }
                    self.nodes.len() - 1
                }
            };
            let speed =
                self.cfg.speeds.speed_of(slot, &mut self.hook_rng) * f64::from(self.capacity);
            let cost = node_cost(&self.cfg.costs_per_sec_micros, slot) * u64::from(self.capacity);
            self.nodes[slot].inv_speed = 1.0 / speed;
            let cold = &mut self.cold[slot];
            cold.cost_per_sec_micros = cost;
            cold.up_since = self.now;
            cold.generation = cold.generation.wrapping_add(1);
            let generation = cold.generation;
            for gw in &mut self.gws {
                gw.views[slot] = NodeView {
                    id: NodeId(slot as u32),
                    speed,
                    cost_per_sec_micros: cost,
                    ..NodeView::ready(slot as u32)
                };
            }
            if self.boot_ns == 0 {
                self.set_life(slot, Life::Ready);
                self.integrate();
                self.serving += 1;
                ready_now.push(slot);
            } else {
                self.set_life(slot, Life::Booting);
                set_view_state(&mut self.gws, slot, NodeState::Booting);
                self.seq += 1;
                self.boots.push(Reverse((
                    self.now + self.boot_ns,
                    self.seq,
                    slot as u32,
                    generation,
                )));
            }
        }
        for slot in ready_now {
            self.offer_idle(slot);
        }
    }

    fn remove_nodes(&mut self, k: u32) {
        let mut left = k;
        for i in (0..self.nodes.len()).rev() {
            if left == 0 {
                break;
            }
            match self.nodes[i].life {
                Life::Ready => {
                    left -= 1;
                    self.set_life(i, Life::Draining);
                    set_view_state(&mut self.gws, i, NodeState::Draining);
                    if !self.nodes[i].busy && self.nodes[i].queue.is_empty() {
                        self.retire(i);
                    }
                }
                Life::Booting => {
                    left -= 1;
                    // Never served: it may still hold misrouted work.
                    self.set_life(i, Life::Draining);
                    self.integrate();
                    self.serving += 1;
                    set_view_state(&mut self.gws, i, NodeState::Draining);
                    self.resume(i);
                }
                Life::Draining | Life::Gone => {}
            }
        }
    }

    /// A boot finished; stale events from a reused slot are ignored.
    pub(crate) fn booted(&mut self, i: usize, generation: u32) {
        let node = &mut self.nodes[i];
        if node.life != Life::Booting || self.cold[i].generation != generation {
            return;
        }
        self.set_life(i, Life::Ready);
        self.integrate();
        self.serving += 1;
        set_view_state(&mut self.gws, i, NodeState::Ready);
        for gw in &mut self.gws {
            gw.balancer.on_nodes_changed(&gw.views);
        }
        self.resume(i);
    }

    /// Starts work queued on a node that could not serve until now; an idle
    /// node offers itself (ready) or stops (draining).
    fn resume(&mut self, i: usize) {
        while let Some(r) = self.nodes[i].queue.pop_front() {
            if self.start(i, r) {
                return;
            }
        }
        match self.nodes[i].life {
            Life::Ready => self.offer_idle(i),
            Life::Draining => self.retire(i),
            Life::Booting | Life::Gone => {}
        }
    }

    /// A retired slot to reuse, most recently retired first. The list may
    /// hold slots revived since (a policy sent work to a stopped node);
    /// those are skipped here.
    fn take_free_slot(&mut self) -> Option<usize> {
        while let Some(s) = self.free_slots.pop() {
            if self.nodes[s as usize].life == Life::Gone {
                return Some(s as usize);
            }
        }
        None
    }

    /// A drained node stops and stops costing.
    pub(crate) fn retire(&mut self, i: usize) {
        if self.free_slots.len() >= self.nodes.len() {
            // Only revivals make duplicates; rebuild rather than grow.
            self.free_slots.clear();
            self.free_slots.extend(
                (0..self.nodes.len() as u32).filter(|s| self.nodes[*s as usize].life == Life::Gone),
            );
        }
        self.free_slots.push(i as u32);
        self.integrate();
        self.serving -= 1;
        let now = self.now;
        self.set_life(i, Life::Gone);
        self.account_up_time(i, now);
    }

    pub(crate) fn account_up_time(&mut self, i: usize, until: u64) {
        let cold = &self.cold[i];
        let ns = until.saturating_sub(cold.up_since);
        self.node_ns += u128::from(ns);
        self.cost_micros += ns as f64 * 1e-9 * cold.cost_per_sec_micros as f64;
    }
}
