//! Prometheus metrics: counted on the request path, gauges refreshed from
//! the registry when scraped, encoded as the text exposition format.

use std::sync::{Arc, PoisonError, RwLock};

use ebb_policy::admission::Refusal;
use ebb_rpc::service::MethodInfo;
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
struct DirectionLabel {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngressLabel {
    ingress: &'static str,
}

/// A refusal counted per ingress: HTTP's counted here as they happen,
/// RPC's copied from its server session's own counts when scraped.
#[derive(Clone)]
struct PerIngress {
    http: Counter,
    rpc: Counter,
}

impl PerIngress {
    fn register(r: &mut PromRegistry, name: &str, help: &str) -> PerIngress {
        let family = Family::<IngressLabel, Counter>::default();
        let http = family
            .get_or_create(&IngressLabel { ingress: "http" })
            .clone();
        let rpc = family
            .get_or_create(&IngressLabel { ingress: "rpc" })
            .clone();
        r.register(name, help, family);
        PerIngress { http, rpc }
    }

    /// The RPC session's own running total.
    fn set_rpc(&self, total: u64) {
        self.rpc
            .inner()
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    state: String,
    kind: String,
}

type HistogramFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// Method ids whose metrics are kept at hand (a service has at most
/// `ebb_rpc::service::MAX_METHODS`).
const MAX_CACHED_METHODS: usize = ebb_rpc::service::MAX_METHODS;
/// Outcomes kept at hand per method (there are about a dozen kinds).
const MAX_CACHED_OUTCOMES: usize = 32;

/// One method's metrics, as registered in the families (the same `Arc`s).
struct MethodMetrics {
    method: &'static MethodInfo,
    latency: Histogram,
    outcomes: Vec<(&'static str, Counter)>,
}

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
    held: Gauge,
    held_bytes: Gauge,
    in_flight: Gauge,
    nodes: Family<NodeLabels, Gauge>,
    target: Gauge,
    decisions: Family<DirectionLabel, Counter>,
    desired: Gauge,
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
            held,
            held_bytes,
            in_flight,
            nodes,
            target,
            decisions,
            desired,
            registry: std::sync::Arc::new(r),
            by_method: Arc::default(),
        }
    }

    /// Counts one answered request. The request path calls it for every
    /// request, so the metrics of a method are looked up by the label set
    /// once and kept by method id: what remains per request is a read lock,
    /// an index, an increment and a histogram observation, with no label
    /// strings built or hashed.
    pub fn answered(&self, method: &'static MethodInfo, outcome: &'static str, secs: f64) {
        {
            let cached = self
                .by_method
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = cached.get(usize::from(method.id)).and_then(Option::as_ref)
                && std::ptr::eq(m.method, method)
                && let Some((_, counter)) = m.outcomes.iter().find(|(o, _)| *o == outcome)
            {
                counter.inc();
                m.latency.observe(secs);
                return;
            }
        }
        self.answered_first(method, outcome, secs);
    }

    /// The first answer of a method with an outcome: creates its metrics in
    /// the families and keeps them for [`Metrics::answered`].
    fn answered_first(&self, method: &'static MethodInfo, outcome: &'static str, secs: f64) {
        let name = format!("{}.{}", method.service, method.name);
        let counter = self
            .requests
            .get_or_create(&MethodOutcome {
                method: name.clone(),
                outcome: outcome.to_owned(),
            })
            .clone();
        let latency = self
            .latency
            .get_or_create(&MethodLabel { method: name })
            .clone();
        counter.inc();
        latency.observe(secs);
        let id = usize::from(method.id);
        if id >= MAX_CACHED_METHODS {
            return;
        }
        let mut cached = self
            .by_method
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if cached.len() <= id {
            cached.resize_with(id + 1, || None);
        }
        let entry = cached[id].get_or_insert_with(|| MethodMetrics {
            method,
            latency,
            outcomes: Vec::new(),
        });
        // A method of another service with the same id keeps the slot's
        // first owner; its answers take this slower path.
        if std::ptr::eq(entry.method, method)
            && entry.outcomes.len() < MAX_CACHED_OUTCOMES
            && !entry.outcomes.iter().any(|(o, _)| *o == outcome)
        {
            entry.outcomes.push((outcome, counter));
        }
    }

    /// A request refused by admission, counted under the rule that did.
    pub fn refused(&self, why: &Refusal) {
        let rule = why.rule();
        if let Some(i) = Refusal::RULES.iter().position(|r| *r == rule) {
            self.refusals[i].inc();
        }
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

    /// The RPC ingress's refusals as its server session counted them.
    pub fn rpc_refusals(&self, stats: &ebb_rpc::semantics::ServerStats) {
        self.unauthenticated
            .set_rpc(stats.refused_unauthorized_handshakes + stats.refused_unauthorized_requests);
        self.caller_refusals.set_rpc(stats.refused_caller_in_flight);
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

#[cfg(test)]
mod tests {
    use super::*;

    const fn method(service: &'static str, id: u16, name: &'static str) -> MethodInfo {
        MethodInfo {
            service,
            id,
            name,
            idempotent: false,
            blocking: false,
            params: &[],
            returns: "()",
        }
    }
    static ECHO: MethodInfo = method("A", 0, "echo");
    static OTHER: MethodInfo = method("B", 0, "other");

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    /// The kept metrics are the families' own: counts made through the
    /// cache show in the exposition, per method and outcome, and a method
    /// of another service with the same id is counted under its own name.
    #[test]
    fn answers_counted_through_the_cache_show_per_method_and_outcome() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.answered(&ECHO, "ok", 0.001);
        }
        m.answered(&ECHO, "overloaded", 0.0);
        m.answered(&OTHER, "ok", 0.002);
        m.answered(&OTHER, "ok", 0.002);
        assert!(
            m.by_method.read().unwrap_or_else(PoisonError::into_inner)[0]
                .as_ref()
                .is_some_and(|c| std::ptr::eq(c.method, &ECHO) && c.outcomes.len() == 2),
            "the first method's metrics were not kept"
        );
        let text = m.render(&[], (0, 0), 0).unwrap_or_default();
        let ok = r#"ebb_gateway_requests_total{method="A.echo",outcome="ok"}"#;
        assert!(line(&text, ok).ends_with(" 3"), "{text}");
        let refused = r#"ebb_gateway_requests_total{method="A.echo",outcome="overloaded"}"#;
        assert!(line(&text, refused).ends_with(" 1"), "{text}");
        let other = r#"ebb_gateway_requests_total{method="B.other",outcome="ok"}"#;
        assert!(line(&text, other).ends_with(" 2"), "{text}");
        let count = r#"ebb_gateway_request_duration_seconds_count{method="A.echo"}"#;
        assert!(line(&text, count).ends_with(" 4"), "{text}");
    }

    /// A refusal is counted under the rule that refused it; every rule is
    /// in the exposition from the start, at zero until it refuses.
    #[test]
    fn refusals_are_counted_by_the_rule_that_refused() {
        let m = Metrics::new();
        let text = m.render(&[], (0, 0), 0).unwrap_or_default();
        for rule in Refusal::RULES {
            let zero = format!("ebb_gateway_admission_refusals_total{{rule=\"{rule}\"}}");
            assert!(line(&text, &zero).ends_with(" 0"), "{text}");
        }
        m.refused(&Refusal::QueueBytesFull { limit: 10 });
        m.refused(&Refusal::QueueBytesFull { limit: 10 });
        m.refused(&Refusal::NoCapacity);
        let text = m.render(&[], (0, 0), 0).unwrap_or_default();
        let bytes = r#"ebb_gateway_admission_refusals_total{rule="held_bytes"}"#;
        assert!(line(&text, bytes).ends_with(" 2"), "{text}");
        let none = r#"ebb_gateway_admission_refusals_total{rule="no_capacity"}"#;
        assert!(line(&text, none).ends_with(" 1"), "{text}");
        let deadline = r#"ebb_gateway_admission_refusals_total{rule="deadline"}"#;
        assert!(line(&text, deadline).ends_with(" 0"), "{text}");
    }
}
