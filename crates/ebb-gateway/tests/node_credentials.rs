//! The gateway presents its configured credentials to its nodes: a pool
//! of nodes requiring a bearer token becomes ready when the gateway holds
//! the token, and a node that refuses the gateway's credentials is
//! stopped at once with that reason (trying again could not help) rather
//! than left booting until its boot timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::Plain;
use ebb_gateway::{GatewayConfig, Life, NodeChange};
use ebb_node::thread::ThreadProvider;
use ebb_rpc::auth::Tokens;
use ebb_rpc::transport::Credentials;

const TOKEN: &str = "pool-node-9a41";
/// Bound on waiting for the pool's first node to be ready or gone.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a gateway presenting `credentials` to one thread node that
/// requires [`TOKEN`]; returns the node's first change past booting.
async fn first_change(credentials: Credentials) -> NodeChange {
    let tokens = Tokens::parse(TOKEN, std::path::Path::new("node.token")).unwrap();
    let provider = ThreadProvider::new(|| Plain).with_tokens(tokens);
    let cfg = GatewayConfig {
        node_credentials: credentials,
        ..GatewayConfig::default()
    };
    let (gateway, rx) =
        common::start_watched(cfg, Box::new(provider), |c| c.to != Life::Booting).await;
    let change = tokio::task::spawn_blocking(move || rx.recv_timeout(CHANGE_TIMEOUT))
        .await
        .unwrap()
        .expect("the node neither became ready nor went away");
    gateway.shutdown().await;
    change
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_requiring_a_token_are_ready_when_the_gateway_presents_it() {
    let with = Credentials::default().with_token(Bytes::from_static(TOKEN.as_bytes()));
    let change = first_change(with).await;
    assert_eq!(change.to, Life::Ready, "{change}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refusing_the_gateways_credentials_is_stopped_with_that_reason() {
    let change = first_change(Credentials::default()).await;
    assert_eq!(change.to, Life::Gone, "{change}");
    let reason = change.reason.unwrap_or_default();
    assert!(
        reason.contains("refused the gateway's credentials"),
        "{reason}"
    );
}
