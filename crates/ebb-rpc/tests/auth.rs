//! Bearer tokens over real TCP: a server that requires one refuses a
//! client without it at once, typed, and the call did not run; a client
//! with an accepted token is served, as a single connection and as a pool.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{COUNTING_METHODS as METHODS, Counting};
use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::auth::Tokens;
use ebb_rpc::service::{CallOptions, Transport};
use ebb_rpc::transport::{
    Credentials, PoolConfig, PooledClient, Server, TcpClient, TcpClientConfig,
};
use ebb_rpc::wire::Refusal;

/// Long enough that only a refusal, not a timeout, ends a refused call
/// within the test's own bound.
const CALL_TIMEOUT: Nanos = Nanos::from_secs(30);

async fn start() -> (String, Arc<Counting>) {
    let svc = Arc::new(Counting::default());
    let tokens = Tokens::parse("alpha-1\nbeta-2\n", std::path::Path::new("t")).unwrap();
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc))
        .await
        .unwrap()
        .with_tokens(tokens);
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, svc)
}

fn unauthorized(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Refused {
            reason: Refusal::Unauthorized,
            ..
        }
    )
}

#[tokio::test]
async fn without_an_accepted_token_calls_are_refused_at_once_and_do_not_run() {
    let (addr, svc) = start().await;
    let opts = CallOptions::default().with_timeout(CALL_TIMEOUT);
    for token in [None, Some(Bytes::from_static(b"alpha"))] {
        let creds = Credentials {
            token,
            ..Credentials::default()
        };
        let client = TcpClient::connect_as(&addr, TcpClientConfig::default(), creds)
            .await
            .unwrap();
        for method in &METHODS {
            let e = client
                .call(method, Bytes::from_static(b"x"), opts)
                .await
                .unwrap_err();
            assert!(unauthorized(&e), "{}: {e:?}", method.name);
            assert!(!e.may_have_run(), "{e}");
        }
    }
    assert_eq!(svc.runs(), 0, "nothing ran");
}

#[tokio::test]
async fn with_an_accepted_token_calls_run_on_a_client_and_on_a_pool() {
    let (addr, svc) = start().await;
    let opts = CallOptions::default().with_timeout(CALL_TIMEOUT);
    let creds = Credentials::default().with_token(Bytes::from_static(b"beta-2"));
    let client = TcpClient::connect_as(&addr, TcpClientConfig::default(), creds.clone())
        .await
        .unwrap();
    for method in &METHODS {
        let r = client.call(method, Bytes::from_static(b"x"), opts).await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"x"));
    }
    let pool = PooledClient::connect_as(&addr, PoolConfig::default().with_connections(3), creds)
        .await
        .unwrap();
    for _ in 0..6 {
        let r = pool.call(&METHODS[1], Bytes::from_static(b"y"), opts).await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"y"));
    }
    assert_eq!(svc.runs(), 8);
}

#[tokio::test]
async fn the_service_description_is_given_only_with_an_accepted_token() {
    let (addr, _svc) = start().await;
    for token in [None, Some(Bytes::from_static(b"alpha"))] {
        let creds = Credentials {
            token,
            ..Credentials::default()
        };
        let client = TcpClient::connect_as(&addr, TcpClientConfig::default(), creds)
            .await
            .unwrap();
        // Ends on the handshake's refusal, well before the timeout.
        let e = client.describe(CALL_TIMEOUT).await.unwrap_err();
        assert!(unauthorized(&e), "{e:?}");
    }
    let creds = Credentials::default().with_token(Bytes::from_static(b"alpha-1"));
    let client = TcpClient::connect_as(&addr, TcpClientConfig::default(), creds)
        .await
        .unwrap();
    let d = client.describe(CALL_TIMEOUT).await.unwrap();
    assert_eq!(d.service, "Test");
    assert_eq!(d.methods.len(), 2);
}
