//! A fault-injecting TCP proxy: it sits between a client and a server and
//! delays, black-holes or resets connections, with seeded randomness.
//!
//! [`decide`] is the pure core (which chunk suffers which fault); [`proxy`]
//! is the tokio edge that moves bytes and carries the decisions out. ebb's
//! real-process tests put it between the RPC client and `ebb node` to check
//! that call semantics hold when the network misbehaves.

pub mod decide;
pub mod proxy;

pub use decide::{ChaosConfig, ChunkAction, ConnDecider};
pub use proxy::{ChaosStats, MAX_CONNECTIONS, Proxy};

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("--{name} must be a probability in [0, 1], got {value}")]
    BadProbability { name: &'static str, value: f64 },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },

    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}
