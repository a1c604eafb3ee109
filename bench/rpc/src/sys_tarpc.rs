//! tarpc echo over its serde transport: length-delimited frames, bincode.

use bytes::Bytes;
use futures::{StreamExt, future};
use serde_bytes::ByteBuf;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::{Framed, LengthDelimitedCodec};
use tarpc::{client, context, serde_transport};

use crate::driver::{RunCfg, Sample, drive};
use crate::server::{self, ServerHandle};

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

pub fn start() -> anyhow::Result<ServerHandle> {
    server::spawn("tarpc", |ready| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        ready.listening(listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            let transport = serde_transport::new(frames(stream), Bincode::default());
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(channel.execute(Svc.serve()).for_each(|call| {
                tokio::spawn(call);
                future::ready(())
            }));
        }
    })
}

pub async fn run(server: ServerHandle, cfg: RunCfg) -> anyhow::Result<Sample> {
    let stream = tokio::net::TcpStream::connect(server.addr).await?;
    let transport = serde_transport::new(frames(stream), Bincode::default());
    let client = EchoClient::new(client::Config::default(), transport).spawn();
    drive(cfg, server.tid, |payload: Bytes| {
        let c = client.clone();
        async move {
            let reply = c
                .echo(context::current(), ByteBuf::from(payload.to_vec()))
                .await?;
            Ok(Bytes::from(reply.into_vec()))
        }
    })
    .await
}
