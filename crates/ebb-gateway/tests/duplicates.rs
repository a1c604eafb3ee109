//! A client's retransmits of an at-most-once call through the gateway: the
//! call runs once, and `/metrics` counts the retransmits the RPC ingress
//! absorbed, under stable outcome labels.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_gateway::{Gateway, GatewayConfig, ServiceSource};
use ebb_node::thread::ThreadProvider;
use ebb_rpc::semantics::ClientConfig;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{TcpClient, TcpClientConfig};

static METHODS: [MethodInfo; 1] = [MethodInfo {
    service: "Gate",
    id: 0,
    name: "pass",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
}];

/// Polls of `/metrics` while waiting for a retransmit, [`POLL`] apart:
/// sixty seconds at least, so a loaded machine is not taken for a broken
/// test.
const POLLS: u32 = 6_000;
const POLL: Duration = Duration::from_millis(10);

/// `pass` waits until the test opens the gate; counts its executions.
#[derive(Clone)]
struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    ran: Arc<AtomicUsize>,
}

impl ServiceDispatch for Gate {
    fn name(&self) -> &'static str {
        "Gate"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        let mut open = self.open.subscribe();
        Box::pin(async move {
            self.ran.fetch_add(1, Ordering::SeqCst);
            let _ = open.wait_for(|o| *o).await;
            Ok(Bytes::new())
        })
    }
}

/// The value of the `/metrics` series `series` (name and labels).
fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn duplicates(outcome: &str) -> String {
    format!("ebb_gateway_duplicates_total{{outcome=\"{outcome}\"}}")
}

/// A client that resends an unanswered call every few milliseconds: while
/// the call runs on the node, each resend joins it at the gateway (none
/// reaches a node), the call runs once, its one reply answers the client,
/// and `ebb_gateway_duplicates_total{outcome="joined"}` counts the
/// resends; the other outcomes are exported from the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_retransmits_join_the_running_call_and_are_counted() {
    let gate = Gate {
        open: tokio::sync::watch::channel(false).0,
        ran: Arc::new(AtomicUsize::new(0)),
    };
    let node = gate.clone();
    let provider = ThreadProvider::new(move || node.clone());
    let cfg = GatewayConfig {
        rpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        ..GatewayConfig::default()
    };
    let noop: ebb_gateway::pool::OnChange = Arc::new(|_| {});
    let gateway = Gateway::start(
        cfg,
        ServiceSource::Describe { expect: None },
        Box::new(provider),
        None,
        noop,
    )
    .await
    .unwrap();
    let shared = Arc::clone(gateway.shared());
    let metrics = move || shared.render_metrics().unwrap();
    let text = metrics();
    for outcome in ["saved_reply", "joined", "too_old"] {
        assert_eq!(value(&text, &duplicates(outcome)), 0, "{outcome}");
    }

    let eager = TcpClientConfig {
        session: ClientConfig {
            retransmit_after: Nanos::from_millis(5),
            max_retransmit_interval: Nanos::from_millis(20),
            ..TcpClientConfig::default().session
        },
        ..TcpClientConfig::default()
    };
    let addr = gateway.rpc_addr().to_string();
    let client = TcpClient::connect_with(&addr, eager).await.unwrap();
    let options = CallOptions::default().with_timeout(Nanos::from_secs(120));
    let call = tokio::spawn(async move { client.call(&METHODS[0], Bytes::new(), options).await });
    let mut joined = 0;
    for _ in 0..POLLS {
        joined = value(&metrics(), &duplicates("joined"));
        if joined >= 2 && gate.ran.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    assert!(
        joined >= 2,
        "the client's resends never reached the gateway"
    );
    gate.open.send_replace(true);
    assert_eq!(call.await.unwrap(), Ok(Bytes::new()));
    assert_eq!(gate.ran.load(Ordering::SeqCst), 1, "the call ran once");
    let text = metrics();
    assert!(value(&text, &duplicates("joined")) >= joined);
    let answered = "ebb_gateway_requests_total{method=\"Gate.pass\",outcome=\"ok\"}";
    assert_eq!(value(&text, answered), 1, "forwarded once");
    gateway.shutdown().await;
}
