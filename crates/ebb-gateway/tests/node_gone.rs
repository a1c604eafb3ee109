//! A node declared gone with calls in flight on a real ebb RPC connection:
//! the node's transport ends them at once (`Registry::set_gone` abandons
//! its calls), so an at-most-once call ends `OutcomeUnknown` and an
//! idempotent one goes to another node, long before their deadlines.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::{Forwarder, GatewayError};
use ebb_gateway::metrics::Metrics;
use ebb_gateway::registry::{NewNode, Registry};
use ebb_node::provider::NodeKind;
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::service::{BoxFuture, DispatchError, MethodInfo, ServiceDispatch};
use ebb_rpc::transport::{Server, TcpClient};

static METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Hold",
        id: 0,
        name: "hold",
        idempotent: false,
        blocking: false,
        params: &[],
        returns: "()",
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

/// Far beyond the test's run: a call that ends did not end by its deadline.
const DEADLINE: Nanos = Nanos::from_secs(120);

/// Node "a" holds every call forever; any other answers with its name.
struct Hold {
    name: &'static str,
    holding: Arc<AtomicUsize>,
}

impl ServiceDispatch for Hold {
    fn name(&self) -> &'static str {
        "Hold"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            if self.name == "a" {
                self.holding.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            Ok(Bytes::from(self.name))
        })
    }
}

struct Node {
    addr: SocketAddr,
    /// Calls running on it now.
    holding: Arc<AtomicUsize>,
}

async fn node(name: &'static str) -> Node {
    let holding = Arc::new(AtomicUsize::new(0));
    let hold = Hold {
        name,
        holding: Arc::clone(&holding),
    };
    let server = Server::bind("127.0.0.1:0", hold).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    Node { addr, holding }
}

async fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_micros(100)).await;
    }
    panic!("condition never held");
}

struct Gateway {
    registry: Registry,
    clock: Clock,
    forwarder: Arc<Forwarder>,
}

fn gateway() -> Gateway {
    let registry = Registry::new(
        ebb_policy::balance::parse("jsq").unwrap(),
        AdmissionConfig::default(),
        1,
    );
    let clock = Clock::new();
    let forwarder = Arc::new(Forwarder::new(
        registry.clone(),
        clock,
        Metrics::new(),
        RetryBudgetConfig::default(),
    ));
    Gateway {
        registry,
        clock,
        forwarder,
    }
}

impl Gateway {
    /// Makes `node` ready behind the gateway, over a real connection.
    async fn add(&self, id: u32, node: &Node) {
        let id = NodeId(id);
        self.registry.add_booting(
            NewNode {
                id,
                kind: NodeKind::Process,
                addr: node.addr,
                cost_per_sec_micros: 0,
                started_unix_ms: 0,
                expected_boot: Nanos::from_millis(10),
            },
            self.clock.now(),
        );
        let client = TcpClient::connect(&node.addr.to_string()).await.unwrap();
        assert!(
            self.registry
                .set_ready(id, Arc::new(client), self.clock.now())
        );
    }
}

#[tokio::test]
async fn an_at_most_once_call_on_a_node_declared_gone_ends_outcome_unknown_at_once() {
    let a = node("a").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call =
        tokio::spawn(async move { forwarder.call(&METHODS[0], Bytes::new(), DEADLINE).await });
    // The node runs it: the call was sent and may have run.
    wait_for(|| a.holding.load(Ordering::SeqCst) == 1).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    let outcome = call.await.unwrap();
    assert_eq!(
        outcome,
        Err(GatewayError::OutcomeUnknown { node: NodeId(1) }),
        "ended by the node's loss, not by its deadline"
    );
    assert_eq!(a.holding.load(Ordering::SeqCst), 1, "it ran once");
}

#[tokio::test]
async fn an_idempotent_call_on_a_node_declared_gone_goes_to_another_node() {
    let a = node("a").await;
    let b = node("b").await;
    let gw = gateway();
    gw.add(1, &a).await;
    let forwarder = Arc::clone(&gw.forwarder);
    let call =
        tokio::spawn(async move { forwarder.call(&METHODS[1], Bytes::new(), DEADLINE).await });
    wait_for(|| a.holding.load(Ordering::SeqCst) == 1).await;
    gw.add(2, &b).await;
    gw.registry.set_gone(NodeId(1), "killed", gw.clock.now());
    assert_eq!(call.await.unwrap(), Ok(Bytes::from("b")));
    assert_eq!(gw.forwarder.registry().tick().retries, 1, "one retry");
}
