//! `ebb::blocking`: calls from threads that run no async runtime, with the
//! async client's semantics (at-most-once calls run once) and errors.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ebb::blocking::{BlockingClient, BlockingError};
use ebb::rpc::CallError;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::Server;
use ebb_core::Nanos;

#[ebb::service]
pub trait Counter {
    #[idempotent]
    async fn echo(&self, msg: String) -> String;
    /// At-most-once: each call adds one.
    async fn bump(&self) -> u64;
    #[idempotent]
    async fn slow(&self, millis: u64) -> u64;
}

#[derive(Default)]
struct Count(AtomicU64);

impl Counter for Count {
    async fn echo(&self, msg: String) -> String {
        msg
    }
    async fn bump(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) + 1
    }
    async fn slow(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

/// Serves a fresh counter on a thread of its own; returns its address.
fn server() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = Server::bind("127.0.0.1:0", CounterServer::new(Count::default()))
                .await
                .unwrap();
            tx.send(server.local_addr().unwrap().to_string()).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[test]
fn a_plain_thread_calls_like_a_local_function() {
    let client = BlockingClient::connect(&server()).unwrap();
    let counter = CounterClient::new(client.transport());
    assert_eq!(client.wait(counter.echo("hi".into())).unwrap(), "hi");
    assert_eq!(client.wait(counter.bump()).unwrap(), 1);
    assert_eq!(client.wait(counter.bump()).unwrap(), 2);
}

#[test]
fn threads_share_one_client_and_every_call_runs_once() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 25;
    let client = BlockingClient::connect(&server()).unwrap();
    let counter = CounterClient::new(client.transport());
    let seen: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    (0..CALLS)
                        .map(|_| client.wait(counter.bump()).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let distinct: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        distinct.len() as u64,
        THREADS * CALLS,
        "a value came back twice"
    );
    assert_eq!(distinct, (1..=THREADS * CALLS).collect());
}

#[test]
fn errors_are_the_async_clients() {
    let client = BlockingClient::connect(&server()).unwrap();
    let hasty = CounterClient::new(client.transport())
        .with_options(CallOptions::default().with_timeout(Nanos::from_millis(50)));
    let e = client.wait(hasty.slow(5_000)).unwrap_err();
    assert!(matches!(e, CallError::DeadlineExceeded { .. }), "{e:?}");

    // A port nothing listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    match BlockingClient::connect(&addr.to_string()) {
        Err(BlockingError::Connect(e)) => {
            assert!(e.to_string().contains(&addr.to_string()), "{e}")
        }
        Err(e) => panic!("expected a connection error, got {e}"),
        Ok(_) => panic!("connected to a closed port"),
    }
}

#[test]
#[should_panic(expected = "inside an async runtime")]
fn waiting_inside_a_runtime_is_refused_by_name() {
    let client = BlockingClient::connect(&server()).unwrap();
    let counter = CounterClient::new(client.transport());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async { client.wait(counter.echo("x".into())) })
        .unwrap();
}
