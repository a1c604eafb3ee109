//! tarpc echo over its serde transport: length-delimited frames, bincode.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::bail;
use bytes::Bytes;
use futures::{StreamExt, future};
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{client, context, serde_transport};

use crate::certs::TlsFiles;
use crate::driver::{Mode, Outcome, RunCfg, drive};

#[tarpc::service]
trait Echo {
    async fn echo(payload: ByteBuf) -> ByteBuf;
}

#[derive(Clone)]
struct Svc;

impl Echo for Svc {
    async fn echo(self, _: context::Context, payload: ByteBuf) -> ByteBuf {
        payload
    }
}

fn frames(stream: tokio::net::TcpStream) -> Framed<tokio::net::TcpStream, LengthDelimitedCodec> {
    let _ = stream.set_nodelay(true);
    Framed::new(stream, LengthDelimitedCodec::new())
}

pub async fn serve(listener: tokio::net::TcpListener, tls: Option<TlsFiles>) -> anyhow::Result<()> {
    if tls.is_some() {
        bail!("the tarpc benchmark has no TLS");
    }
    loop {
        let (stream, _) = listener.accept().await?;
        let transport = serde_transport::new(frames(stream), Bincode::default());
        let channel = BaseChannel::with_defaults(transport);
        tokio::spawn(channel.execute(Svc.serve()).for_each(|call| {
            tokio::spawn(call);
            future::ready(())
        }));
    }
}

pub async fn run(
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    cfg: RunCfg,
    mode: Mode,
) -> anyhow::Result<Outcome> {
    if tls.is_some() {
        bail!("the tarpc benchmark has no TLS");
    }
    let mut clients = Vec::with_capacity(cfg.conns);
    for _ in 0..cfg.conns {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let transport = serde_transport::new(frames(stream), Bincode::default());
        clients.push(EchoClient::new(client::Config::default(), transport).spawn());
    }
    let next = AtomicUsize::new(0);
    drive(cfg, mode, |payload: Bytes| {
        let c = clients[next.fetch_add(1, Ordering::Relaxed) % clients.len()].clone();
        async move {
            let reply = c
                .echo(context::current(), ByteBuf::from(payload.to_vec()))
                .await?;
            Ok(Bytes::from(reply.into_vec()))
        }
    })
    .await
}
