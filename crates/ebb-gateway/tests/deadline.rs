//! An RPC caller's own deadline reaches the gateway: admission judges the
//! call by it, and the node is given what is left of it. Real TCP between
//! the caller and the gateway's RPC ingress; an in-process node behind it.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;

use bytes::Bytes;
use common::{add_ready, claim_now, registry, wait_for};
use ebb_core::{Nanos, NodeId};
use ebb_gateway::clock::Clock;
use ebb_gateway::forward::Forwarder;
use ebb_gateway::ingress::RpcIngress;
use ebb_gateway::registry::Registry;
use ebb_gateway::service::Served;
use ebb_policy::admission::AdmissionConfig;
use ebb_rpc::CallError;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceCodec, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use serde_json::Value;

static METHODS: [MethodInfo; 1] = [MethodInfo {
    service: "T",
    id: 0,
    name: "slow",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
}];

/// The method table is all the RPC ingress needs of a codec here; JSON
/// arguments (a method without parameters) become the empty tuple.
struct Codec;

impl ServiceCodec for Codec {
    fn name(&self) -> &'static str {
        "T"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn encode_json_args(&self, _: &MethodInfo, _: Value) -> Result<Bytes, DispatchError> {
        Ok(Bytes::new())
    }
    fn decode_json_reply(&self, _: &MethodInfo, _: &[u8]) -> Result<Value, DispatchError> {
        Err(DispatchError::BadReply("no JSON here".into()))
    }
}

/// A node that never answers, and remembers the timeout each call was
/// given.
#[derive(Default)]
struct Stuck {
    timeouts: Mutex<Vec<Nanos>>,
}

impl Transport for Stuck {
    fn call(
        &self,
        _method: &'static MethodInfo,
        _args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        self.timeouts.lock().unwrap().push(options.timeout);
        Box::pin(std::future::pending())
    }
}

/// One ebb RPC server over `forwarder` whose default deadline (for calls
/// that bring none) is `default_timeout`.
async fn ingress(forwarder: &Arc<Forwarder>, default_timeout: Nanos) -> SocketAddr {
    let ingress = RpcIngress::new(
        Arc::clone(forwarder),
        Served::Typed(&Codec),
        default_timeout,
    );
    let server = Server::bind("127.0.0.1:0", ingress).await.unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run());
    addr
}

/// A pool of one stuck node that has measured a service time of one
/// second, behind a forwarder.
fn pool_with_a_second_of_service() -> (Registry, Arc<Stuck>, Arc<Forwarder>) {
    let registry = registry("jsq", AdmissionConfig::default(), 1);
    let clock = Clock::new();
    let node = Arc::new(Stuck::default());
    let id = NodeId(1);
    add_ready(&registry, id, node.clone(), clock.now());
    registry.set_target(1, Nanos::from_millis(10));
    // One call took a second: that is the measured service time.
    let now = clock.now();
    drop(claim_now(registry.acquire(
        0,
        now + Nanos::from_secs(9),
        now,
        &[],
        true,
        None,
    )));
    registry.release(id, Some(Nanos::from_secs(1)), 0, clock.now());
    let forwarder = common::forwarder(&registry, clock);
    (registry, node, forwarder)
}

/// How a test's caller sends its call: typed, or as JSON over ebb RPC
/// (what `ebb call` sends).
#[derive(Clone, Copy, Debug)]
enum Encoding {
    Typed,
    Json,
}

/// One call of `slow` from `caller` with `options`, its reply dropped.
async fn call(
    caller: &TcpClient,
    encoding: Encoding,
    options: CallOptions,
) -> Result<(), CallError> {
    match encoding {
        Encoding::Typed => caller
            .call(&METHODS[0], Bytes::new(), options)
            .await
            .map(drop),
        Encoding::Json => caller
            .call_json(0, false, &serde_json::json!({}), options)
            .await
            .map(drop),
    }
}

/// Two doors to one pool whose node has measured a second of service:
/// each caller's own deadline, not the door's default, decides whether
/// its call is taken, and the node is given what the caller has left.
async fn the_callers_deadline_decides(encoding: Encoding) {
    let (registry, node, forwarder) = pool_with_a_second_of_service();
    // Two doors to one pool: their defaults would decide the opposite of
    // what each caller's own deadline decides.
    let patient_default = ingress(&forwarder, Nanos::from_secs(60)).await;
    let hasty_default = ingress(&forwarder, Nanos::from_millis(10)).await;

    // A caller with a minute to spare is forwarded through the door whose
    // default would refuse it, and the node gets (at most) the minute.
    let long = Nanos::from_secs(60);
    let caller = TcpClient::connect(&hasty_default.to_string())
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let options = CallOptions::default().with_timeout(long);
        call(&caller, encoding, options).await
    });
    wait_for("the call reached the node", || {
        node.timeouts.lock().unwrap().len() == 1
    })
    .await;
    let given = node.timeouts.lock().unwrap()[0];
    assert!(
        given > Nanos::from_secs(50) && given <= long,
        "{encoding:?}: the node was given {given}, not what the caller had left"
    );
    assert!(!waiting.is_finished());

    // The node now has a second of work in flight: a caller with half a
    // second is refused at once, through the door whose default would
    // have taken it. Half a second, not less: the refusal must reach the
    // caller before its own timer ends the call, and on a loaded machine
    // this process may be descheduled for a good part of a short one.
    let caller = TcpClient::connect(&patient_default.to_string())
        .await
        .unwrap();
    let options = CallOptions::default().with_timeout(Nanos::from_millis(500));
    match call(&caller, encoding, options).await {
        Err(CallError::Overloaded {
            ref message,
            retry_after,
        }) => assert!(
            message.contains("deadline") && retry_after > Nanos::ZERO,
            "{encoding:?}: refused for {message}"
        ),
        other => panic!("{encoding:?}: a call that cannot finish in time got {other:?}"),
    }
    assert_eq!(
        node.timeouts.lock().unwrap().len(),
        1,
        "it reached the node"
    );
    assert_eq!(registry.held(), (0, 0), "it was refused, not held");
    assert_eq!(registry.tick().refusals, 1);
    waiting.abort();
}

#[tokio::test]
async fn the_callers_deadline_decides_admission_and_reaches_the_node() {
    the_callers_deadline_decides(Encoding::Typed).await;
}

/// The same for a JSON request over ebb RPC (what `ebb call` sends): the
/// caller's deadline, not the ingress's default, is what counts.
#[tokio::test]
async fn a_json_calls_own_deadline_decides_admission_and_reaches_the_node() {
    the_callers_deadline_decides(Encoding::Json).await;
}
