//! Join-idle-queue: send to a node that reported itself idle, else to a
//! random node.
//!
//! State: the idle list (FIFO of indices, each at most once, so bounded by
//! the pool size). Cost: O(1) amortised per decision and per idle report;
//! O(n) on a pool change (re-indexing by node id). Idle reports arrive
//! through [`Balancer::on_idle`]; the node is forgotten once it is sent a
//! request, so each report buys exactly one request, and the dispatcher never
//! queries nodes on the request's critical path. On a pool change every Ready
//! node this gateway has nothing in flight on counts as idle.
//! Origin: Lu, Xie, Kliot, Geller, Larus, Greenberg, "Join-Idle-Queue: A novel
//! load balancing algorithm for dynamically scalable web services",
//! Performance 2011. With one dispatcher and a random fallback this is the
//! paper's JIQ-Random.

use super::idle::IdleList;
use super::{Balancer, Choice, NodeView, RequestInfo, sample};
use ebb_core::{Instant, Rng};

#[derive(Clone, Debug, Default)]
pub struct JoinIdleQueue {
    idle: IdleList,
}

impl JoinIdleQueue {
    pub fn new() -> JoinIdleQueue {
        JoinIdleQueue::default()
    }

    /// How many nodes are currently listed as idle.
    pub fn idle_count(&self) -> usize {
        self.idle.len()
    }
}

impl Balancer for JoinIdleQueue {
    fn name(&self) -> String {
        "jiq".into()
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Instant,
        rng: &mut Rng,
    ) -> Choice {
        if let Some(i) = self.idle.pop(nodes, NodeView::is_ready) {
            return Choice::Node(i);
        }
        match sample::random_ready(nodes, rng) {
            Some(i) => Choice::Node(i),
            None => Choice::Hold,
        }
    }

    /// Lists the node as idle. Returns false: JIQ never holds requests, so
    /// there is nothing to hand over (requests are held only while no node is
    /// Ready, and the caller re-dispatches those when the pool changes).
    fn on_idle(&mut self, nodes: &[NodeView], node: usize, _now: Instant) -> bool {
        if nodes.get(node).is_some_and(NodeView::is_ready) {
            self.idle.push(nodes, node);
        }
        false
    }

    fn on_nodes_changed(&mut self, nodes: &[NodeView]) {
        self.idle.remap(nodes);
        for (i, v) in nodes.iter().enumerate() {
            if v.is_ready() && v.in_flight == 0 {
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

    fn busy_pool(n: u32) -> Vec<NodeView> {
        let mut nodes = pool(n);
        for v in &mut nodes {
            v.in_flight = 3;
        }
        nodes
    }

    #[test]
    fn prefers_reported_idle_nodes_and_forgets_them_once_used() {
        let nodes = busy_pool(50);
        let mut jiq = JoinIdleQueue::new();
        jiq.on_nodes_changed(&nodes);
        assert_eq!(jiq.idle_count(), 0);
        let mut rng = Rng::seeded(21);
        jiq.on_idle(&nodes, 17, Instant::EPOCH);
        jiq.on_idle(&nodes, 4, Instant::EPOCH);
        jiq.on_idle(&nodes, 17, Instant::EPOCH); // repeat report: still once
        assert_eq!(jiq.idle_count(), 2);
        let at = Instant::EPOCH;
        assert_eq!(
            jiq.pick(&nodes, NO_DEADLINE, at, &mut rng),
            Choice::Node(17)
        );
        assert_eq!(jiq.pick(&nodes, NO_DEADLINE, at, &mut rng), Choice::Node(4));
        assert_eq!(jiq.idle_count(), 0);
        // With nobody idle the choice is random, not stuck on old reports.
        let picks: Vec<Choice> = (0..20)
            .map(|_| jiq.pick(&nodes, NO_DEADLINE, at, &mut rng))
            .collect();
        let distinct: std::collections::BTreeSet<usize> = picks
            .iter()
            .filter_map(|c| match c {
                Choice::Node(i) => Some(*i),
                Choice::Hold => None,
            })
            .collect();
        assert!(distinct.len() > 5, "{picks:?}");
    }

    #[test]
    fn skips_idle_reports_of_nodes_that_stopped_being_ready() {
        let mut nodes = busy_pool(3);
        let mut jiq = JoinIdleQueue::new();
        let mut rng = Rng::seeded(2);
        jiq.on_idle(&nodes, 0, Instant::EPOCH);
        jiq.on_idle(&nodes, 1, Instant::EPOCH);
        nodes[0].state = NodeState::Draining;
        assert_eq!(
            jiq.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(1)
        );
    }

    #[test]
    fn scale_in_drops_indices_past_the_end_and_follows_ids() {
        let nodes = busy_pool(6);
        let mut jiq = JoinIdleQueue::new();
        let mut rng = Rng::seeded(3);
        jiq.on_idle(&nodes, 5, Instant::EPOCH);
        jiq.on_idle(&nodes, 2, Instant::EPOCH);
        // Node 5 leaves; node 2 moves to index 0.
        let fewer = vec![nodes[2].clone(), nodes[0].clone()];
        jiq.on_nodes_changed(&fewer);
        assert_eq!(jiq.idle_count(), 1);
        assert_eq!(
            jiq.pick(&fewer, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(0)
        );
    }
}
