//! The tokio TCP runtimes: a client that implements
//! [`Transport`](crate::service::Transport) and multiplexes many concurrent
//! calls over one connection, and a server that serves a
//! [`ServiceDispatch`](crate::service::ServiceDispatch).
//!
//! Both sides write through [`outbuf::OutBuf`], which coalesces every frame
//! queued while a write is in flight into the next single write.

pub mod client;
pub mod clock;
pub mod frames;
pub mod outbuf;
pub mod server;
pub mod workers;

pub use client::{TcpClient, TcpClientConfig};
pub use server::Server;

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("accepting connections failed: {0}")]
    Accept(std::io::Error),
}
