//! The tokio TCP runtimes: a client that implements
//! [`Transport`](crate::service::Transport) and multiplexes many concurrent
//! calls over one connection, a cloneable pool of such clients that spreads
//! calls over a few connections, and a server that serves a
//! [`ServiceDispatch`](crate::service::ServiceDispatch).
//!
//! Both sides write through [`outbuf::OutBuf`]: on plain TCP the task that
//! produced a frame writes it to the socket itself, and a writer task takes
//! over (coalescing what queues meanwhile into one write) only when the
//! socket would block; on TLS one writer at a time writes everything (a
//! server connection's own task, a client's writer task).

pub mod client;
pub mod clock;
pub mod framebuf;
pub mod frames;
#[cfg(test)]
pub(crate) mod gather;
pub mod listen;
pub mod outbuf;
pub mod pool;
pub mod server;
pub mod sockbuf;
pub mod stream;
pub mod tls;
pub mod unacked;
pub mod workers;
pub mod write_batch;

pub use client::{Credentials, TcpClient, TcpClientConfig};
pub use pool::{PoolConfig, PoolError, PooledClient};
pub use server::Server;
pub use tls::{ClientTls, ServerTls, TlsError};
pub use write_batch::WriteBatch;

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
