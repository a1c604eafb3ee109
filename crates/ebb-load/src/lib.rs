//! ebb's open-loop load generator, as a library (`ebb load` is its CLI), so
//! any program can drive a node or gateway the same way.
//!
//! Requests arrive on a schedule (Poisson at a rate, or a trace) that does
//! not wait for replies; each carries a deadline; latency runs from the
//! request's scheduled send time; outcomes are classified the same way over
//! ebb RPC and HTTP/JSON ([`Outcome`]). Requests outstanding are bounded,
//! and arrivals past the bound are counted as `not_sent`.

mod arrivals;
pub mod engine;
mod http;
mod outcome;
mod report;
mod rpc;
mod run;
mod timer;

pub use arrivals::{ArrivalSpec, Arrivals, MAX_RATE_PER_SEC};
pub use engine::{Driven, InFlight, Observer, drive};
pub use http::{CLIENT_GRACE_MS, HttpTarget, MAX_RESPONSE_BYTES};
pub use outcome::Outcome;
pub use report::{MAX_ERROR_LABELS, Report, RunInfo, Tally};
pub use rpc::RpcTarget;
pub use run::{DEFAULT_MAX_OUTSTANDING, DRAIN_GRACE_MS, LoadConfig, Progress, run, run_until};

use ebb_rpc::service::BoxFuture;

/// Something requests are sent to: makes one call and classifies its end.
/// Each call must end, at the latest shortly after the run's deadline.
pub trait Target: Send + Sync + 'static {
    fn call(&self) -> BoxFuture<'_, Outcome>;
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to {0}: {1} (is a node or gateway listening there?)")]
    Connect(String, String),
    /// The RPC client's own account, which names the address already.
    #[error("{0} (is a node or gateway listening there?)")]
    RpcConnect(String),
    #[error("{0}")]
    Method(String),
    #[error("{0}")]
    Arguments(String),
}
