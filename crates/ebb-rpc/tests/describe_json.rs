//! What a gateway or `ebb call` built without a service relies on: a node
//! describes its service, runs calls whose arguments are JSON through the
//! generated adapter, and reports its load in replies.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::service::CallOptions;
use ebb_rpc::transport::{Server, TcpClient};
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Greeter {
    /// Greets `name`, `times` times.
    #[idempotent]
    async fn hello(&self, name: String, times: Option<u32>) -> String;
    /// Holds until released, so a test can see the node's load.
    async fn hold(&self) -> u32;
}

struct Impl {
    started: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl Greeter for Impl {
    async fn hello(&self, name: String, times: Option<u32>) -> String {
        vec![format!("hello {name}"); times.unwrap_or(1) as usize].join(", ")
    }
    async fn hold(&self) -> u32 {
        self.started.notify_one();
        let _permit = self.release.acquire().await;
        1
    }
}

const TIMEOUT: Nanos = Nanos::from_secs(10);

async fn start() -> (String, Arc<Notify>, Arc<Semaphore>) {
    let started = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let service = GreeterServer::new(Impl {
        started: Arc::clone(&started),
        release: Arc::clone(&release),
    });
    let server = Server::bind("127.0.0.1:0", service).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, started, release)
}

#[tokio::test]
async fn a_node_describes_its_service_with_ids_flags_and_parameters() {
    let (addr, _, _) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let d = client.describe(TIMEOUT).await.unwrap();
    assert_eq!(d.service, "Greeter");
    let hello = d.method("hello").unwrap();
    assert_eq!((hello.id, hello.idempotent), (0, true));
    assert_eq!(
        hello.signature(&d.service),
        "Greeter.hello(name: String, times: Option<u32>) -> String"
    );
    let hold = d.method("hold").unwrap();
    assert_eq!((hold.id, hold.idempotent), (1, false));
}

#[tokio::test]
async fn json_arguments_are_decoded_by_the_node_and_the_reply_is_json() {
    let (addr, _, _) = start().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let d = client.describe(TIMEOUT).await.unwrap();
    let hello = d.method("hello").unwrap();
    let options = CallOptions::default();
    let reply = client
        .call_json(
            hello.id,
            hello.idempotent,
            &json!({"name": "x", "times": 2}),
            options,
        )
        .await
        .unwrap();
    assert_eq!(reply, json!("hello x, hello x"));
    let err = client
        .call_json(hello.id, hello.idempotent, &json!({"nmae": "x"}), options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::BadRequest { message } if message.contains("unknown parameter `nmae`")),
        "{err:?}"
    );
    assert!(!err.may_have_run());
    // An at-most-once method takes JSON too, with its semantics.
    let err = client
        .call_json(9, false, &json!({}), options)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::UnknownMethod { .. }), "{err:?}");
}

#[tokio::test]
async fn replies_report_the_load_of_the_node() {
    let (addr, started, release) = start().await;
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let holder = {
        let client = Arc::clone(&client);
        tokio::spawn(async move { GreeterClient::new(&*client).hold().await })
    };
    started.notified().await;
    let greeter = GreeterClient::new(&*client);
    assert_eq!(greeter.hello("y".into(), None).await.unwrap(), "hello y");
    assert_eq!(
        client.reported_load(),
        Some(1),
        "the hold call was executing when hello's reply left"
    );
    release.add_permits(1);
    assert_eq!(holder.await.unwrap().unwrap(), 1);
    assert_eq!(client.reported_load(), Some(0));
}
