//! Answers counted per method and outcome without building a label string
//! per request: each method's metrics are looked up by label once and kept
//! by method id, bounded by the number of methods and outcomes.

use std::sync::PoisonError;

use ebb_rpc::service::MethodInfo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::Metrics;
use super::labels::{MethodLabel, MethodOutcome};

/// Latency buckets: 50 µs doubling 20 times (to about 26 s).
const LATENCY_BUCKET_START_SECS: f64 = 50e-6;
const LATENCY_BUCKETS: u16 = 20;

/// Method ids whose metrics are kept at hand (a service has at most
/// `ebb_rpc::service::MAX_METHODS`).
pub(super) const MAX_CACHED_METHODS: usize = ebb_rpc::service::MAX_METHODS;
/// Outcomes kept at hand per method (there are about a dozen kinds).
pub(super) const MAX_CACHED_OUTCOMES: usize = 32;

/// One method's metrics, as registered in the families (the same `Arc`s).
pub(super) struct MethodMetrics {
    pub(super) method: &'static MethodInfo,
    pub(super) latency: Histogram,
    pub(super) outcomes: Vec<(&'static str, Counter)>,
}

pub(super) fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_BUCKET_START_SECS,
        2.0,
        LATENCY_BUCKETS,
    ))
}

impl Metrics {
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
}
