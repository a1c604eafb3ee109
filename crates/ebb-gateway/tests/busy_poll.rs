//! Busy polling wired into a gateway (`GatewayConfig::busy_poll`): a call
//! through a one-thread gateway starts a spin that `/metrics` counts, and
//! the call is answered while the runtime spins; a multi-thread runtime is
//! refused, since another worker would sleep on the driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{PLAIN_METHODS, Plain};
use ebb_core::Nanos;
use ebb_gateway::{Gateway, GatewayConfig, ServiceSource, StartError};
use ebb_node::thread::ThreadProvider;
use ebb_rpc::service::{CallOptions, Transport};
use ebb_rpc::transport::TcpClient;

async fn start(busy_poll: Nanos) -> Result<Gateway, StartError> {
    let cfg = GatewayConfig {
        rpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        busy_poll,
        ..GatewayConfig::default()
    };
    let noop: ebb_gateway::pool::OnChange = Arc::new(|_| {});
    Gateway::start(
        cfg,
        ServiceSource::Describe { expect: None },
        Box::new(ThreadProvider::new(|| Plain)),
        None,
        noop,
    )
    .await
}

/// The value of the `/metrics` series `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

// The default flavour: a current-thread runtime, as `ebb up` builds with
// `gateway.threads = 1`.
#[tokio::test]
async fn a_call_through_a_busy_polling_gateway_is_answered_while_it_spins() {
    // A window no test run reaches: once started, the spin lasts until
    // the gateway stops.
    let gateway = start(Nanos::from_secs(600)).await.unwrap();
    let text = gateway.shared().render_metrics().unwrap();
    assert_eq!(value(&text, "ebb_gateway_busy_poll_spins_total"), 0.0);
    // The call waits for the pool's first node; the spin starts at its
    // arrival and the node's reply comes in while the runtime spins.
    let client = TcpClient::connect(&gateway.rpc_addr().to_string())
        .await
        .unwrap();
    let options = CallOptions::default().with_timeout(Nanos::from_secs(120));
    let answer = client.call(&PLAIN_METHODS[0], Bytes::new(), options).await;
    assert_eq!(answer, Ok(Bytes::new()));
    let text = gateway.shared().render_metrics().unwrap();
    assert_eq!(value(&text, "ebb_gateway_busy_poll_spins_total"), 1.0);
    assert!(value(&text, "ebb_gateway_busy_poll_turns_total") > 0.0);
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_is_refused_on_a_multi_thread_runtime() {
    let Err(e) = start(Nanos::from_millis(1)).await else {
        panic!("a busy-polling gateway started on a multi-thread runtime");
    };
    assert!(matches!(e, StartError::BusyPollNeedsOneThread), "{e}");
}
