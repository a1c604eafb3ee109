//! The demo's origin store: `ebb_lease`'s origin served in-process on a
//! port of a host-only address (loopback, or the host address container
//! nodes are routed to), with every read and write counted, so the report
//! can show what the nodes' lease caches saved it.
//!
//! The nodes reach it as they reach any origin (`ebb node --origin ADDR`),
//! over TCP; only the counting is special. A read that arrives here is a
//! node-cache miss or a revalidation; a `Demo.get` that never arrives here
//! was served by a node from its cache under a lease.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ebb_lease::api::{GetReply, Origin, OriginError, OriginServer, PollReply, Release};
use ebb_lease::origin::{OriginService, OriginSettings};
use ebb_rpc::transport::Server;

/// What the origin has served, since it started.
#[derive(Debug, Default)]
pub struct OriginCounts {
    /// `get`s: reads the nodes' caches could not answer themselves.
    pub reads: AtomicU64,
    /// `put`s and `put_if_version`s that were applied.
    pub writes: AtomicU64,
}

/// A copy of [`OriginCounts`] at one instant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OriginSnapshot {
    pub reads: u64,
    pub writes: u64,
}

impl OriginCounts {
    pub fn snapshot(&self) -> OriginSnapshot {
        OriginSnapshot {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

impl OriginSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: OriginSnapshot) -> OriginSnapshot {
        OriginSnapshot {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
        }
    }
}

/// The origin with its calls counted; the protocol is `OriginService`'s.
#[derive(Clone, Debug)]
struct Counted {
    inner: OriginService,
    counts: Arc<OriginCounts>,
}

impl Origin for Counted {
    async fn get(
        &self,
        key: String,
        holder: u64,
        term_ns: u64,
        known_version: u64,
    ) -> Result<GetReply, OriginError> {
        self.counts.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key, holder, term_ns, known_version).await
    }

    async fn put(&self, key: String, value: Vec<u8>) -> Result<u64, OriginError> {
        let r = self.inner.put(key, value).await;
        if r.is_ok() {
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn put_if_version(
        &self,
        key: String,
        value: Vec<u8>,
        expected: u64,
    ) -> Result<u64, OriginError> {
        let r = self.inner.put_if_version(key, value, expected).await;
        if r.is_ok() {
            self.counts.writes.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn poll_invalidations(
        &self,
        holder: u64,
        releases: Vec<Release>,
        wait_ms: u64,
    ) -> Result<PollReply, OriginError> {
        self.inner
            .poll_invalidations(holder, releases, wait_ms)
            .await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OriginStartError {
    /// The store's error names the data file or directory.
    #[error("opening the origin store: {source}")]
    Open {
        source: ebb_lease::store::StoreError,
    },
    #[error("serving the origin store: {0}")]
    Serve(#[from] ebb_rpc::transport::TransportError),
    #[error("reading the origin's address: {0}")]
    Addr(#[from] std::io::Error),
}

/// A running origin: its address and counters. Dropping it stops serving.
#[derive(Debug)]
pub struct DemoOrigin {
    pub addr: String,
    pub counts: Arc<OriginCounts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens the store in `dir` and serves it on a free port of `ip`, on the
/// current tokio runtime.
pub async fn start(
    dir: &Path,
    settings: OriginSettings,
    ip: std::net::IpAddr,
) -> Result<DemoOrigin, OriginStartError> {
    let (inner, _opened) =
        OriginService::open(dir, settings).map_err(|source| OriginStartError::Open { source })?;
    let counts = Arc::new(OriginCounts::default());
    let served = Counted {
        inner,
        counts: Arc::clone(&counts),
    };
    let listen = std::net::SocketAddr::new(ip, 0).to_string();
    let server = Server::bind(&listen, OriginServer::new(served)).await?;
    let addr = server.local_addr()?.to_string();
    let task = tokio::spawn(async move {
        // It ends when the demo drops it; an accept error ends it early and
        // the nodes' origin calls then fail, which the report counts.
        let _ = server.run().await;
    });
    Ok(DemoOrigin { addr, counts, task })
}
