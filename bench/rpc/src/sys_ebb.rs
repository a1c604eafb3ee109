//! ebb echo: a `#[ebb::service]` trait, its generated client over ebb's TCP
//! client and its generated dispatch behind ebb's TCP server. The method is
//! not `#[idempotent]`, so every call runs under at-most-once semantics (the
//! server keeps a per-client reply table).

use std::rc::Rc;

use bytes::Bytes;
use ebb::rpc::transport::{Server, TcpClient};
use serde_bytes::ByteBuf;

use crate::driver::{RunCfg, Sample, drive};
use crate::server::{self, ServerHandle};

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

pub fn start() -> anyhow::Result<ServerHandle> {
    server::spawn("ebb", |ready| async move {
        let server = Server::bind("127.0.0.1:0", EchoServer::new(Svc)).await?;
        ready.listening(server.local_addr()?);
        server.run().await?;
        Ok(())
    })
}

pub async fn run(server: ServerHandle, cfg: RunCfg) -> anyhow::Result<Sample> {
    let transport = TcpClient::connect(&server.addr.to_string()).await?;
    let client = Rc::new(EchoClient::new(transport));
    drive(cfg, server.tid, |payload: Bytes| {
        let c = Rc::clone(&client);
        async move {
            let reply = c.echo(ByteBuf::from(payload.to_vec())).await?;
            Ok(Bytes::from(reply.into_vec()))
        }
    })
    .await
}
