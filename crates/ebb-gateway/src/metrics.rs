//! Prometheus metrics: counted on the request path, gauges refreshed from
//! the registry when scraped, encoded as the text exposition format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry as PromRegistry;

use crate::registry::{Life, NodeStatus};

/// Latency buckets: 50 µs doubling 20 times (to about 26 s).
const LATENCY_BUCKET_START_SECS: f64 = 50e-6;
const LATENCY_BUCKETS: u16 = 20;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodOutcome {
    method: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    state: String,
    kind: String,
}

type HistogramFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_BUCKET_START_SECS,
        2.0,
        LATENCY_BUCKETS,
    ))
}

/// The gateway's metrics. Cheap to clone (every metric is an `Arc`).
#[derive(Clone)]
pub struct Metrics {
    requests: Family<MethodOutcome, Counter>,
    latency: HistogramFamily,
    refusals: Counter,
    retries: Counter,
    ejections: Counter,
    held: Gauge,
    held_bytes: Gauge,
    in_flight: Gauge,
    nodes: Family<NodeLabels, Gauge>,
    target: Gauge,
    registry: std::sync::Arc<PromRegistry>,
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
        let refusals = Counter::default();
        r.register(
            "admission_refusals",
            "Requests refused at once as overloaded",
            refusals.clone(),
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
        Metrics {
            requests,
            latency,
            refusals,
            retries,
            ejections,
            held,
            held_bytes,
            in_flight,
            nodes,
            target,
            registry: std::sync::Arc::new(r),
        }
    }

    pub fn answered(&self, method: &str, outcome: &str, secs: f64) {
        let method = method.to_owned();
        self.requests
            .get_or_create(&MethodOutcome {
                method: method.clone(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabel { method })
            .observe(secs);
    }

    pub fn refused(&self) {
        self.refusals.inc();
    }

    pub fn ejected(&self) {
        self.ejections.inc();
    }

    pub fn retried(&self) {
        self.retries.inc();
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
