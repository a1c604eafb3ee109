//! Load balancing: which node gets the next request.
//!
//! A [`Balancer`] sees only what a real gateway could see: its own
//! [`NodeView`] slice (queue lengths it was told, requests it has in flight,
//! declared speed and cost, latencies it measured). Several gateways each hold
//! their own balancer and their own, possibly stale, view.

use ebb_core::{Instant, Nanos, NodeId, Rng};

mod argmin;
pub mod central;
pub mod cost;
pub mod ewma;
mod idle;
pub mod jiq;
pub mod jsq;
pub mod parse;
pub mod pod;
pub mod random;
pub mod rr;
pub mod sample;
pub mod signal;
#[cfg(test)]
mod testutil;

pub use parse::{POLICY_NAMES, POLICY_SYNTAX, ParseError, parse};
pub use signal::{LoadSignal, QueueMeasure};

/// Lifecycle of a node as the balancer sees it. Only `Ready` nodes take work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeState {
    /// Started but not yet serving (boot time still running).
    Booting,
    /// Serving.
    Ready,
    /// Finishing what it has; must get no new work.
    Draining,
}

/// What a gateway knows about one node.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    pub id: NodeId,
    pub state: NodeState,
    /// Requests this gateway has sent to the node and not yet seen complete
    /// (waiting plus in service, as far as this gateway knows).
    pub in_flight: u32,
    /// Queue length the node last reported (may be stale; includes other
    /// gateways' work).
    pub reported_queue: u32,
    /// Relative service speed: 1.0 is the reference node; 2.0 serves twice as fast.
    pub speed: f64,
    /// Cost of keeping the node up, in micro-dollars per second.
    pub cost_per_sec_micros: u64,
    /// Peak-EWMA of observed response latency; zero until first measured.
    pub ewma_latency: Nanos,
}

impl NodeView {
    /// A ready reference node with nothing in flight.
    pub fn ready(id: u32) -> NodeView {
        NodeView {
            id: NodeId(id),
            state: NodeState::Ready,
            in_flight: 0,
            reported_queue: 0,
            speed: 1.0,
            cost_per_sec_micros: 0,
            ewma_latency: Nanos::ZERO,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state == NodeState::Ready
    }
}

/// A request as the balancer sees it at dispatch time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Absolute deadline, if the request has one.
    pub deadline: Option<Instant>,
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Send it to `nodes[index]` now.
    Node(usize),
    /// Hold it at the dispatcher until a node asks for work (central queue,
    /// or no ready node right now).
    Hold,
}

/// A load-balancing policy.
///
/// Indices refer to positions in the `nodes` slice the caller passes; the
/// caller keeps the slice's order stable between calls and tells the policy
/// through [`Balancer::on_nodes_changed`] when it is not.
pub trait Balancer {
    /// Short name as used on the command line (`rr`, `p2c`, `pod:3`, ...).
    fn name(&self) -> String;

    /// Choose a node for a request arriving at `now`.
    fn pick(&mut self, nodes: &[NodeView], req: RequestInfo, now: Instant, rng: &mut Rng)
    -> Choice;

    /// The request sent to `nodes[node]` completed after `latency`.
    fn on_complete(&mut self, _nodes: &[NodeView], _node: usize, _latency: Nanos, _now: Instant) {}

    /// `nodes[node]` has become idle and asks for work (join-idle-queue's idle
    /// report, central queue's pull). Returns true if the policy wants the
    /// caller to hand it a held request now. Callers also report a node that
    /// has just turned Ready: it is idle too.
    fn on_idle(&mut self, _nodes: &[NodeView], _node: usize, _now: Instant) -> bool {
        false
    }

    /// The set or order of nodes changed (scale out/in), or a node's state
    /// or price did; drop or re-index per-index state. Policies that keep
    /// per-node state key it by [`NodeView::id`], so it follows a node that
    /// moves to another index.
    fn on_nodes_changed(&mut self, _nodes: &[NodeView]) {}
}
