//! The label sets the gateway's metrics are kept under, and the refusals
//! counted per ingress: the shapes a scrape shows, apart from the counting.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry as PromRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodOutcome {
    pub(super) method: String,
    pub(super) outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MethodLabel {
    pub(super) method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DirectionLabel {
    pub(super) direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RuleLabel {
    pub(super) rule: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct IngressLabel {
    pub(super) ingress: &'static str,
}

/// A refusal counted per ingress: HTTP's counted here as they happen,
/// RPC's copied from its server session's own counts when scraped.
#[derive(Clone)]
pub(super) struct PerIngress {
    pub(super) http: Counter,
    pub(super) rpc: Counter,
}

impl PerIngress {
    pub(super) fn register(r: &mut PromRegistry, name: &str, help: &str) -> PerIngress {
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
    pub(super) fn set_rpc(&self, total: u64) {
        self.rpc
            .inner()
            .store(total, std::sync::atomic::Ordering::Relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeLabels {
    pub(super) state: String,
    pub(super) kind: String,
}

pub(super) type HistogramFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;
