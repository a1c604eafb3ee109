//! ebb's RPC layer.
//!
//! The call semantics (at-least-once for idempotent methods, at-most-once for
//! the rest) live in sans-IO state machines that take `now` and frames in and
//! give frames, timers and call outcomes out; a thin tokio layer drives them.
//!
//! - [`wire`]: the closed set of messages, the frame layout and its
//!   incremental codec, payload helpers (a leaf module).
//! - [`auth`]: bearer tokens a server may require of its callers.
//! - [`semantics`]: client and server call-semantics state machines.
//! - [`service`]: the interface generated stubs target.
//! - [`transport`]: the tokio TCP client and server that drive the semantics.

pub mod auth;
pub mod error;
mod fast_map;
pub mod reply_pool;
pub mod semantics;
pub mod service;
pub mod transport;
pub mod wire;

pub use error::CallError;
pub use wire::{FrameCodec, Message, WireError};
