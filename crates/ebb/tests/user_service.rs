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
