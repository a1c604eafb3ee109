//! The gateway's call semantics without sockets: the registry and the
//! forwarder in front of in-process nodes that answer, refuse, lose the
//! connection or hang, as the test scripts them. Where a failed call goes
//! next ([`retries`]), nodes that die or keep failing ([`gone`]), the held
//! queue ([`held`]) and hedging ([`hedging`]); the scripted nodes and the
//! pool they sit in are below.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;
mod gone;
mod hedging;
mod held;
mod retries;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{add_booting, forwarder_with_budget, registry, wait_for};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::{Forwarder, GatewayError};
use ebb_gateway::metrics::Metrics;
use ebb_gateway::registry::{Life, Registry};
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::CallError;
use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo, Transport};

static AT_MOST_ONCE: MethodInfo = MethodInfo {
    service: "T",
    id: 0,
    name: "amo",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
};
static IDEMPOTENT: MethodInfo = MethodInfo {
    service: "T",
    id: 1,
    name: "idem",
    idempotent: true,
    blocking: false,
    params: &[],
    returns: "()",
};

/// What a scripted node does with a call.
#[derive(Clone, Copy, Debug)]
enum Act {
    Answer,
    Refuse,
    LoseConnection,
    /// The connection could not carry the call: it was never sent.
    NeverSent,
    /// The method panics on the node.
    Panic,
    /// Never answers (the node is stuck or dead) before the deadline, and
    /// its transport cannot tell whether the call left.
    Hang,
    /// Waits unsent (its connection is down) until the caller abandons
    /// the node's calls, then says it never left.
    Queued,
    /// Refuses this call unrun (the node is at its in-flight bound), then
    /// answers every later one.
    RefuseOnce,
    /// Answers once the test opens the node's gate.
    Gated,
}

struct Node {
    act: Mutex<Act>,
    calls: AtomicUsize,
    name: &'static str,
    abandoned: tokio::sync::watch::Sender<bool>,
    gate: tokio::sync::watch::Sender<bool>,
}

impl Transport for Node {
    fn call(
        &self,
        _method: &'static MethodInfo,
        _args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let act = {
            let mut act = self.act.lock().unwrap();
            let now = *act;
            if matches!(now, Act::RefuseOnce) {
                *act = Act::Answer;
            }
            now
        };
        Box::pin(async move {
            match act {
                Act::Answer => Ok(Bytes::from(self.name)),
                Act::Gated => {
                    let mut gate = self.gate.subscribe();
                    let _ = gate.wait_for(|open| *open).await;
                    Ok(Bytes::from(self.name))
                }
                Act::Refuse | Act::RefuseOnce => Err(CallError::Refused {
                    reason: ebb_rpc::wire::Refusal::InFlight,
                    message: "full".into(),
                }),
                Act::LoseConnection => Err(CallError::ConnectionLost {
                    sent: true,
                    cause: "reset".into(),
                }),
                Act::NeverSent => Err(CallError::ConnectionLost {
                    sent: false,
                    cause: "connection refused".into(),
                }),
                Act::Panic => Err(CallError::Panicked {
                    message: "boom".into(),
                }),
                // Like a real client, it ends by the call's deadline.
                Act::Hang => {
                    tokio::time::sleep(std::time::Duration::from(options.timeout)).await;
                    Err(CallError::DeadlineExceeded {
                        elapsed: options.timeout,
                        sent: true,
                    })
                }
                Act::Queued => {
                    let mut abandoned = self.abandoned.subscribe();
                    let _ = abandoned.wait_for(|a| *a).await;
                    Err(CallError::ConnectionLost {
                        sent: false,
                        cause: "abandoned before it was sent".into(),
                    })
                }
            }
        })
    }

    fn abandon_calls(&self, _cause: &str) {
        self.abandoned.send_replace(true);
    }
}

struct Pool {
    registry: Registry,
    forwarder: Arc<Forwarder>,
    clock: Clock,
    nodes: Vec<Arc<Node>>,
}

fn node(name: &'static str, act: Act) -> Arc<Node> {
    Arc::new(Node {
        act: Mutex::new(act),
        calls: AtomicUsize::new(0),
        name,
        abandoned: tokio::sync::watch::channel(false).0,
        gate: tokio::sync::watch::channel(false).0,
    })
}

/// Ready nodes behind round-robin, in the order given.
fn pool(nodes: Vec<Arc<Node>>, budget: RetryBudgetConfig) -> Pool {
    let registry = registry("rr", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    for (i, n) in nodes.iter().enumerate() {
        let id = NodeId(i as u32 + 1);
        add_booting(&registry, id, clock.now());
        assert!(registry.set_ready(id, n.clone(), clock.now()));
    }
    registry.set_target(nodes.len(), Nanos::from_millis(10));
    let forwarder = forwarder_with_budget(&registry, clock, budget);
    Pool {
        registry,
        forwarder,
        clock,
        nodes,
    }
}

fn calls(p: &Pool) -> Vec<usize> {
    p.nodes
        .iter()
        .map(|n| n.calls.load(Ordering::SeqCst))
        .collect()
}

const SECOND: Nanos = Nanos::from_secs(1);
const TEN_SECONDS: Nanos = Nanos::from_secs(10);

/// Nodes "a" and "b" doing `a` and `b`, behind the default retry budget.
fn two(a: Act, b: Act) -> Pool {
    pool(
        vec![node("a", a), node("b", b)],
        RetryBudgetConfig::default(),
    )
}

/// A retry budget that allows no retry at all.
fn no_retry_budget() -> RetryBudgetConfig {
    RetryBudgetConfig {
        ratio: 0.0,
        floor_per_sec: 0,
        window: SECOND,
    }
}

impl Pool {
    /// One call, with empty arguments, through the pool's forwarder.
    async fn call(
        &self,
        method: &'static MethodInfo,
        deadline: Nanos,
    ) -> Result<Bytes, GatewayError> {
        self.forwarder.call(method, Bytes::new(), deadline).await
    }
}

/// The same call in a task of its own, for a test that acts while it runs.
fn spawn_call(
    forwarder: &Arc<Forwarder>,
    method: &'static MethodInfo,
    deadline: Nanos,
) -> tokio::task::JoinHandle<Result<Bytes, GatewayError>> {
    let f = Arc::clone(forwarder);
    tokio::spawn(async move { f.call(method, Bytes::new(), deadline).await })
}
