//! ebb as a library: what a service author depends on, and nothing more.
//!
//! ```
//! #[ebb::service]
//! pub trait Greeter {
//!     #[idempotent]
//!     async fn hello(&self, name: String) -> String;
//! }
//! ```
//!
//! - [`service`]: the attribute that turns a trait into a client stub, a
//!   server dispatch and a JSON adapter.
//! - [`rpc`]: the runtime those stubs run on (wire format, call semantics,
//!   TCP transport). `#[ebb::service]` expands to code that names it as
//!   `::ebb::rpc`, which is why `ebb_rpc` is re-exported under that name.
//! - [`blocking`]: a client for programs without an async runtime, with
//!   the async client's semantics and errors.
//! - [`node`]: the command line and serve loop of a node binary, so a
//!   user's node starts the way `ebb node` does and any provider can run it.
//!
//! This crate pulls in neither a command-line framework nor the simulator,
//! the node providers or the fault injector: those belong to the `ebb` tool.

pub use ebb_rpc as rpc;
/// Turns a trait into an ebb RPC service: see `ebb_rpc_macros`.
pub use ebb_rpc_macros::service;

pub mod blocking;
pub mod node;
