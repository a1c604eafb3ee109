//! What the gateway's integration tests share: a registry of nodes the test
//! makes itself (no provider behind them), the forwarder over it, a
//! bounded wait for a condition another task brings about, a node that
//! never answers and reports what the test sets, the smallest service a
//! real node can serve, and real nodes that hold the calls a test picks,
//! joined to the registry over real connections, and a whole gateway over
//! a provider with a channel of its pool's node changes.
//!
//! A test file uses it with `mod common;`; each uses only part of it, so
//! the parts another file needs are not dead code.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::Forwarder;
use ebb_gateway::metrics::Metrics;
use ebb_gateway::registry::{Acquired, NewNode, Registry, Slot};
use ebb_node::provider::NodeKind;
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::CallError;
use ebb_rpc::semantics::{CallKey, Caller, ConnId};
use ebb_rpc::service::{
    BoxFuture, CallContext, CallOptions, DeferredReply, DispatchError, MethodInfo, ReplySink,
    ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use ebb_rpc::wire::{Outcome, Seq};

/// A node whose calls never end: registry and admission tests decide from
/// its reports alone, which the test sets (or none at all).
pub struct Silent {
    /// The calls it says it executes, changeable while it is in the pool.
    pub executing: Arc<AtomicU32>,
    /// The service time it says it measured; `None`: it reports nothing.
    service_time: Option<Nanos>,
}

impl Silent {
    /// A node that reports nothing.
    pub fn idle() -> Silent {
        Silent {
            executing: Arc::new(AtomicU32::new(0)),
            service_time: None,
        }
    }

    /// A node that reports `executing` calls running and `service_time`
    /// per call.
    pub fn reporting(executing: u32, service_time: Nanos) -> Silent {
        Silent {
            executing: Arc::new(AtomicU32::new(executing)),
            service_time: Some(service_time),
        }
    }
}

impl Transport for Silent {
    fn call(
        &self,
        _: &'static MethodInfo,
        _: Bytes,
        _: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        Box::pin(std::future::pending())
    }

    fn reported_load(&self) -> Option<u32> {
        self.service_time
            .map(|_| self.executing.load(Ordering::SeqCst))
    }

    fn reported_service_time(&self) -> Option<Nanos> {
        self.service_time
    }
}

/// [`Plain`]'s one method, `ping`, answered with nothing.
pub static PLAIN_METHODS: [MethodInfo; 1] = [MethodInfo {
    service: "Plain",
    id: 0,
    name: "ping",
    idempotent: true,
    blocking: false,
    params: &[],
    returns: "()",
}];

/// A service with one method that does nothing: for tests of how the
/// gateway reaches a node, not of what the node runs.
pub struct Plain;

impl ServiceDispatch for Plain {
    fn name(&self) -> &'static str {
        "Plain"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &PLAIN_METHODS
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async { Ok(Bytes::new()) })
    }
}

/// A real ebb RPC node on loopback: the calls its test's `holds` picks
/// never end, so the test controls what is in flight there; the others
/// answer with the node's name.
pub struct HoldingNode {
    pub addr: SocketAddr,
    /// Held calls running on it now.
    pub holding: Arc<AtomicUsize>,
}

struct Holding {
    answer: &'static str,
    /// The one service `methods` belong to.
    service: &'static str,
    methods: &'static [MethodInfo],
    holds: fn(&str, u16) -> bool,
    holding: Arc<AtomicUsize>,
}

impl ServiceDispatch for Holding {
    fn name(&self) -> &'static str {
        self.service
    }
    fn methods(&self) -> &'static [MethodInfo] {
        self.methods
    }
    fn dispatch(&self, method_id: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            if (self.holds)(self.answer, method_id) {
                self.holding.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            Ok(Bytes::from(self.answer))
        })
    }
}

/// Starts a [`HoldingNode`] named `name` serving `methods` (one service),
/// holding the calls for which `holds(name, method_id)` is true.
pub async fn holding_node(
    name: &'static str,
    methods: &'static [MethodInfo],
    holds: fn(&str, u16) -> bool,
) -> HoldingNode {
    let holding = Arc::new(AtomicUsize::new(0));
    let service = Holding {
        answer: name,
        service: methods[0].service,
        methods,
        holds,
        holding: Arc::clone(&holding),
    };
    let server = Server::bind("127.0.0.1:0", service).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    HoldingNode { addr, holding }
}

/// Node `id` joins as a process node at `addr` and is made ready, reached
/// over a real ebb RPC connection.
pub async fn add_connected(registry: &Registry, id: NodeId, addr: SocketAddr, clock: Clock) {
    registry.add_booting(
        NewNode {
            kind: NodeKind::Process,
            addr,
            ..new_node(id)
        },
        clock.now(),
    );
    let client = TcpClient::connect(&addr.to_string()).await.unwrap();
    assert!(registry.set_ready(id, Arc::new(client), clock.now()));
}

/// A service of two methods, one at-most-once and one idempotent, for
/// tests whose node "a" holds every call ([`hold_node`]).
pub static HOLD_METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Hold",
        id: 0,
        name: "hold",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "String",
    },
    MethodInfo {
        service: "Hold",
        id: 1,
        name: "hold_idempotent",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "String",
    },
];

/// Far beyond a test's run: a call that ends did not end by its deadline.
pub const FAR_DEADLINE: Nanos = Nanos::from_secs(120);

/// A node serving [`HOLD_METHODS`]: node "a" holds every call forever; any
/// other answers with its name.
pub async fn hold_node(name: &'static str) -> HoldingNode {
    holding_node(name, &HOLD_METHODS, |name, _| name == "a").await
}

/// A registry balancing by `jsq` and the forwarder over it, with the clock
/// both read: what a test of calls over real node connections drives.
pub struct HoldGateway {
    pub registry: Registry,
    pub clock: Clock,
    pub forwarder: Arc<Forwarder>,
}

impl HoldGateway {
    pub fn new() -> Self {
        let registry = registry("jsq", AdmissionConfig::default(), 1);
        let clock = Clock::new();
        let forwarder = forwarder(&registry, clock);
        Self {
            registry,
            clock,
            forwarder,
        }
    }

    /// Makes `node` ready behind the gateway as node `id`, over a real
    /// connection.
    pub async fn add(&self, id: u32, node: &HoldingNode) {
        add_connected(&self.registry, NodeId(id), node.addr, self.clock).await;
    }

    /// Starts one call of `method` the RPC ingress's way, with a deadline
    /// far enough never to end it; its answer arrives on what is returned.
    pub fn start(
        &self,
        method: &'static MethodInfo,
    ) -> tokio::sync::mpsc::UnboundedReceiver<(Outcome, Bytes)> {
        let (reply, answers) = deferred(method);
        self.forwarder
            .start(method, Bytes::new(), CallContext::new(FAR_DEADLINE), reply);
        answers
    }

    /// The first node's in-flight count, as the registry sees it.
    pub fn in_flight(&self) -> u32 {
        self.registry.status(self.clock.now())[0].in_flight
    }
}

/// Polls of [`wait_for`] before it gives up, [`WAIT_POLL`] apart (tokio's
/// timer ticks in milliseconds, so no shorter): twenty seconds at least, so
/// a broken test fails instead of hanging, and a loaded machine is not
/// taken for a broken test.
const WAIT_POLLS: u32 = 20_000;
const WAIT_POLL: std::time::Duration = std::time::Duration::from_millis(1);

/// A registry balancing with `policy` (an `ebb_policy::balance::parse`
/// name), admitting by `admission`, its random choices seeded by `seed`.
pub fn registry(policy: &str, admission: AdmissionConfig, seed: u64) -> Registry {
    Registry::new(ebb_policy::balance::parse(policy).unwrap(), admission, seed)
}

/// A thread node at a placeholder address: the registry never dials it,
/// the test hands it the node's client itself.
pub fn new_node(id: NodeId) -> NewNode {
    NewNode {
        id,
        kind: NodeKind::Thread,
        addr: SocketAddr::from(([127, 0, 0, 1], 1)),
        cost_per_sec_micros: 0,
        started_unix_ms: 0,
        expected_boot: Nanos::from_millis(10),
    }
}

/// Node `id` joins as booting: requests may be held for it.
pub fn add_booting(registry: &Registry, id: NodeId, now: Instant) {
    registry.add_booting(new_node(id), now);
}

/// Node `id` joins and is ready at once, reached through `client`.
pub fn add_ready(registry: &Registry, id: NodeId, client: Arc<dyn Transport>, now: Instant) {
    add_booting(registry, id, now);
    assert!(registry.set_ready(id, client, now));
}

/// The forwarder over `registry` with a default retry budget.
pub fn forwarder(registry: &Registry, clock: Clock) -> Arc<Forwarder> {
    forwarder_with_budget(registry, clock, RetryBudgetConfig::default())
}

pub fn forwarder_with_budget(
    registry: &Registry,
    clock: Clock,
    budget: RetryBudgetConfig,
) -> Arc<Forwarder> {
    Arc::new(Forwarder::new(
        registry.clone(),
        clock,
        Metrics::new(),
        budget,
    ))
}

/// The node `acquire` handed out at once, claimed for the call.
pub fn claim_now(acquired: Acquired) -> Slot {
    match acquired {
        Acquired::Now(mut slot) => {
            slot.claim();
            slot
        }
        Acquired::Held(_) => panic!("expected a node at once, the request was held"),
        Acquired::Parked => panic!("expected a node at once, the request was parked"),
        Acquired::Refused { why, .. } => panic!("expected a node at once, refused: {why}"),
    }
}

/// Waits until `cond` holds, polling; panics naming `what` if it never does.
pub async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..WAIT_POLLS {
        if cond() {
            return;
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
    panic!("never: {what}");
}

/// Where a test's deferred replies go: each answer, as the RPC server would
/// record it, on a channel.
pub struct Replies(tokio::sync::mpsc::UnboundedSender<(Outcome, Bytes)>);

impl ReplySink for Replies {
    fn send_reply(&self, _: CallKey, outcome: Outcome, payload: Bytes) {
        let _ = self.0.send((outcome, payload));
    }
}

/// A reply handle for one call of `method`, as the RPC ingress hands
/// [`Forwarder::start`] one, and where its answer arrives.
pub fn deferred(
    method: &MethodInfo,
) -> (
    DeferredReply,
    tokio::sync::mpsc::UnboundedReceiver<(Outcome, Bytes)>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let key = CallKey {
        client: ebb_core::ClientId(1),
        seq: Seq(1),
        method: method.id,
        idempotent: method.idempotent,
        json: false,
        conn: ConnId(1),
        proven: false,
        caller: Caller::Token(0),
    };
    (DeferredReply::new(Arc::new(Replies(tx)), key), rx)
}

/// Starts a gateway over `provider` on loopback ports the system picks,
/// its service as the nodes describe it, with `cfg`'s other settings; the
/// receiver gets every node change the pool reports that `keep` passes, so
/// a test can wait for the ones it is about without sleeping.
pub async fn start_watched(
    cfg: ebb_gateway::GatewayConfig,
    provider: Box<dyn ebb_node::provider::NodeProvider>,
    keep: fn(&ebb_gateway::NodeChange) -> bool,
) -> (
    ebb_gateway::Gateway,
    std::sync::mpsc::Receiver<ebb_gateway::NodeChange>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let on_change: ebb_gateway::pool::OnChange = Arc::new(move |c: &ebb_gateway::NodeChange| {
        if keep(c) {
            // The test stopped listening: nothing left to tell.
            let _ = tx.lock().unwrap().send(c.clone());
        }
    });
    let cfg = ebb_gateway::GatewayConfig {
        rpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        ..cfg
    };
    let gateway = ebb_gateway::Gateway::start(
        cfg,
        ebb_gateway::ServiceSource::Describe { expect: None },
        provider,
        None,
        on_change,
    )
    .await
    .unwrap();
    (gateway, rx)
}
