//! ebb as a library: what a service author depends on.
//!
//! ```
//! #[ebb::service]
//! pub trait Greeter {
//!     #[idempotent]
//!     async fn hello(&self, name: String) -> String;
//! }
//! ```
//!
//! `#[ebb::service]` expands to code that names the runtime as `::ebb::rpc`,
//! which is why `ebb_rpc` is re-exported here as `rpc`.

// Lets the generated code's `::ebb::rpc` paths resolve inside this crate too
// (the demo service is declared here).
extern crate self as ebb;

pub use ebb_rpc as rpc;
/// Turns a trait into an ebb RPC service: see `ebb_rpc_macros`.
pub use ebb_rpc_macros::service;

pub mod demo;

use rpc::service::ServiceCodec;

/// The services this build knows by name, for callers that speak JSON (the
/// CLI's `call`, the gateway's HTTP ingress) and need the method table and
/// argument types without an implementation.
pub fn service_codec(name: &str) -> Option<&'static dyn ServiceCodec> {
    match name {
        demo::DemoCodec::NAME => Some(&demo::DemoCodec),
        _ => None,
    }
}

/// The names [`service_codec`] accepts, for error messages.
pub const SERVICE_NAMES: &[&str] = &[demo::DemoCodec::NAME];
