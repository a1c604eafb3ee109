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
//! It is the async client underneath (the same [`TcpClient`] and session),
//! driven by a small runtime this client owns: its one worker thread runs
//! the connection, and [`BlockingClient::wait`] parks the calling thread on
//! the call. So semantics and errors are exactly the async client's: an
//! at-most-once call still runs at most once, a call still ends by its
//! deadline with a typed [`CallError`].

use std::future::Future;
use std::sync::Arc;

use crate::rpc::CallError;
use crate::rpc::transport::{TcpClient, TcpClientConfig};

/// Worker threads of the runtime a blocking client owns: one is enough to
/// drive a connection, and a synchronous program should not pay for more.
pub const WORKER_THREADS: usize = 1;

/// Why a blocking client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BlockingError {
    #[error("starting the blocking client's runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Connect(#[from] CallError),
}

/// A client of one server for synchronous code. Calls from several threads
/// may share it (`&BlockingClient` is `Sync`); they are multiplexed over one
/// connection as with the async client.
pub struct BlockingClient {
    client: Arc<TcpClient>,
    // Declared last: dropped after the client, so the driver task can see
    // its channel close before the runtime stops.
    rt: tokio::runtime::Runtime,
}

impl BlockingClient {
    /// Connects to `addr` now, so a wrong address is reported here.
    pub fn connect(addr: &str) -> Result<BlockingClient, BlockingError> {
        BlockingClient::connect_with(addr, TcpClientConfig::default())
    }

    pub fn connect_with(
        addr: &str,
        config: TcpClientConfig,
    ) -> Result<BlockingClient, BlockingError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("ebb-blocking-client")
            .enable_all()
            .build()
            .map_err(BlockingError::Runtime)?;
        let client = rt.block_on(TcpClient::connect_with(addr, config))?;
        Ok(BlockingClient {
            client: Arc::new(client),
            rt,
        })
    }

    /// The transport to build a generated client stub on, e.g.
    /// `GreeterClient::new(client.transport())`.
    pub fn transport(&self) -> Arc<TcpClient> {
        Arc::clone(&self.client)
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
