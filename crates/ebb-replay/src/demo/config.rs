//! What one `ebb demo` is told (its nodes, the trace, the policies to
//! compare), what it hands back, and every way it can fail: the contract
//! between the CLI's flags and the run, kept apart from how a run goes.

use std::path::PathBuf;
use std::sync::Arc;

use ebb_core::Nanos;
use ebb_node::provider::{NodeKind, NodeProvider};
use ebb_report::Run;
use ebb_rpc::service::ServiceCodec;

use crate::origin::OriginCounts;
use crate::trace::Trace;

/// Connections from the load generator to the gateway; calls are spread
/// over them so one client session's outstanding-call bound is not the
/// demo's.
pub const CLIENT_CONNECTIONS: usize = 4;
/// How often the live view and the node counts are refreshed.
pub const SAMPLE_EVERY_MS: u64 = 250;
/// How long the first node may take to come up before the run gives up.
pub const FIRST_NODE_TIMEOUT_MS: u64 = 60_000;

/// Makes a fresh node provider for each run (the caller knows the service
/// and how its nodes start); preparing one may fail (a VM image that
/// cannot be built), and says why.
#[derive(Clone)]
pub struct Providers(pub Arc<dyn Fn() -> Result<Box<dyn NodeProvider>, String> + Send + Sync>);

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Providers(..)")
    }
}

/// Everything one `ebb demo` needs.
#[derive(Clone)]
pub struct DemoConfig {
    pub providers: Providers,
    /// The node kind the providers start, for the report.
    pub kind: NodeKind,
    /// The service the nodes serve and the call the trace makes.
    pub codec: &'static dyn ServiceCodec,
    pub method: String,
    pub args: serde_json::Value,
    /// Calls sent instead of `method` for a share of the arrivals.
    pub mix: Vec<MixCall>,
    /// The origin store the nodes share, if any: the report counts its
    /// reads and writes beside the `get`/`put` calls of the mix.
    pub origin: Option<Arc<OriginCounts>>,
    /// The autoscaling policy spec of the headline run.
    pub policy: String,
    /// Policies run after it on the same trace, for comparison.
    pub baselines: Vec<String>,
    pub trace: Trace,
    pub deadline: Nanos,
    pub objective: Nanos,
    pub initial_nodes: u32,
    pub min_nodes: u32,
    pub max_nodes: u32,
    /// How long a node may take to become ready (`--boot-timeout-ms`):
    /// the pool's bound before it replaces the node, and the run's wait
    /// for its first node where longer than [`FIRST_NODE_TIMEOUT_MS`]
    /// (a VM without KVM on a loaded host). `None`: the defaults.
    pub boot_timeout_ms: Option<u64>,
    pub balance: String,
    pub seed: u64,
    pub out: PathBuf,
    /// Force plain lines (or the panel) instead of deciding by the terminal.
    pub terminal: Option<bool>,
}

impl DemoConfig {
    /// How long the run waits for its first node.
    pub fn first_node_timeout_ms(&self) -> u64 {
        self.boot_timeout_ms
            .map_or(FIRST_NODE_TIMEOUT_MS, |b| b.max(FIRST_NODE_TIMEOUT_MS))
    }
}

pub use crate::calls::MIX_PER_MILLE;

/// A call the trace makes for `per_mille` of its arrivals instead of the
/// main method, with arguments drawn from `args` (one per call, chosen by
/// the arrival's index and the seed).
#[derive(Clone, Debug, PartialEq)]
pub struct MixCall {
    pub method: String,
    pub args: Vec<serde_json::Value>,
    pub per_mille: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Policy(#[from] ebb_policy::scale::ScaleParseError),
    #[error("cannot start the gateway: {0}")]
    Gateway(#[from] ebb_gateway::StartError),
    #[error("cannot connect to the gateway at {addr}: {source}")]
    Connect {
        addr: String,
        source: ebb_rpc::CallError,
    },
    #[error("cannot prepare the nodes: {0}")]
    Provider(String),
    #[error("no node became ready within {0} ms")]
    NoNode(u64),
    #[error("the call `{service}.{method}`: {source}")]
    Call {
        service: &'static str,
        method: String,
        source: ebb_rpc::service::DispatchError,
    },
    #[error(transparent)]
    Report(#[from] ebb_report::ReportError),
    #[error("the call mix takes {per_mille} per mille of the arrivals; at most {MIX_PER_MILLE}")]
    MixTooLarge { per_mille: u32 },
    #[error("the mixed-in call `{method}` has no arguments to send")]
    MixWithoutArgs { method: String },
}

/// The outcome of a whole demo.
#[derive(Debug)]
pub struct DemoOutcome {
    pub runs: Vec<Run>,
    pub written: ebb_report::Written,
    pub interrupted: bool,
}
