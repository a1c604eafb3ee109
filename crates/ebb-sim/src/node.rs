//! A simulated node and gateway as the event loop touches them: the
//! request in flight, the node's life, and the per-gateway balancer with
//! its view of the pool. Laid out for the cache, because with thousands of
//! nodes every event misses on its node.

use ebb_core::Rng;
use ebb_policy::balance::{Balancer, NodeState, NodeView};
use std::collections::VecDeque;

/// `Sim::deadline_ns` when requests have no deadline.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

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

/// What every request touches, in one 64-byte cache line: with thousands
/// of nodes each event misses the cache on its node, and one line per node
/// is one miss. The request in service is stored field by field so the
/// whole fits; rarely used fields live in [`NodeCold`].
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct Node {
    pub queue: VecDeque<Req>,
    /// Arrival of the request in service.
    pub cur_arrival: u64,
    pub started: u64,
    pub inv_speed: f64,
    pub cur_gateway: u32,
    pub cur_measured: bool,
    pub busy: bool,
    pub life: Life,
}

impl Node {
    pub(crate) fn new(inv_speed: f64, life: Life) -> Node {
        Node {
            queue: VecDeque::new(),
            cur_arrival: 0,
            started: 0,
            inv_speed,
            cur_gateway: 0,
            cur_measured: false,
            busy: false,
            life,
        }
    }

    #[inline]
    pub(crate) fn cur(&self) -> Req {
        Req {
            arrival: self.cur_arrival,
            gateway: self.cur_gateway,
            measured: self.cur_measured,
        }
    }

    #[inline]
    pub(crate) fn set_cur(&mut self, r: Req) {
        self.cur_arrival = r.arrival;
        self.cur_gateway = r.gateway;
        self.cur_measured = r.measured;
    }
}

const _: () = assert!(std::mem::size_of::<Node>() == 64);

/// Per-node fields touched only when the pool changes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct NodeCold {
    pub cost_per_sec_micros: u64,
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

/// Cost of slot `i`: the list repeats over the nodes.
pub(crate) fn node_cost(costs: &[u64], i: usize) -> u64 {
    costs.get(i % costs.len().max(1)).copied().unwrap_or(0)
}

/// Marks node slots' view state in every gateway.
pub(crate) fn set_view_state(gws: &mut [Gateway], i: usize, state: NodeState) {
    for gw in gws {
        if let Some(v) = gw.views.get_mut(i) {
            v.state = state;
        }
    }
}
