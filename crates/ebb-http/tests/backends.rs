//! The two backends this crate ships, behind the real router and a real
//! socket: a node's local dispatch and one RPC connection to a node.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ebb_http::{Codecs, DispatchBackend, HttpConfig, RpcBackend, router};
use ebb_rpc::transport::{Server, TcpClient};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Counter {
    #[idempotent]
    async fn echo(&self, msg: String) -> String;
    async fn incr(&self, key: String) -> u64;
    /// Never returns: for deadlines.
    #[idempotent]
    async fn hang(&self) -> u64;
    /// Blocks its thread until another `meet` arrives (at most
    /// `MEET_TIMEOUT`) and returns how many had arrived: two calls both
    /// return 2 only if they ran on two threads at once.
    #[blocking]
    async fn meet(&self) -> u64;
}

/// A bound on `meet`'s wait, so a regression fails instead of hanging.
const MEET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone, Default)]
struct Counters {
    incrs: Arc<AtomicU64>,
    arrived: Arc<(std::sync::Mutex<u64>, std::sync::Condvar)>,
}

impl Counter for Counters {
    async fn echo(&self, msg: String) -> String {
        msg
    }
    async fn incr(&self, _key: String) -> u64 {
        self.incrs.fetch_add(1, Ordering::Relaxed) + 1
    }
    async fn hang(&self) -> u64 {
        std::future::pending().await
    }
    async fn meet(&self) -> u64 {
        let (count, changed) = &*self.arrived;
        let mut n = count.lock().unwrap();
        *n += 1;
        changed.notify_all();
        let (n, _) = changed
            .wait_timeout_while(n, MEET_TIMEOUT, |n| *n < 2)
            .unwrap();
        *n
    }
}

/// Serves `app` on a loopback port with the crate's own `serve`.
async fn serve(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(ebb_http::serve(
        listener,
        app.fallback(ebb_http::not_found),
        16,
    ));
    addr
}

/// One HTTP/1.1 request on a fresh connection; returns status and JSON body.
async fn post(addr: &str, path: &str, body: &str, deadline_ms: Option<u64>) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let deadline = deadline_ms
        .map(|ms| format!("ebb-deadline-ms: {ms}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n{deadline}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status: u16 = response[9..12].parse().unwrap();
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(body).unwrap())
}

async fn check_common_answers(addr: &str) {
    assert_eq!(
        post(addr, "/rpc/Counter/echo", r#"{"msg":"hi"}"#, None).await,
        (200, json!("hi"))
    );
    assert_eq!(
        post(addr, "/rpc/Counter/incr", r#"{"key":"a"}"#, None).await,
        (200, json!(1))
    );
    assert_eq!(
        post(addr, "/rpc/Counter/incr", r#"{"key":"a"}"#, None).await,
        (200, json!(2))
    );

    let (status, body) = post(addr, "/rpc/Nope/echo", "{}", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_service"))
    );
    assert!(
        body["message"].as_str().unwrap().contains("Counter"),
        "{body}"
    );

    let (status, body) = post(addr, "/rpc/Counter/nope", "{}", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_method"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("echo, incr, hang"),
        "{body}"
    );

    let (status, body) = post(addr, "/rpc/Counter/incr", r#"{"key":7}"#, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_arguments"))
    );
    assert!(body["message"].as_str().unwrap().contains("key"), "{body}");

    let (status, body) = post(addr, "/rpc/Counter/echo", r#"{"msg":"hi","extra":1}"#, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("bad_arguments"))
    );

    let (status, body) = post(addr, "/rpc/Counter/hang", "{}", Some(50)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (504, Some("deadline_exceeded"))
    );
    assert_eq!(body["may_have_run"], true);
}

#[tokio::test]
async fn the_dispatch_backend_serves_the_local_service() {
    let service = Counters::default();
    let backend = DispatchBackend::new(CounterServer::new(service.clone()));
    let addr = serve(router(backend, HttpConfig::default())).await;
    check_common_answers(&addr).await;
    assert_eq!(service.incrs.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn the_rpc_backend_forwards_to_a_node_over_tcp() {
    let service = Counters::default();
    let node = Server::bind("127.0.0.1:0", CounterServer::new(service.clone()))
        .await
        .unwrap();
    let node_addr = node.local_addr().unwrap().to_string();
    tokio::spawn(node.run());
    let client = TcpClient::connect(&node_addr).await.unwrap();
    let backend = RpcBackend::new(client, Codecs::new(&[&CounterCodec]));
    let addr = serve(router(backend, HttpConfig::default())).await;
    check_common_answers(&addr).await;
    assert_eq!(service.incrs.load(Ordering::Relaxed), 2);
}

/// On a single-threaded runtime, two blocking calls that wait for each other
/// complete only because the backend hands them to two worker threads.
#[tokio::test]
async fn blocking_methods_run_on_the_worker_threads() {
    let workers =
        ebb_rpc::transport::workers::Workers::new(std::num::NonZeroUsize::new(2).unwrap());
    let backend =
        DispatchBackend::new(CounterServer::new(Counters::default())).with_workers(workers);
    let deadline = ebb_core::Nanos::from_secs(60);
    let (a, b) = tokio::join!(
        ebb_http::JsonBackend::call(&backend, "Counter", "meet", json!({}), deadline),
        ebb_http::JsonBackend::call(&backend, "Counter", "meet", json!({}), deadline),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (json!(2), json!(2)));
}
