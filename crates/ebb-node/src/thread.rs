//! [`ThreadProvider`]: nodes as threads of the provider's own process.
//!
//! A thread node isolates nothing: it shares the address space, the file
//! descriptors and the fate of the process (a panic in a method fails its
//! call, but an abort or a memory blow-up takes every node down). What it
//! buys is the cheapest start there is, so it is the kind for tests, for a
//! laptop, and for the simulator's "boot time ≈ 0" end of the scale.
//!
//! Each node gets its own OS thread running a single-threaded tokio
//! runtime, the same shape as an `ebb node` process, so per-node figures
//! are comparable across kinds. The provider binds the node's socket before
//! the thread starts: the address is known at once and `start` never
//! blocks; `Ready` follows when the thread serves.

use crate::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use ebb_core::{Nanos, NodeId};
use ebb_rpc::auth::Tokens;
use ebb_rpc::semantics::ServerConfig;
use ebb_rpc::service::ServiceDispatch;
use ebb_rpc::transport::{Server, ServerTls, listen};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;

/// Bound on live thread nodes: each holds a thread and a runtime, and the
/// process's descriptor limit is shared by all of them.
pub const MAX_THREAD_NODES: usize = 256;
/// Start time assumed before any start was observed.
const INITIAL_EXPECTED_START_US: u64 = 500;

/// What a thread tells the provider.
enum Report {
    Ready(NodeId),
    Ended(NodeId, String),
}

/// Who a node serves: callers with one of the tokens, over TLS when set.
#[derive(Clone, Default)]
struct Access {
    tokens: Option<Tokens>,
    tls: Option<ServerTls>,
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

/// Starts nodes serving the service `make` builds, one thread each.
pub struct ThreadProvider<F> {
    make: F,
    config: ServerConfig,
    access: Access,
    nodes: HashMap<NodeId, Running>,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    expected: Nanos,
}

impl<F, D> ThreadProvider<F>
where
    F: Fn() -> D,
    D: ServiceDispatch + Send + 'static,
{
    /// Nodes listen on loopback; `make` builds each node's service state
    /// (nodes share nothing unless `make` hands them shared state).
    pub fn new(make: F) -> Self {
        let (reports_tx, reports) = mpsc::channel();
        ThreadProvider {
            make,
            config: ServerConfig::default(),
            access: Access::default(),
            nodes: HashMap::new(),
            reports_tx,
            reports,
            expected: Nanos::from(std::time::Duration::from_micros(INITIAL_EXPECTED_START_US)),
        }
    }

    /// The at-most-once bounds every node's server keeps.
    pub fn with_server_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Every node serves only callers presenting one of `tokens`, as an
    /// `ebb node --token-file` does: a pool's nodes may require the token
    /// whatever their kind.
    pub fn with_tokens(mut self, tokens: Tokens) -> Self {
        self.access.tokens = Some(tokens);
        self
    }

    /// Every node serves over TLS (mutual TLS when `tls` requires client
    /// certificates), as an `ebb node --tls-cert` does.
    pub fn with_tls(mut self, tls: ServerTls) -> Self {
        self.access.tls = Some(tls);
        self
    }

    /// How many nodes are running or starting.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn start_err(reason: impl Into<String>) -> ProviderError {
        ProviderError::Start {
            kind: "thread",
            reason: reason.into(),
        }
    }
}

/// The body of a node's thread: serve until told to stop or the server fails.
fn serve<D: ServiceDispatch + Send + 'static>(
    id: NodeId,
    listener: TcpListener,
    dispatch: D,
    config: ServerConfig,
    access: Access,
    stop: oneshot::Receiver<()>,
    reports: mpsc::Sender<Report>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = reports.send(Report::Ended(id, format!("no async runtime: {e}")));
            return;
        }
    };
    let why = rt.block_on(async {
        let mut server = match Server::from_std(listener, dispatch, config) {
            Ok(s) => s.resizable(),
            Err(e) => return e.to_string(),
        };
        if let Some(tokens) = access.tokens {
            server = server.with_tokens(tokens);
        }
        if let Some(tls) = access.tls {
            server = server.with_tls(tls);
        }
        let _ = reports.send(Report::Ready(id));
        tokio::select! {
            r = server.run() => match r {
                Ok(()) => "the server stopped accepting".to_owned(),
                Err(e) => e.to_string(),
            },
            _ = stop => "stopped".to_owned(),
        }
    });
    // Dropping the runtime here closes the node's connections before the
    // provider hears that it is gone.
    drop(rt);
    let _ = reports.send(Report::Ended(id, why));
}

impl<F, D> NodeProvider for ThreadProvider<F>
where
    F: Fn() -> D + Send,
    D: ServiceDispatch + Send + 'static,
{
    fn kind(&self) -> NodeKind {
        NodeKind::Thread
    }

    fn expected_start(&self) -> Nanos {
        self.expected
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        if self.nodes.contains_key(&id) {
            return Err(Self::start_err(format!("node {} is already running", id.0)));
        }
        if self.nodes.len() >= MAX_THREAD_NODES {
            return Err(Self::start_err(format!(
                "{MAX_THREAD_NODES} thread nodes are running, the most one process holds"
            )));
        }
        let started = Instant::now();
        let listener = listen::bind_addr(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let dispatch = (self.make)();
        let (stop_tx, stop_rx) = oneshot::channel();
        let reports = self.reports_tx.clone();
        let config = self.config;
        let access = self.access.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ebb-node-{}", id.0))
            .spawn(move || serve(id, listener, dispatch, config, access, stop_rx, reports))?;
        self.nodes.insert(
            id,
            Running {
                stop: Some(stop_tx),
                thread: Some(thread),
                started,
            },
        );
        Ok(StartedNode {
            id,
            kind: NodeKind::Thread,
            addr,
        })
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ProviderError::UnknownNode(id))?;
        if let Some(stop) = node.stop.take() {
            let _ = stop.send(());
        }
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        let mut events = Vec::new();
        self.drain_reports(&mut events);
        // A thread that finished without reporting panicked. Its last
        // report, if any, was sent before it finished, so draining again
        // first tells the two apart.
        let finished: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.thread.as_ref().is_some_and(JoinHandle::is_finished))
            .map(|(id, _)| *id)
            .collect();
        if !finished.is_empty() {
            self.drain_reports(&mut events);
            for id in finished {
                if self.nodes.remove(&id).is_some() {
                    events.push(NodeEvent::Gone(id, "the node's thread panicked".into()));
                }
            }
        }
        events
    }
}

impl<F> ThreadProvider<F> {
    fn drain_reports(&mut self, events: &mut Vec<NodeEvent>) {
        while let Ok(report) = self.reports.try_recv() {
            match report {
                Report::Ready(id) => {
                    if let Some(node) = self.nodes.get(&id) {
                        self.expected = Nanos::from(node.started.elapsed());
                    }
                    events.push(NodeEvent::Ready(id));
                }
                Report::Ended(id, why) => {
                    if let Some(mut node) = self.nodes.remove(&id) {
                        if let Some(t) = node.thread.take() {
                            // It sent its last report; the join is immediate.
                            let _ = t.join();
                        }
                    }
                    events.push(NodeEvent::Gone(id, why));
                }
            }
        }
    }
}

impl<F> Drop for ThreadProvider<F> {
    /// Stops every node and waits for its thread, so no node outlives the
    /// provider that reported it.
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(stop) = node.stop.take() {
                let _ = stop.send(());
            }
        }
        for node in self.nodes.values_mut() {
            if let Some(t) = node.thread.take() {
                let _ = t.join();
            }
        }
    }
}
