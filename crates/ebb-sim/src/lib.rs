//! A deterministic discrete-event simulator for ebb's balancing policies.
//!
//! It drives the very `ebb_policy::balance::Balancer` implementations the
//! gateway uses, on simulated gateways and FIFO single-server nodes, so a
//! policy can be judged on millions of requests and thousands of nodes and
//! checked against queueing theory ([`theory`]) before it is deployed.
//!
//! One seed gives one exact run: integer-nanosecond time, a (time, sequence)
//! ordered event heap, seeded random streams, no threads, no wall clock.

mod arrival_gen;
pub mod arrivals;
pub mod autoscale;
pub mod builtin;
pub mod config;
mod dispatch;
pub mod dist;
mod engine;
mod exp_sampler;
pub mod expected;
mod heap;
mod hist;
pub mod lease;
mod node;
pub mod plot;
mod pool;
pub mod report;
pub mod scale;
pub mod stats;
pub mod sweep;
pub mod theory;
mod tick_latency;
pub mod trace;
mod wheel;

pub use arrivals::{ArrivalSpec, Arrivals};
pub use autoscale::{Autoscaler, ScaleSetup, TimelineRow};
pub use config::{SimConfig, SpeedSpec};
pub use dist::{ServiceDist, SpecError};
pub use engine::Sim;
pub use report::Report;
pub use scale::{PoolSignals, ScaleAction, ScaleHook, Schedule};

use ebb_policy::balance::Balancer;

/// How far a run has got; passed to the progress callback now and then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    pub arrived: u64,
    pub requests: u64,
    pub events: u64,
    pub sim_secs: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid {field} `{value}` (accepted: {accepted})")]
    Config {
        field: &'static str,
        value: String,
        accepted: &'static str,
    },
    #[error("policy {policy} chose node index {index}, but there are only {nodes} nodes")]
    BadChoice {
        policy: String,
        index: usize,
        nodes: usize,
    },
    #[error(transparent)]
    Policy(#[from] ebb_policy::balance::ParseError),
    #[error(
        "more than {limit} requests in the system at {at_secs:.1} s simulated: the pool cannot keep up (is --load at or above 1?)"
    )]
    Overloaded { limit: u64, at_secs: f64 },
}

/// Runs `cfg` with a fresh balancer from `make` at every gateway.
pub fn run_with(
    cfg: SimConfig,
    make: &mut dyn FnMut() -> Box<dyn Balancer + Send>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, SimError> {
    let balancers = (0..cfg.gateways).map(|_| make()).collect();
    Sim::new(cfg, balancers)?.run(progress)
}

/// Runs `cfg` with the balancer named by `spec` (see
/// `ebb_policy::balance::parse`) at every gateway.
pub fn run_spec(
    cfg: SimConfig,
    spec: &str,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, SimError> {
    let balancers = (0..cfg.gateways)
        .map(|_| ebb_policy::balance::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    Sim::new(cfg, balancers)?.run(progress)
}

/// Runs `cfg` with the balancer named by `spec` at every gateway and
/// `scaler` growing and shrinking the pool on every tick.
pub fn run_scaled(
    cfg: SimConfig,
    spec: &str,
    scaler: &mut Autoscaler,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Report, SimError> {
    let balancers = (0..cfg.gateways)
        .map(|_| ebb_policy::balance::parse(spec))
        .collect::<Result<Vec<_>, _>>()?;
    Sim::new(cfg, balancers)?
        .with_scale_hook(scaler)
        .run(progress)
}
