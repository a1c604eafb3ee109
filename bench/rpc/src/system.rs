//! The systems under comparison. Adding one is one module with `serve` (its
//! server, inside a `rpc-bench serve` process) and `run` (its clients under
//! the shared driver), plus a variant here.

use std::net::SocketAddr;

use crate::certs::TlsFiles;
use crate::driver::{Mode, Outcome, RunCfg};
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

    /// Whether this system's benchmark can run over TLS (tarpc's serde
    /// transport has no TLS of its own).
    pub fn has_tls(self) -> bool {
        !matches!(self, System::Tarpc)
    }

    /// Serves the echo service on `listener` until the process ends.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Option<TlsFiles>,
    ) -> anyhow::Result<()> {
        match self {
            System::Ebb => sys_ebb::serve(listener, tls).await,
            System::Tonic => sys_tonic::serve(listener, tls).await,
            System::Tarpc => sys_tarpc::serve(listener, tls).await,
        }
    }

    /// Opens `cfg.conns` connections to `addr` and drives them in `mode`.
    pub async fn run(
        self,
        addr: SocketAddr,
        tls: Option<TlsFiles>,
        cfg: RunCfg,
        mode: Mode,
    ) -> anyhow::Result<Outcome> {
        match self {
            System::Ebb => sys_ebb::run(addr, tls, cfg, mode).await,
            System::Tonic => sys_tonic::run(addr, tls, cfg, mode).await,
            System::Tarpc => sys_tarpc::run(addr, tls, cfg, mode).await,
        }
    }
}
