//! A cloneable client that spreads calls over a small pool of connections
//! to one server.
//!
//! One [`TcpClient`] is one connection and one client session: its
//! at-most-once window ([`MAX_REPLIES_PER_CLIENT`](crate::semantics::MAX_REPLIES_PER_CLIENT)
//! calls) and its single driver task bound what one connection carries. The
//! pool holds `connections` independent `TcpClient`s and hands each call to
//! the member with the fewest calls in flight.
//!
//! Each member is its own client session with its own random client id,
//! rather than one id shared by every connection, because:
//! - the server routes a client's replies to the connection that client id
//!   was last heard on, so one id over several connections would have
//!   replies for calls sent on one connection delivered on another;
//! - sequence numbers are unique only within a session and the server
//!   prunes saved replies below the session's `ack_below`: a shared id
//!   needs one sequencer and one window for all connections, which is a
//!   lock or a single task on every call, the bottleneck a pool removes;
//! - a session's handshake, incarnation and reconnects belong to one
//!   connection; with one session per member, a member that loses its
//!   connection resends its own calls under its own id, and the server
//!   deduplicates them exactly as for a lone client.
//!
//! So at-most-once holds per member, and a call never changes member: once
//! handed to one it lives and ends there (resends after a reconnect
//! included). The cost is one server-side session per member, counted
//! against the per-peer session bound; hence the small
//! [`MAX_POOL_CONNECTIONS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::Nanos;

use super::client::{Credentials, TcpClient, TcpClientConfig};
use super::tls::ClientTls;
use crate::CallError;
use crate::service::{BoxFuture, CallOptions, MethodInfo, ServiceDescription, Transport};

/// The most connections one pool may hold: each is a client session on
/// the server, which bounds sessions per peer.
pub const MAX_POOL_CONNECTIONS: usize = 16;
/// Connections a pool opens when the caller does not say.
pub const DEFAULT_POOL_CONNECTIONS: usize = 4;

/// Configuration of a [`PooledClient`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    /// Connections (and client sessions) to open, `1..=MAX_POOL_CONNECTIONS`.
    pub connections: usize,
    /// Each member's configuration.
    pub client: TcpClientConfig,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            connections: DEFAULT_POOL_CONNECTIONS,
            client: TcpClientConfig::default(),
        }
    }
}

impl PoolConfig {
    pub fn with_connections(mut self, connections: usize) -> PoolConfig {
        self.connections = connections;
        self
    }
}

/// Why a pool could not be made.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PoolError {
    #[error(
        "a pool of {given} connections: accepted is 1 to {MAX_POOL_CONNECTIONS} (MAX_POOL_CONNECTIONS)"
    )]
    Size { given: usize },
    #[error(transparent)]
    Connect(#[from] CallError),
}

struct Member {
    client: TcpClient,
    /// Calls handed to this member and not yet ended.
    in_flight: AtomicUsize,
}

struct Inner {
    members: Box<[Member]>,
    /// Where the search for the least busy member starts, rotated per call
    /// so ties spread instead of piling on the first member.
    next: AtomicUsize,
    addr: String,
}

/// A client of one server over a pool of connections. Clone it freely:
/// clones share the connections, so tasks that each hold a clone spread
/// their calls over the same pool. Implements [`Transport`], so a generated
/// stub runs on it (`GreeterClient::new(pool.clone())`, or
/// `GreeterClient::connect(addr)`).
#[derive(Clone)]
pub struct PooledClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PooledClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledClient")
            .field("addr", &self.inner.addr)
            .field("connections", &self.inner.members.len())
            .finish_non_exhaustive()
    }
}

impl PooledClient {
    /// Opens [`DEFAULT_POOL_CONNECTIONS`] connections to `addr` now, so a
    /// wrong address is reported here. Must run inside a tokio runtime.
    pub async fn connect(addr: &str) -> Result<PooledClient, PoolError> {
        PooledClient::connect_with(addr, PoolConfig::default()).await
    }

    pub async fn connect_with(addr: &str, cfg: PoolConfig) -> Result<PooledClient, PoolError> {
        PooledClient::connect_as(addr, cfg, Credentials::default()).await
    }

    /// Every connection of the pool is TLS, as [`TcpClient::connect_tls`].
    pub async fn connect_tls(
        addr: &str,
        tls: ClientTls,
        cfg: PoolConfig,
    ) -> Result<PooledClient, PoolError> {
        PooledClient::connect_as(addr, cfg, Credentials::default().with_tls(tls)).await
    }

    /// Every connection presents `credentials`, as
    /// [`TcpClient::connect_as`].
    pub async fn connect_as(
        addr: &str,
        cfg: PoolConfig,
        credentials: Credentials,
    ) -> Result<PooledClient, PoolError> {
        if cfg.connections == 0 || cfg.connections > MAX_POOL_CONNECTIONS {
            return Err(PoolError::Size {
                given: cfg.connections,
            });
        }
        let mut members = Vec::with_capacity(cfg.connections);
        for _ in 0..cfg.connections {
            let client = TcpClient::connect_as(addr, cfg.client, credentials.clone()).await?;
            members.push(Member {
                client,
                in_flight: AtomicUsize::new(0),
            });
        }
        Ok(PooledClient {
            inner: Arc::new(Inner {
                members: members.into_boxed_slice(),
                next: AtomicUsize::new(0),
                addr: addr.to_owned(),
            }),
        })
    }

    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// How many connections (client sessions) the pool holds.
    pub fn connections(&self) -> usize {
        self.inner.members.len()
    }

    /// Calls in flight on each connection, in member order: what the pool
    /// balances on.
    pub fn in_flight(&self) -> Vec<usize> {
        self.inner
            .members
            .iter()
            .map(|m| m.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    /// The connections themselves, in member order (e.g. for each one's
    /// [`TcpClient::reported_load`]).
    pub fn members(&self) -> impl Iterator<Item = &TcpClient> {
        self.inner.members.iter().map(|m| &m.client)
    }

    /// As [`TcpClient::describe`], on the least busy connection.
    pub async fn describe(&self, timeout: Nanos) -> Result<ServiceDescription, CallError> {
        let member = self.pick();
        member.client.describe(timeout).await
    }

    /// As [`TcpClient::call_json`], on the least busy connection.
    pub async fn call_json(
        &self,
        method: u16,
        idempotent: bool,
        args: &serde_json::Value,
        options: CallOptions,
    ) -> Result<serde_json::Value, CallError> {
        let member = self.pick();
        let _busy = Busy::enter(member);
        member
            .client
            .call_json(method, idempotent, args, options)
            .await
    }

    /// The member with the fewest calls in flight, searching from a
    /// rotating start so equal members take turns.
    fn pick(&self) -> &Member {
        let members = &self.inner.members;
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed) % members.len();
        let mut best = &members[start];
        let mut best_load = best.in_flight.load(Ordering::Relaxed);
        for offset in 1..members.len() {
            if best_load == 0 {
                break;
            }
            let m = &members[(start + offset) % members.len()];
            let load = m.in_flight.load(Ordering::Relaxed);
            if load < best_load {
                best = m;
                best_load = load;
            }
        }
        best
    }
}

/// Counts a call in flight on a member until it ends or its caller drops
/// it (a cancelled call no longer loads the connection it was on).
struct Busy<'a>(&'a Member);

impl<'a> Busy<'a> {
    fn enter(member: &'a Member) -> Busy<'a> {
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(member)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Transport for PooledClient {
    fn call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let member = self.pick();
        let busy = Busy::enter(member);
        Box::pin(async move {
            let _busy = busy;
            member.client.call(method, args, options).await
        })
    }
}
