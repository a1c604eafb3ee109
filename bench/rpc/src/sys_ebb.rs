//! ebb echo: a `#[ebb::service]` trait, its generated client over ebb's TCP
//! client and its generated dispatch behind ebb's TCP server. The method is
//! not `#[idempotent]`, so every call runs under at-most-once semantics (the
//! server keeps a per-client reply table).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb::rpc::semantics::ServerConfig;
use ebb::rpc::transport::{ClientTls, Server, ServerTls, TcpClient, TcpClientConfig};
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

pub async fn run(
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    cfg: RunCfg,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    let addr = addr.to_string();
    let mut clients = Vec::with_capacity(cfg.conns);
    for _ in 0..cfg.conns {
        let transport = match &tls {
            Some(t) => {
                let client_tls = ClientTls::from_pem_files(&t.ca(), None)?;
                TcpClient::connect_tls(&addr, client_tls, TcpClientConfig::default()).await?
            }
            None => TcpClient::connect(&addr).await?,
        };
        clients.push(Arc::new(EchoClient::new(transport)));
    }
    let next = AtomicUsize::new(0);
    drive(cfg, mode, |payload: Bytes| {
        let c = Arc::clone(&clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()]);
        async move {
            let reply = c.echo(ByteBuf::from(payload.to_vec())).await?;
            Ok(Bytes::from(reply.into_vec()))
        }
    })
    .await
}
