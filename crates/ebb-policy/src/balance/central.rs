//! Central queue: requests wait at the dispatcher and idle nodes pull them.
//!
//! State: the idle list (as in JIQ). Cost: O(1) amortised per decision and
//! per pull. [`Balancer::pick`] sends a request only to a node known to be
//! idle and otherwise returns [`Choice::Hold`]; the caller keeps held requests
//! in FIFO order. When a node finishes and has nothing left it calls
//! [`Balancer::on_idle`], which returns true: the caller then hands it the
//! oldest held request, if any. The node stays listed, so if the caller had
//! nothing to hand over, the next arrival goes to it; if it did hand one over,
//! the node's `in_flight` is no longer zero and the entry is dropped at the
//! next pick. On a pool change every Ready node with nothing in flight counts
//! as idle; a node that turns Ready later must announce itself via `on_idle`.
//! With one dispatcher and exponential times this is exactly M/M/k: no node
//! idles while a request waits. Origin: the single shared queue of classic
//! multi-server queueing (Erlang), and pull-based schedulers such as a
//! shared work queue.

use super::idle::IdleList;
use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Rng};

#[derive(Clone, Debug, Default)]
pub struct CentralQueue {
    idle: IdleList,
}

impl CentralQueue {
    pub fn new() -> CentralQueue {
        CentralQueue::default()
    }

    /// How many nodes are currently listed as idle (some may be stale).
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

/// Idle as far as this dispatcher can tell.
fn free(v: &NodeView) -> bool {
    v.is_ready() && v.in_flight == 0
}

impl Balancer for CentralQueue {
    fn name(&self) -> String {
        "central".into()
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Instant,
        _rng: &mut Rng,
    ) -> Choice {
        match self.idle.pop(nodes, free) {
            Some(i) => Choice::Node(i),
            None => Choice::Hold,
        }
    }

    fn on_idle(&mut self, nodes: &[NodeView], node: usize, _now: Instant) -> bool {
        if !nodes.get(node).is_some_and(NodeView::is_ready) {
            return false;
        }
        self.idle.push(nodes, node);
        true
    }

    fn on_nodes_changed(&mut self, nodes: &[NodeView]) {
        self.idle.remap(nodes);
        for (i, v) in nodes.iter().enumerate() {
            if free(v) {
                self.idle.push(nodes, i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::NodeState;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    #[test]
    fn holds_when_nobody_is_idle_and_releases_on_idle() {
        let mut nodes = pool(3);
        for v in &mut nodes {
            v.in_flight = 1;
        }
        let mut c = CentralQueue::new();
        c.on_nodes_changed(&nodes);
        let mut rng = Rng::seeded(1);
        let now = Instant::EPOCH;
        assert_eq!(c.pick(&nodes, NO_DEADLINE, now, &mut rng), Choice::Hold);
        // Node 1 finishes: it asks for work.
        nodes[1].in_flight = 0;
        assert!(c.on_idle(&nodes, 1, now));
        // The caller had nothing held, so the next arrival goes to node 1 ...
        assert_eq!(c.pick(&nodes, NO_DEADLINE, now, &mut rng), Choice::Node(1));
        nodes[1].in_flight = 1;
        // ... and the one after that waits again.
        assert_eq!(c.pick(&nodes, NO_DEADLINE, now, &mut rng), Choice::Hold);
    }

    #[test]
    fn a_node_handed_held_work_is_not_sent_more() {
        let mut nodes = pool(2);
        nodes[0].in_flight = 1;
        nodes[1].in_flight = 1;
        let mut c = CentralQueue::new();
        let mut rng = Rng::seeded(1);
        let now = Instant::EPOCH;
        nodes[0].in_flight = 0;
        assert!(c.on_idle(&nodes, 0, now));
        nodes[0].in_flight = 1; // the caller handed it a held request
        assert_eq!(c.pick(&nodes, NO_DEADLINE, now, &mut rng), Choice::Hold);
    }

    #[test]
    fn idle_pool_at_start_takes_work_and_non_ready_nodes_never_pull() {
        let mut nodes = pool(2);
        nodes[1].state = NodeState::Booting;
        let mut c = CentralQueue::new();
        c.on_nodes_changed(&nodes);
        let mut rng = Rng::seeded(1);
        assert!(!c.on_idle(&nodes, 1, Instant::EPOCH));
        assert_eq!(
            c.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(0)
        );
    }
}
