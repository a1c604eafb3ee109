//! Round-robin: each Ready node in turn.
//!
//! State: one cursor (the index after the last pick). Cost: O(1) when the
//! next node is Ready, O(n) worst case when it must skip non-Ready nodes.
//! Origin: the classic DNS/LVS/HAProxy `roundrobin` scheduler; it balances
//! request *counts*, not work, so it ignores queue lengths and speeds.

use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Rng};

#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Balancer for RoundRobin {
    fn name(&self) -> String {
        "rr".into()
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Instant,
        _rng: &mut Rng,
    ) -> Choice {
        let n = nodes.len();
        if n == 0 {
            return Choice::Hold;
        }
        // The cursor may point past the end after a scale-in the caller did
        // not announce; wrapping keeps it valid either way.
        let start = self.next % n;
        for k in 0..n {
            let i = (start + k) % n;
            if nodes[i].is_ready() {
                self.next = (i + 1) % n;
                return Choice::Node(i);
            }
        }
        Choice::Hold
    }

    fn on_nodes_changed(&mut self, nodes: &[NodeView]) {
        self.next = if nodes.is_empty() {
            0
        } else {
            self.next % nodes.len()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::NodeState;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    #[test]
    fn cycles_in_order_and_skips_non_ready() {
        let mut nodes = pool(4);
        nodes[2].state = NodeState::Draining;
        let mut rr = RoundRobin::new();
        let mut rng = Rng::seeded(1);
        let picks: Vec<Choice> = (0..6)
            .map(|_| rr.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng))
            .collect();
        let want = [0, 1, 3, 0, 1, 3].map(Choice::Node);
        assert_eq!(picks, want);
    }

    #[test]
    fn cursor_survives_scale_in() {
        let nodes = pool(5);
        let mut rr = RoundRobin::new();
        let mut rng = Rng::seeded(1);
        for _ in 0..4 {
            rr.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng);
        }
        let fewer = pool(2);
        rr.on_nodes_changed(&fewer);
        let c = rr.pick(&fewer, NO_DEADLINE, Instant::EPOCH, &mut rng);
        assert!(matches!(c, Choice::Node(i) if i < 2), "{c:?}");
    }
}
