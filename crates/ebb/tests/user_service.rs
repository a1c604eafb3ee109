//! A service declared the way a user of the `ebb` crate declares one: only
//! `ebb` in scope, `#[ebb::service]` with no arguments.

#![allow(clippy::unwrap_used)]

use ebb::rpc::service::{CallOptions, LocalTransport, ServiceCodec, call_json};

#[ebb::service]
pub trait Greeter {
    /// Greets `name`.
    #[idempotent]
    async fn hello(&self, name: String) -> String;
    async fn count(&self) -> u32;
}

struct English;

impl Greeter for English {
    async fn hello(&self, name: String) -> String {
        format!("hello, {name}")
    }
    async fn count(&self) -> u32 {
        7
    }
}

#[tokio::test]
async fn a_user_service_works_through_the_ebb_crate_alone() {
    let transport = LocalTransport::new(GreeterServer::new(English));
    let client = GreeterClient::new(&transport);
    assert_eq!(client.hello("ann".into()).await.unwrap(), "hello, ann");
    assert_eq!(client.count().await.unwrap(), 7);
    let v = call_json(
        &GreeterCodec,
        &transport,
        "hello",
        serde_json::json!({"name": "bo"}),
        CallOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(v, serde_json::json!("hello, bo"));
    assert_eq!(GreeterCodec.methods().len(), 2);
}

#[tokio::test]
async fn a_user_stub_connects_over_a_pool_and_its_clones_share_it() {
    let server = ebb::rpc::transport::Server::bind("127.0.0.1:0", GreeterServer::new(English))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    // The generated constructor: a pool of the default size.
    let client = GreeterClient::connect(&addr).await.unwrap();
    assert_eq!(
        client.transport().connections(),
        ebb::rpc::transport::pool::DEFAULT_POOL_CONNECTIONS
    );
    let other = client.clone();
    let task = tokio::spawn(async move { other.hello("bo".into()).await.unwrap() });
    assert_eq!(client.hello("ann".into()).await.unwrap(), "hello, ann");
    assert_eq!(task.await.unwrap(), "hello, bo");
    assert_eq!(client.count().await.unwrap(), 7);
}
