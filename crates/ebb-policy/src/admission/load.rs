//! The work ahead of a request and when it is expected to finish: what the
//! gateway knows as a request arrives ([`Load`]), the ready nodes' own
//! reports summed as capacities ([`from_nodes`]), and the M/G/k estimate
//! both admission checks judge by ([`expected_finish`]). Separate from the
//! decisions because the simulator and `/status` read the estimate too.

use ebb_core::{Instant, Nanos};

/// What the gateway knows at the moment a request arrives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Requests held at the gateway, waiting for a node.
    pub held: usize,
    /// Argument bytes of those held requests.
    pub held_bytes: usize,
    /// Requests sent to nodes and not yet answered.
    pub in_flight: usize,
    /// Nodes that take work now.
    pub ready: usize,
    /// Measured mean service time of one request; zero if none measured.
    pub service_time: Nanos,
    /// When the first node still booting is expected to be ready, if no node
    /// is ready but some are on their way.
    pub capacity_at: Option<Instant>,
}

/// One ready node as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLoad {
    /// Calls the gateway has sent to it and not seen answered.
    pub in_flight: u32,
    /// Calls the node last said it was executing (other callers' included).
    pub reported_queue: u32,
    /// The service time the node last reported measuring itself, if any.
    pub reported_service_time: Option<Nanos>,
}

/// The work ahead and the service time, as the ready nodes report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLoad {
    /// Calls on the ready nodes: per node the larger of what the gateway
    /// has in flight there and what the node reports executing.
    pub in_flight: usize,
    /// The service time that spreads the work over the ready nodes as their
    /// capacities add up: `ready / sum(1 / s_i)` (the harmonic mean), so
    /// `work × service_time / ready = work / capacity`. A node that reported
    /// none counts with `fallback`; zero when no node has a figure.
    pub service_time: Nanos,
}

/// What [`Load::in_flight`] and [`Load::service_time`] are, from the ready
/// nodes' own reports; `fallback` (the gateway's own timing) stands in for
/// a node that has not reported a service time yet.
pub fn from_nodes(nodes: impl IntoIterator<Item = NodeLoad>, fallback: Nanos) -> PoolLoad {
    let mut in_flight = 0usize;
    // Capacity in calls per nanosecond, summed over the nodes with a figure.
    let mut capacity = 0.0;
    let mut counted = 0usize;
    let mut seen = 0usize;
    for n in nodes {
        seen += 1;
        in_flight += n.in_flight.max(n.reported_queue) as usize;
        let s = n
            .reported_service_time
            .filter(|s| *s > Nanos::ZERO)
            .unwrap_or(fallback);
        if s > Nanos::ZERO {
            capacity += 1.0 / s.as_nanos() as f64;
            counted += 1;
        }
    }
    let service_time = if counted == 0 {
        Nanos::ZERO
    } else {
        Nanos((counted as f64 / capacity).round() as u64)
    };
    debug_assert!(counted <= seen);
    PoolLoad {
        in_flight,
        service_time,
    }
}

/// When a request arriving now is expected to be answered: the work ahead
/// spread over the ready nodes, then its own service. With nothing measured
/// yet the estimate is `now`: no evidence, no refusal.
pub fn expected_finish(load: &Load, now: Instant) -> Instant {
    let start = match (load.ready, load.capacity_at) {
        (0, Some(at)) => at.max(now),
        _ => now,
    };
    let servers = load.ready.max(1) as u64;
    let ahead = (load.held + load.in_flight) as u64;
    // Requests ahead beyond the free nodes queue; whole rounds of service.
    let rounds = ahead
        .saturating_sub(servers.saturating_sub(1))
        .div_ceil(servers);
    let wait = load.service_time.as_nanos().saturating_mul(rounds);
    let finish = Nanos(wait).saturating_add(load.service_time);
    debug_assert!(finish >= load.service_time);
    start + finish
}
