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
pub(super) struct DuplicateLabel {
    pub(super) outcome: &'static str,
}

/// A client's retransmits of at-most-once calls that the RPC ingress's
/// session absorbed, by what became of each, copied from the session's
/// counts when scraped. Every label value exists from the start.
#[derive(Clone)]
pub(super) struct Duplicates {
    /// Answered from the saved reply of the completed call.
    saved_reply: Counter,
    /// Joined the call still running: answered when it ends.
    joined: Counter,
    /// Below the client's forgotten floor: answered `OutcomeUnknown`.
    too_old: Counter,
}

impl Duplicates {
    pub(super) fn register(r: &mut PromRegistry) -> Duplicates {
        let family = Family::<DuplicateLabel, Counter>::default();
        let make = |outcome| family.get_or_create(&DuplicateLabel { outcome }).clone();
        let d = Duplicates {
            saved_reply: make("saved_reply"),
            joined: make("joined"),
            too_old: make("too_old"),
        };
        r.register(
            "duplicates",
            "Retransmitted at-most-once calls the RPC ingress did not run again, by outcome \
             (saved_reply: answered from the completed call's saved reply; joined: answered \
             when the running call ends; too_old: below the client's forgotten window, \
             answered outcome unknown)",
            family,
        );
        d
    }

    /// The RPC session's own running totals.
    pub(super) fn set(&self, stats: &ebb_rpc::semantics::ServerStats) {
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        self.saved_reply.inner().store(stats.saved_replies, relaxed);
        self.joined.inner().store(stats.waits, relaxed);
        self.too_old.inner().store(stats.too_old, relaxed);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct NodeLabels {
    pub(super) state: String,
    pub(super) kind: String,
}

pub(super) type HistogramFamily = Family<MethodLabel, Histogram, fn() -> Histogram>;
