//! ebb's decisions, as pure code.
//!
//! Nothing here reads a clock, spawns a task or touches a socket: `now` and the
//! [`ebb_core::Rng`] are arguments. The gateway drives these policies with real
//! signals; the simulator drives the very same code with simulated ones.

pub mod admission;
pub mod balance;
pub mod hedge;
pub mod lease;
pub mod outlier;
pub mod retry;
pub mod scale;
