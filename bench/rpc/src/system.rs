//! The systems under comparison. Adding one is one module with `start` (its
//! server on a thread of its own) and `run` (its client under the shared
//! driver), plus a variant here.

use crate::driver::{RunCfg, Sample};
use crate::server::ServerHandle;
use crate::{sys_ebb, sys_tarpc, sys_tonic};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum System {
    /// ebb's TCP transport with generated stubs, at-most-once calls.
    Ebb,
    /// tonic: gRPC over HTTP/2, prost messages.
    Tonic,
    /// tarpc: serde transport, length-delimited bincode frames.
    Tarpc,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Ebb => "ebb",
            System::Tonic => "tonic",
            System::Tarpc => "tarpc",
        }
    }

    /// Starts this system's echo server on its own thread.
    pub fn start(self) -> anyhow::Result<ServerHandle> {
        match self {
            System::Ebb => sys_ebb::start(),
            System::Tonic => sys_tonic::start(),
            System::Tarpc => sys_tarpc::start(),
        }
    }

    /// Opens one connection to `server` and drives it under `cfg`.
    pub async fn run(self, server: ServerHandle, cfg: RunCfg) -> anyhow::Result<Sample> {
        match self {
            System::Ebb => sys_ebb::run(server, cfg).await,
            System::Tonic => sys_tonic::run(server, cfg).await,
            System::Tarpc => sys_tarpc::run(server, cfg).await,
        }
    }
}
