//! The synchronous model: a program without an async runtime calls a
//! service like a local function and blocks until the call ends.
//!
//! ```no_run
//! # #[ebb::service] pub trait Greeter { #[idempotent] async fn hello(&self, name: String) -> String; }
//! use ebb::blocking::BlockingClient;
//!
//! let client = BlockingClient::connect("127.0.0.1:7100")?;
//! let greeter = GreeterClient::new(client.transport());
//! let reply: String = client.wait(greeter.hello("ann".into()))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! It is the async client underneath (a [`PooledClient`]: a few
//! connections, each its own [`TcpClient`](crate::rpc::transport::TcpClient)
//! and session), driven by a small runtime this client owns: its one worker
//! thread runs the connections, and [`BlockingClient::wait`] parks the
//! calling thread on the call. So semantics and errors are exactly the
//! async client's: an at-most-once call still runs at most once, a call
//! still ends by its deadline with a typed [`CallError`]. Calls from many
//! threads spread over the pool's connections (the least busy takes the
//! next call), so they are not held to one connection's at-most-once
//! window; the count is [`PoolConfig::connections`].

use std::future::Future;

use crate::rpc::CallError;
use crate::rpc::transport::{Credentials, PoolConfig, PoolError, PooledClient};

/// Worker threads of the runtime a blocking client owns: one is enough to
/// drive its connections, and a synchronous program should not pay for
/// more.
pub const WORKER_THREADS: usize = 1;

/// Connections a blocking client opens when the caller does not say. Calls
/// are multiplexed, so a few threads need no connection each; two keep one
/// reconnecting connection from holding every call up, at the cost of two
/// client sessions on the server.
pub const DEFAULT_BLOCKING_CONNECTIONS: usize = 2;

/// Why a blocking client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("starting the blocking client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Connect(#[from] CallError),
    /// The pool's connection count is out of range.
    #[error(transparent)]
    Pool(PoolError),
}

impl From<PoolError> for BlockingError {
    fn from(e: PoolError) -> BlockingError {
        match e {
            PoolError::Connect(e) => BlockingError::Connect(e),
            other => BlockingError::Pool(other),
        }
    }
}

/// A client of one server for synchronous code. Calls from several threads
/// may share it (`&BlockingClient` is `Sync`); they spread over its pool of
/// connections.
pub struct BlockingClient {
    client: PooledClient,
    // Declared last: dropped after the client, so the driver tasks can see
    // their channels close before the runtime stops.
    rt: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// Connects to `addr` now with [`DEFAULT_BLOCKING_CONNECTIONS`]
    /// connections, so a wrong address is reported here.
    pub fn connect(addr: &str) -> Result<BlockingClient, BlockingError> {
        let config = PoolConfig::default().with_connections(DEFAULT_BLOCKING_CONNECTIONS);
        BlockingClient::connect_with(addr, config)
    }

    /// Connects with `config.connections` connections (1 to
    /// `MAX_POOL_CONNECTIONS`), each configured as `config.client`.
    pub fn connect_with(addr: &str, config: PoolConfig) -> Result<BlockingClient, BlockingError> {
        BlockingClient::connect_as(addr, config, Credentials::default())
    }

    /// As [`BlockingClient::connect_with`], presenting `credentials` (TLS,
    /// a bearer token) on every connection.
    pub fn connect_as(
        addr: &str,
        config: PoolConfig,
        credentials: Credentials,
    ) -> Result<BlockingClient, BlockingError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("ebb-blocking-client")
            .enable_all()
            .build()
            .map_err(BlockingError::Runtime)?;
        let client = rt.block_on(PooledClient::connect_as(addr, config, credentials))?;
        Ok(BlockingClient { client, rt })
    }

    /// The transport to build a generated client stub on, e.g.
    /// `GreeterClient::new(client.transport())`. Clones share the
    /// connections.
    pub fn transport(&self) -> PooledClient {
        self.client.clone()
    }

    /// How many connections the client holds.
    pub fn connections(&self) -> usize {
        self.client.connections()
    }

    /// Calls in flight on each connection, in order: how the calls of
    /// several threads are spread.
    pub fn in_flight(&self) -> Vec<usize> {
        self.client.in_flight()
    }

    /// Runs one call (a stub method's future) to its end and returns its
    /// result: the reply, or the same [`CallError`] the async client gives.
    ///
    /// # Panics
    /// When called from inside an async runtime, where blocking the thread
    /// would stall other tasks; async code uses the async client directly.
    pub fn wait<F: Future>(&self, call: F) -> F::Output {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "BlockingClient::wait called from inside an async runtime: \
             use the async client there (or wrap the call in spawn_blocking)"
        );
        self.rt.block_on(call)
    }
}
