//! Prometheus metrics: counted on the request path, gauges refreshed from
//! the registry when scraped, encoded as the text exposition format.

mod by_method;
mod labels;
#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use ebb_policy::admission::Refusal;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry as PromRegistry;

use crate::registry::{Life, NodeStatus};
use by_method::{MethodMetrics, latency_histogram};
use labels::{
    DirectionLabel, Duplicates, HistogramFamily, MethodOutcome, NodeLabels, PerIngress, RuleLabel,
};

/// The gateway's metrics. Cheap to clone (every metric is an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    requests: Family<MethodOutcome, Counter>,
    latency: HistogramFamily,
    /// By admission rule, in `Refusal::RULES`' order: every rule's counter
    /// exists from the start (a scrape shows the zeros), and counting one
    /// is an index, no label hashed.
    refusals: Arc<[Counter; Refusal::RULES.len()]>,
    retries: Counter,
    ejections: Counter,
    hedges: Counter,
    hedge_wins: Counter,
    unauthenticated: PerIngress,
    caller_refusals: PerIngress,
    duplicates: Duplicates,
    held_total: Counter,
    held: Gauge,
    held_bytes: Gauge,
    in_flight: Gauge,
    nodes: Family<NodeLabels, Gauge>,
    target: Gauge,
    /// The ready nodes' capacities summed (scale up raises it as scale
    /// out does).
    capacity: Gauge,
    decisions: Family<DirectionLabel, Counter>,
    desired: Gauge,
    busy_poll: crate::busy_poll::Counters,
    registry: std::sync::Arc<PromRegistry>,
    /// By method id; see [`Metrics::answered`].
    by_method: Arc<RwLock<Vec<Option<MethodMetrics>>>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = PromRegistry::with_prefix("ebb_gateway");
        let requests = Family::<MethodOutcome, Counter>::default();
        r.register(
            "requests",
            "Requests answered, by method and outcome",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        r.register(
            "request_duration_seconds",
            "Time from arrival at the gateway to the answer, by method",
            latency.clone(),
        );
        let refusal_family = Family::<RuleLabel, Counter>::default();
        let refusals = Arc::new(
            Refusal::RULES.map(|rule| refusal_family.get_or_create(&RuleLabel { rule }).clone()),
        );
        r.register(
            "admission_refusals",
            "Requests refused at once as overloaded, by the admission rule that refused them",
            refusal_family,
        );
        let retries = Counter::default();
        r.register(
            "retries",
            "Calls sent again to another node",
            retries.clone(),
        );
        let ejections = Counter::default();
        r.register(
            "ejections",
            "Nodes taken out of rotation for failing calls in a row",
            ejections.clone(),
        );
        let hedges = Counter::default();
        r.register(
            "hedges",
            "Second copies of slow idempotent calls sent to another node",
            hedges.clone(),
        );
        let hedge_wins = Counter::default();
        r.register(
            "hedge_wins",
            "Hedged calls answered by their second copy first",
            hedge_wins.clone(),
        );
        let unauthenticated = PerIngress::register(
            &mut r,
            "unauthenticated",
            "Requests refused for want of a valid bearer token, by ingress (rpc: handshakes and calls refused)",
        );
        let caller_refusals = PerIngress::register(
            &mut r,
            "caller_refusals",
            "Requests refused because their caller had its bound in flight, by ingress",
        );
        let duplicates = Duplicates::register(&mut r);
        let held_total = Counter::default();
        r.register(
            "held",
            "Requests that waited in the held FIFO for a node",
            held_total.clone(),
        );
        let held = Gauge::default();
        r.register("held_requests", "Requests waiting for a node", held.clone());
        let held_bytes = Gauge::default();
        r.register(
            "held_bytes",
            "Argument bytes of requests waiting for a node",
            held_bytes.clone(),
        );
        let in_flight = Gauge::default();
        r.register(
            "in_flight_requests",
            "Requests sent to nodes and not yet answered",
            in_flight.clone(),
        );
        let nodes = Family::<NodeLabels, Gauge>::default();
        r.register("nodes", "Nodes by state and kind", nodes.clone());
        let target = Gauge::default();
        r.register("pool_target", "The pool size aimed at", target.clone());
        let capacity = Gauge::default();
        r.register(
            "pool_capacity",
            "Blocking calls the ready nodes run at once, their capacities summed",
            capacity.clone(),
        );
        let decisions = Family::<DirectionLabel, Counter>::default();
        for d in crate::decisions::Direction::ALL {
            let _ = decisions.get_or_create(&DirectionLabel {
                direction: d.as_str().to_owned(),
            });
        }
        r.register(
            "autoscaler_decisions",
            "Autoscaler decisions, by the way they move the pool (up, down, hold)",
            decisions.clone(),
        );
        let desired = Gauge::default();
        r.register(
            "autoscaler_desired_nodes",
            "The pool size the autoscaler's last decision wanted, within min and max",
            desired.clone(),
        );
        let busy_poll = crate::busy_poll::Counters::register(&mut r);
        Metrics {
            requests,
            latency,
            refusals,
            retries,
            ejections,
            hedges,
            hedge_wins,
            unauthenticated,
            caller_refusals,
            duplicates,
            held_total,
            held,
            held_bytes,
            in_flight,
            nodes,
            target,
            capacity,
            decisions,
            desired,
            busy_poll,
            registry: std::sync::Arc::new(r),
            by_method: Arc::default(),
        }
    }

    /// The busy-polling spinner's counters (`ebb_gateway_busy_poll_*`).
    pub fn busy_poll(&self) -> &crate::busy_poll::Counters {
        &self.busy_poll
    }

    /// A request refused by admission, counted under the rule that did.
    pub fn refused(&self, why: &Refusal) {
        let rule = why.rule();
        if let Some(i) = Refusal::RULES.iter().position(|r| *r == rule) {
            self.refusals[i].inc();
        }
    }

    /// A request waits in the held FIFO for a node.
    pub fn held(&self) {
        self.held_total.inc();
    }

    pub fn ejected(&self) {
        self.ejections.inc();
    }

    /// An HTTP request without valid credentials.
    pub fn unauthenticated(&self) {
        self.unauthenticated.http.inc();
    }

    /// An HTTP request over its caller's bound.
    pub fn caller_refused(&self) {
        self.caller_refusals.http.inc();
    }

    /// The RPC ingress's refusals and absorbed duplicates as its server
    /// session counted them.
    pub fn rpc_refusals(&self, stats: &ebb_rpc::semantics::ServerStats) {
        self.unauthenticated
            .set_rpc(stats.refused_unauthorized_handshakes + stats.refused_unauthorized_requests);
        self.caller_refusals.set_rpc(stats.refused_caller_in_flight);
        self.duplicates.set(stats);
    }

    pub fn hedged(&self) {
        self.hedges.inc();
    }

    /// A hedge's second copy answered before the first.
    pub fn hedge_won(&self) {
        self.hedge_wins.inc();
    }

    pub fn retried(&self) {
        self.retries.inc();
    }

    /// The autoscaler decided; `desired` is its target within the bounds.
    pub fn decided(&self, direction: crate::decisions::Direction, desired: u32) {
        self.decisions
            .get_or_create(&DirectionLabel {
                direction: direction.as_str().to_owned(),
            })
            .inc();
        self.desired.set(i64::from(desired));
    }

    /// Refreshes the gauges from a snapshot and encodes everything.
    pub fn render(
        &self,
        nodes: &[NodeStatus],
        held: (usize, usize),
        target: usize,
    ) -> Result<String, std::fmt::Error> {
        self.held.set(held.0 as i64);
        self.held_bytes.set(held.1 as i64);
        self.target.set(target as i64);
        let ready = nodes.iter().filter(|n| n.state == Life::Ready);
        self.capacity
            .set(ready.map(|n| i64::from(n.capacity)).sum());
        let live = nodes.iter().filter(|n| n.state != Life::Gone);
        self.in_flight
            .set(live.clone().map(|n| i64::from(n.in_flight)).sum());
        self.nodes.clear();
        for n in live {
            self.nodes
                .get_or_create(&NodeLabels {
                    state: n.state.as_str().to_owned(),
                    kind: n.kind.to_owned(),
                })
                .inc();
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
