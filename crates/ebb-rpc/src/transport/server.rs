//! The TCP server runtime: [`Server`], its bounds and its builders. The
//! parts: the accept loop (`accept`), what all connections share (`core`:
//! one [`ServerSession`], the sans-IO call semantics, since a client that
//! reconnects must find its saved replies on the new connection), one
//! connection's read loop (`conn`), and the running of admitted calls
//! (`calls`).
//!
//! The session decides everything: whether to accept a connection, and per
//! frame whether to run, answer from memory, wait for the running copy,
//! refuse or drop; it names the connection each reply goes to. These
//! modules only move bytes: they ask, obey, and catch a panicking method so
//! the session can record it.

use std::sync::{Arc, Mutex};

use ebb_core::Rng;
use tokio::net::TcpListener;

use super::TransportError;
use super::clock::RuntimeClock;
use super::frames;
use super::tls::ServerTls;
use super::workers::{self, Workers};
use crate::fast_map::FastMap;
use crate::semantics::server::random_incarnation;
use crate::semantics::{ServerConfig, ServerSession};
use crate::service::ServiceDispatch;
use crate::wire::{FrameCodec, encode_payload};
use shared::{Core, Shared};

mod accept;
mod calls;
mod conn;
mod early;
mod json;
mod refuse;
mod replies;
mod running;
mod shared;

pub use refuse::MAX_TLS_REFUSALS_IN_FLIGHT;

pub use crate::semantics::{MAX_CLIENTS_PER_CONN, MAX_CONNECTIONS, MAX_IN_FLIGHT_PER_CONN};

/// Reply bytes one read may gather before they are shipped mid-batch, so
/// the client works on the first replies while the rest run. 64 KiB: at
/// 6400 B (about 64 small replies) every reply of 16 KiB was a write of its
/// own; four to a write took the server's CPU per call at 16 KiB, 128
/// outstanding from 10.6 to 8.8 µs (1 KiB: 1.8 to 1.5 µs) with no change
/// at 64 B, where a read's replies rarely reach either size.
const REPLY_CHUNK_BYTES: usize = 64 * 1024;
/// Read buffer growth step per connection.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Shortest interval between sweeps of expired sessions.
const MIN_SWEEP_INTERVAL_MS: u64 = 10;
/// JSON arguments larger than this are converted (parsed, turned into the
/// method's arguments, the reply turned back into JSON text) on a worker
/// thread, as a `#[blocking]` method runs. Converting megabytes of JSON
/// keeps a core busy for seconds on a loaded machine; on the I/O loop that
/// would hold up every frame of the connection behind it, pongs included,
/// and the client would declare the server unresponsive. Smaller ones stay
/// inline, where a call that finishes at once needs no hand-over at all.
pub const MAX_INLINE_JSON_BYTES: usize = 64 * 1024;

/// A bound server, ready to [`run`](Server::run).
pub struct Server<D> {
    listener: TcpListener,
    core: Arc<Core<D>>,
}

impl<D: ServiceDispatch> Server<D> {
    /// Binds `addr` (port 0 picks a free port) with an accept queue of
    /// [`LISTEN_BACKLOG_CONNECTIONS`](super::listen::LISTEN_BACKLOG_CONNECTIONS).
    pub async fn bind(addr: &str, dispatch: D) -> Result<Server<D>, TransportError> {
        Server::bind_with(addr, dispatch, ServerConfig::default()).await
    }

    pub async fn bind_with(
        addr: &str,
        dispatch: D,
        config: ServerConfig,
    ) -> Result<Server<D>, TransportError> {
        let listener = super::listen::bind(addr)
            .await
            .map_err(|source| TransportError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Server::from_listener(listener, dispatch, config))
    }

    /// Serves on a socket that is already bound and listening: one handed
    /// over by a parent process (socket activation) or bound by a provider
    /// that must know the node's address before the node runs. Must be
    /// called inside a tokio runtime.
    pub fn from_std(
        listener: std::net::TcpListener,
        dispatch: D,
        config: ServerConfig,
    ) -> Result<Server<D>, TransportError> {
        let addr = listener
            .local_addr()
            .map_or_else(|_| "an inherited socket".to_owned(), |a| a.to_string());
        let adopt = |source| TransportError::Bind { addr, source };
        let listener = match listener.set_nonblocking(true) {
            Ok(()) => TcpListener::from_std(listener).map_err(adopt)?,
            Err(e) => return Err(adopt(e)),
        };
        Ok(Server::from_listener(listener, dispatch, config))
    }

    fn from_listener(listener: TcpListener, dispatch: D, config: ServerConfig) -> Server<D> {
        // Random per process, so a restarted server never reuses one.
        let incarnation = random_incarnation(&mut Rng::seeded(frames::os_random_u64()));
        let mut session = ServerSession::new(incarnation, config);
        // A description that does not encode leaves `Describe` answered
        // empty, which a caller reports as undecodable; nothing else breaks.
        if let Ok(description) = encode_payload(&dispatch.description()) {
            session.set_description(description);
        }
        Server {
            listener,
            core: Arc::new(Core {
                dispatch,
                incarnation: session.incarnation(),
                shared: Mutex::new(Shared {
                    session,
                    outs: FastMap::default(),
                }),
                clock: RuntimeClock::new(),
                codec: FrameCodec::default(),
                workers: Workers::new(workers::default_threads()),
                tls: None,
                tls_refusals: refuse::TlsRefusals::default(),
            }),
        }
    }

    /// Runs methods marked `#[blocking]` on `threads` worker threads
    /// (default: one per available core), so at most that many run at once
    /// and none of them holds up the I/O loop. The node's CPU capacity.
    pub fn with_threads(mut self, threads: std::num::NonZeroUsize) -> Server<D> {
        let core = Arc::get_mut(&mut self.core)
            .expect("the core is shared only once the server runs, which consumes it");
        core.workers = Workers::new(threads);
        self
    }

    /// Serves every connection over TLS (mutual TLS if `tls` requires
    /// client certificates). A peer that does not complete the handshake
    /// within `TLS_HANDSHAKE_TIMEOUT_MS` is dropped.
    pub fn with_tls(mut self, tls: ServerTls) -> Server<D> {
        let core = Arc::get_mut(&mut self.core)
            .expect("the core is shared only once the server runs, which consumes it");
        core.tls = Some(tls);
        self
    }

    /// Requires every connection to present one of `tokens` in its
    /// handshake: calls on a connection without one are refused
    /// `Unauthorized` and do not run.
    pub fn with_tokens(self, tokens: crate::auth::Tokens) -> Server<D> {
        self.core.lock().session.set_tokens(Some(tokens));
        self
    }

    /// Lets a client whose handshake was accepted set the number of worker
    /// threads while the server runs (a `Resize`: the node scaled up or
    /// down in place), up to [`workers::MAX_WORKER_THREADS`]. A node
    /// serves so (`ebb::node`); without it a `Resize` is answered that this
    /// server does not resize.
    pub fn resizable(self) -> Server<D> {
        let most = u32::try_from(workers::MAX_WORKER_THREADS)
            .ok()
            .and_then(std::num::NonZeroU32::new);
        self.core.lock().session.set_resize_up_to(most);
        self
    }

    /// The worker threads for blocking methods (see [`Server::with_threads`]).
    pub fn threads(&self) -> std::num::NonZeroUsize {
        self.core.workers.threads()
    }

    /// A handle to this server's worker threads (after
    /// [`Server::with_threads`], which replaces them), for another front of
    /// the same service on the same runtime: the HTTP side of `ebb node
    /// --http` runs its blocking methods on them, so the node's capacity
    /// bounds both protocols together and a `Resize` changes it for both.
    pub fn workers(&self) -> Workers {
        self.core.workers.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// This server process's incarnation: replies carry it so clients can
    /// tell a restarted server (which lost its state) from the same one.
    pub fn incarnation(&self) -> u64 {
        self.core.incarnation.get()
    }

    /// Calls executing now (the load replies report).
    pub fn load(&self) -> usize {
        self.core.lock().session.executing()
    }

    /// Reads the session's decision counts (refusals by cause among them)
    /// while the server runs, after [`Server::run`] has taken it: what a
    /// gateway exports as metrics of its RPC ingress.
    pub fn stats_reader(
        &self,
    ) -> impl Fn() -> crate::semantics::ServerStats + Send + Sync + 'static + use<D> {
        let core = Arc::clone(&self.core);
        move || core.lock().session.stats()
    }
}
