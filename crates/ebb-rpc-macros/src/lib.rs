//! `#[ebb::service]`: a trait becomes a client stub, a server dispatch and a
//! JSON adapter, all targeting `ebb_rpc::service`.
//!
//! ```ignore
//! #[ebb::service]
//! pub trait Demo {
//!     async fn echo(&self, msg: String) -> String;
//!     #[idempotent]
//!     async fn work(&self, micros: u64) -> u64;
//! }
//! ```
//!
//! generates, next to the trait (whose methods become
//! `fn ..(&self, ..) -> impl Future<Output = T> + Send`, with `Send + Sync +
//! 'static` added to its bounds):
//!
//! - `DemoCodec`: `DemoCodec::NAME`, `DemoCodec::METHODS` (ids are positions
//!   in the trait) and `ServiceCodec`, the JSON mapping for callers without
//!   an implementation;
//! - `DemoServer<S: Demo>`: a `ServiceDispatch` (binary and JSON);
//! - `DemoClient<T: Transport>`: `async fn echo(&self, msg: String) ->
//!   Result<String, CallError>`.
//!
//! Methods are at-most-once unless marked `#[idempotent]`. A method marked
//! `#[blocking]` keeps its thread busy (CPU work, blocking I/O) instead of
//! awaiting: a server runs it on its worker threads, off the I/O loop, so
//! heartbeats and cheap calls are served while it runs.
//!
//! The generated code reaches the runtime through `::ebb::rpc` (the `ebb`
//! crate re-exports `ebb_rpc` as `ebb::rpc`). A crate that depends on
//! `ebb_rpc` directly instead writes `#[service(crate = ::ebb_rpc)]`.

mod generate;
mod parse;

use proc_macro::TokenStream;

/// Turns a trait into an ebb RPC service; see the crate docs.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    match parse::Service::parse(attr.into(), item.into()) {
        Ok(service) => generate::Generator::new(&service).expand().into(),
        // Only the errors: re-emitting a broken trait would bury them under
        // follow-on errors about the trait itself.
        Err(e) => e.to_compile_error().into(),
    }
}
