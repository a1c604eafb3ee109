//! Join-the-shortest-queue: the Ready node with the least load, ties broken
//! uniformly at random.
//!
//! State: none. Cost: O(n) per decision (one scan; one RNG draw per tie).
//! The load is a [`QueueMeasure`]: by default this gateway's own
//! `in_flight`, which is exact with a single dispatcher; `jsq:reported` adds
//! the node's last reported queue; `jsq:speed` minimises the expected delay
//! `(load + 1) / speed` instead (shortest expected delay, for mixed pools). Origin: Winston 1977 (JSQ is optimal for identical
//! exponential servers); it is the full-information end of the power-of-d
//! spectrum (d = n).

use super::argmin::RandomArgMin;
use super::signal::QueueMeasure;
use super::{Balancer, Choice, NodeView, RequestInfo};
use ebb_core::{Instant, Rng};

#[derive(Clone, Debug, Default)]
pub struct Jsq {
    measure: QueueMeasure,
}

impl Jsq {
    pub fn new(measure: impl Into<QueueMeasure>) -> Jsq {
        Jsq {
            measure: measure.into(),
        }
    }
}

impl Balancer for Jsq {
    fn name(&self) -> String {
        format!("jsq{}", self.measure.suffix())
    }

    fn pick(
        &mut self,
        nodes: &[NodeView],
        _req: RequestInfo,
        _now: Instant,
        rng: &mut Rng,
    ) -> Choice {
        let mut best = RandomArgMin::default();
        for (i, v) in nodes.iter().enumerate() {
            if v.is_ready() {
                // Keys are small integers (exact in f64) or ratios computed
                // the same way, so equal queues compare equal.
                best.offer(i, self.measure.key(v), rng);
            }
        }
        match best.index() {
            Some(i) => Choice::Node(i),
            None => Choice::Hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::NodeState;
    use crate::balance::signal::LoadSignal;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    #[test]
    fn picks_a_minimum() {
        let mut nodes = pool(5);
        for (v, q) in nodes.iter_mut().zip([4, 2, 7, 2, 0]) {
            v.in_flight = q;
        }
        nodes[4].state = NodeState::Booting; // the true minimum is not Ready
        let mut jsq = Jsq::new(LoadSignal::InFlight);
        let mut rng = Rng::seeded(9);
        let mut seen = [0u32; 5];
        for _ in 0..200 {
            match jsq.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng) {
                Choice::Node(i) => seen[i] += 1,
                Choice::Hold => panic!("held"),
            }
        }
        assert_eq!(seen[0] + seen[2] + seen[4], 0, "{seen:?}");
        // Both tied minima get picked (random tie-break, not first-wins).
        assert!(seen[1] > 50 && seen[3] > 50, "{seen:?}");
    }

    #[test]
    fn reported_signal_counts_the_reported_queue() {
        let mut nodes = pool(2);
        nodes[0].in_flight = 1;
        nodes[1].reported_queue = 5;
        let mut rng = Rng::seeded(1);
        let mut local = Jsq::new(LoadSignal::InFlight);
        let mut reported = Jsq::new(LoadSignal::InFlightPlusReported);
        assert_eq!(
            local.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(1)
        );
        assert_eq!(
            reported.pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(0)
        );
    }
}

#[cfg(test)]
mod speed_tests {
    use super::*;
    use crate::balance::signal::LoadSignal;
    use crate::balance::testutil::{NO_DEADLINE, pool};

    #[test]
    fn speed_option_picks_the_shortest_expected_delay() {
        let mut nodes = pool(2);
        nodes[0].in_flight = 1;
        nodes[1].in_flight = 2;
        nodes[1].speed = 4.0; // (2 + 1) / 4 < (1 + 1) / 1
        let mut rng = Rng::seeded(1);
        let sed = QueueMeasure {
            signal: LoadSignal::InFlight,
            per_speed: true,
        };
        assert_eq!(
            Jsq::new(LoadSignal::InFlight).pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(0)
        );
        assert_eq!(
            Jsq::new(sed).pick(&nodes, NO_DEADLINE, Instant::EPOCH, &mut rng),
            Choice::Node(1)
        );
    }
}
