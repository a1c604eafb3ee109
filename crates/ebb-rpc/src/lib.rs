//! ebb's RPC layer.
//!
//! The call semantics (at-least-once for idempotent methods, at-most-once for
//! the rest) live in sans-IO state machines that take `now` and frames in and
//! give frames, timers and call outcomes out; a thin tokio layer drives them.

pub mod error;
pub mod service;
pub mod transport;

pub use error::CallError;
