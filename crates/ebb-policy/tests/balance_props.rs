//! Properties every balancing policy keeps, whatever the pool looks like.
#![allow(clippy::unwrap_used)]

use ebb_core::{Instant, Nanos, NodeId, Rng};
use ebb_policy::balance::{Choice, NodeState, NodeView, RequestInfo, parse};
use proptest::prelude::*;

/// One spec per policy and option family.
const SPECS: &[&str] = &[
    "rr",
    "random",
    "jsq",
    "jsq:reported",
    "p2c",
    "p2c:with",
    "pod:3",
    "pod:3:with",
    "pod:32",
    "jsq:speed",
    "p2c:with:reported:speed",
    "jiq",
    "central",
    "ewma",
    "ewma:1ms",
    "ewma:scan",
    "cost",
    "cost:1:1ms",
];

fn node() -> impl Strategy<Value = NodeView> {
    (
        prop_oneof![
            Just(NodeState::Booting),
            Just(NodeState::Ready),
            Just(NodeState::Draining)
        ],
        0u32..20,
        0u32..20,
        1u32..40,
        0u64..1_000,
        0u64..10_000_000,
    )
        .prop_map(
            |(state, in_flight, reported_queue, speed10, cost, ewma)| NodeView {
                id: NodeId(0),
                state,
                in_flight,
                reported_queue,
                speed: f64::from(speed10) / 10.0,
                cost_per_sec_micros: cost,
                ewma_latency: Nanos(ewma),
            },
        )
}

/// A sequence of steps against a pool that changes size and states.
#[derive(Clone, Debug)]
enum Step {
    Pick { deadline_ns: Option<u64> },
    Complete { node: usize, latency_ns: u64 },
    Idle { node: usize },
    Resize(Vec<NodeView>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => proptest::option::of(0u64..50_000_000).prop_map(|deadline_ns| Step::Pick { deadline_ns }),
        2 => (0usize..64, 0u64..20_000_000).prop_map(|(node, latency_ns)| Step::Complete { node, latency_ns }),
        2 => (0usize..64).prop_map(|node| Step::Idle { node }),
        1 => proptest::collection::vec(node(), 0..12).prop_map(Step::Resize),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn only_ever_picks_a_ready_index_in_range(
        seed in any::<u64>(),
        initial in proptest::collection::vec(node(), 0..12),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        for spec in SPECS {
            let mut b = parse(spec).unwrap();
            let mut rng = Rng::seeded(seed);
            let mut nodes = initial.clone();
            b.on_nodes_changed(&nodes);
            let mut now = Instant::EPOCH;
            for s in &steps {
                now += Nanos(1_000);
                match s {
                    Step::Pick { deadline_ns } => {
                        let req = RequestInfo { deadline: deadline_ns.map(|d| now + Nanos(d)) };
                        match b.pick(&nodes, req, now, &mut rng) {
                            Choice::Node(i) => {
                                prop_assert!(i < nodes.len(), "{spec}: {i} out of range {}", nodes.len());
                                prop_assert!(nodes[i].is_ready(), "{spec}: picked {:?} node {i}", nodes[i].state);
                                nodes[i].in_flight += 1;
                            }
                            Choice::Hold => {}
                        }
                    }
                    Step::Complete { node, latency_ns } if *node < nodes.len() => {
                        nodes[*node].in_flight = nodes[*node].in_flight.saturating_sub(1);
                        b.on_complete(&nodes, *node, Nanos(*latency_ns), now);
                    }
                    Step::Idle { node } if *node < nodes.len() => {
                        b.on_idle(&nodes, *node, now);
                    }
                    Step::Resize(new) => {
                        nodes = new.clone();
                        b.on_nodes_changed(&nodes);
                    }
                    _ => {}
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn jsq_picks_a_least_loaded_ready_node(
        seed in any::<u64>(),
        nodes in proptest::collection::vec(node(), 1..40),
    ) {
        let mut b = parse("jsq").unwrap();
        let mut rng = Rng::seeded(seed);
        let min = nodes.iter().filter(|v| v.is_ready()).map(|v| v.in_flight).min();
        match b.pick(&nodes, RequestInfo { deadline: None }, Instant::EPOCH, &mut rng) {
            Choice::Node(i) => prop_assert_eq!(Some(nodes[i].in_flight), min),
            Choice::Hold => prop_assert_eq!(min, None),
        }
    }

    #[test]
    fn central_sends_only_to_nodes_with_nothing_in_flight(
        seed in any::<u64>(),
        nodes in proptest::collection::vec(node(), 1..20),
        idle in proptest::collection::vec(0usize..20, 0..20),
    ) {
        let mut b = parse("central").unwrap();
        let mut rng = Rng::seeded(seed);
        let mut nodes = nodes;
        b.on_nodes_changed(&nodes);
        for i in idle {
            b.on_idle(&nodes, i, Instant::EPOCH);
        }
        for _ in 0..nodes.len() + 1 {
            match b.pick(&nodes, RequestInfo { deadline: None }, Instant::EPOCH, &mut rng) {
                Choice::Node(i) => {
                    prop_assert!(nodes[i].is_ready() && nodes[i].in_flight == 0, "node {i}: {:?}", nodes[i]);
                    nodes[i].in_flight += 1;
                }
                Choice::Hold => {}
            }
        }
    }
}

#[test]
fn every_policy_holds_when_no_node_is_ready() {
    let mut nodes: Vec<NodeView> = (0..4).map(NodeView::ready).collect();
    nodes[0].state = NodeState::Booting;
    nodes[1].state = NodeState::Draining;
    nodes[2].state = NodeState::Booting;
    nodes[3].state = NodeState::Draining;
    let req = RequestInfo { deadline: None };
    for spec in SPECS {
        let mut b = parse(spec).unwrap();
        let mut rng = Rng::seeded(1);
        for pool in [&nodes[..], &[]] {
            b.on_nodes_changed(pool);
            for i in 0..pool.len() {
                b.on_idle(pool, i, Instant::EPOCH);
            }
            assert_eq!(
                b.pick(pool, req, Instant::EPOCH, &mut rng),
                Choice::Hold,
                "{spec}"
            );
        }
    }
}
