//! Generated items raise no warnings, even under strict lints and when the
//! user needs only part of them (a server-only binary never builds a client).

#![deny(warnings, missing_docs, unused)]
#![deny(clippy::all)]

/// A service declared privately in a binary.
#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
trait Quiet {
    /// Nothing in, nothing out.
    async fn ping(&self);
    /// Zero parameters, a value out.
    #[idempotent]
    async fn answer(&self) -> u32;
    /// Everything in, nothing out.
    async fn take(&self, a: u8, b: String);
}

struct Impl;

impl Quiet for Impl {
    async fn ping(&self) {}
    async fn answer(&self) -> u32 {
        42
    }
    async fn take(&self, _a: u8, _b: String) {}
}

fn main() {
    let _server = QuietServer::new(Impl);
}
