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
pub use engine::{Driven, InFlight, MAX_BATCH_CALLS, Observer, drive};
pub use http::{CLIENT_GRACE_MS, HttpTarget, MAX_RESPONSE_BYTES};
pub use outcome::Outcome;
pub use report::{MAX_ERROR_LABELS, Report, RunInfo, Tally, count_label};
pub use rpc::RpcTarget;
pub use run::{
    BEHIND_LAG_P99_MS, Connect, DEFAULT_MAX_OUTSTANDING, DRAIN_GRACE_MS, LoadConfig, MAX_THREADS,
    Progress, run, run_until,
};

use std::sync::Arc;

use ebb_rpc::service::BoxFuture;

/// Something requests are sent to: makes one call and classifies its end.
/// Each call must end, at the latest shortly after the run's deadline.
pub trait Target: Send + Sync + 'static {
    fn call(&self) -> BoxFuture<'_, Outcome>;

    /// A way to start calls without a task and a future each, for a
    /// target whose transport can hand each call's end to a sink; `None`
    /// (the default) and the engine runs [`Target::call`]'s futures. The
    /// engine asks once per run, giving where the calls' ends go.
    fn starter(self: Arc<Self>, ends: Arc<dyn Ends>) -> Option<Box<dyn Starter>> {
        let _ = ends;
        None
    }

    /// Connection attempts made after the first connections, successful
    /// or not: how often a connection was lost (closed by the server,
    /// broken, or dropped by the generator) and opened again.
    fn reconnects(&self) -> u64 {
        0
    }
}

/// Where a call started by a [`Starter`] reports its end: once per started
/// call, with the token it was started with, by whichever task learns it.
pub trait Ends: Send + Sync {
    fn ended(&self, token: u64, outcome: Outcome);
}

/// Starts calls in batches: the engine starts every call due at one
/// wake-up, then flushes, so a batch's requests on one connection can
/// leave in one write.
pub trait Starter: Send {
    /// Starts one call; it may be held until [`Starter::flush`].
    fn start(&mut self, token: u64);
    /// Sends what was held since the last flush.
    fn flush(&mut self);
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
    /// A sender thread could not be started or ended without its report.
    #[error("sender thread {index}: {why}")]
    Thread { index: usize, why: String },
}
