//! ebb echo: a `#[ebb::service]` trait, its generated client over ebb's TCP
//! client and its generated dispatch behind ebb's TCP server. The method is
//! not `#[idempotent]`, so every call runs under at-most-once semantics (the
//! server keeps a per-client reply table).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use ebb::rpc::semantics::ServerConfig;
use ebb::rpc::service::Transport;
use ebb::rpc::transport::{
    ClientTls, PoolConfig, PooledClient, Server, ServerTls, TcpClient, TcpClientConfig,
};
use serde_bytes::ByteBuf;

use crate::certs::TlsFiles;
use crate::driver::{Mode, Outcome, RunCfg, drive};

#[ebb::service]
pub trait Echo {
    async fn echo(&self, payload: ByteBuf) -> ByteBuf;
}

struct Svc;

impl Echo for Svc {
    async fn echo(&self, payload: ByteBuf) -> ByteBuf {
        payload
    }
}

pub async fn serve(listener: tokio::net::TcpListener, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    let listener = listener.into_std()?;
    let mut server = Server::from_std(listener, EchoServer::new(Svc), ServerConfig::default())?;
    if let Some(t) = tls {
        server = server.with_tls(ServerTls::from_pem_files(&t.cert(), &t.key(), None)?);
    }
    server.run().await?;
    Ok(())
}

/// One connection: a `TcpClient`. Several: ebb's `PooledClient` over that
/// many connections, which sends each call on the member with the fewest
/// calls in flight.
pub async fn run(
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    cfg: RunCfg,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let addr = addr.to_string();
    let client_tls = match &tls {
        Some(t) => Some(ClientTls::from_pem_files(&t.ca(), None)?),
        None => None,
    };
    let client_cfg = TcpClientConfig {
        connect_timeout_ms: cfg.connect_timeout_ms,
        ..TcpClientConfig::default()
    };
    if cfg.conns == 1 {
        let transport = match client_tls {
            Some(t) => TcpClient::connect_tls(&addr, t, client_cfg).await?,
            None => TcpClient::connect_with(&addr, client_cfg).await?,
        };
        return drive_client(Arc::new(EchoClient::new(transport)), cfg, mode).await;
    }
    let pool = PoolConfig {
        client: client_cfg,
        ..PoolConfig::default().with_connections(cfg.conns)
    };
    let transport = match client_tls {
        Some(t) => PooledClient::connect_tls(&addr, t, pool).await?,
        None => PooledClient::connect_with(&addr, pool).await?,
    };
    drive_client(Arc::new(EchoClient::new(transport)), cfg, mode).await
}

async fn drive_client<T: Transport>(
    client: Arc<EchoClient<T>>,
    cfg: RunCfg,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    drive(cfg, mode, |payload: Bytes| {
        let c = Arc::clone(&client);
        async move {
            let reply = c.echo(ByteBuf::from(payload.to_vec())).await?;
            Ok(Bytes::from(reply.into_vec()))
        }
    })
    .await
}
