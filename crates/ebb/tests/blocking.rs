//! `ebb::blocking`: calls from threads that run no async runtime, with the
//! async client's semantics (at-most-once calls run once) and errors.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ebb::blocking::{BlockingClient, BlockingError};
use ebb::rpc::CallError;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::{PoolConfig, Server};
use ebb_core::Nanos;

#[ebb::service]
pub trait Counter {
    #[idempotent]
    async fn echo(&self, msg: String) -> String;
    /// At-most-once: each call adds one.
    async fn bump(&self) -> u64;
    #[idempotent]
    async fn slow(&self, millis: u64) -> u64;
    /// At-most-once: waits for the test to open the gate, then adds one.
    async fn gated(&self) -> u64;
}

struct Count {
    n: AtomicU64,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Default for Count {
    /// A gate with no permits: `gated` calls wait until the test adds some.
    fn default() -> Count {
        Count {
            n: AtomicU64::new(0),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl Counter for Count {
    async fn echo(&self, msg: String) -> String {
        msg
    }
    async fn bump(&self) -> u64 {
        self.n.fetch_add(1, Ordering::Relaxed) + 1
    }
    async fn slow(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
    async fn gated(&self) -> u64 {
        // The gate is never closed, so acquiring only waits for permits.
        if let Ok(permit) = self.gate.acquire().await {
            permit.forget();
        }
        self.n.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Serves a fresh counter on a thread of its own; returns its address.
fn server() -> String {
    serve(Count::default())
}

/// Serves `count` on a thread of its own; returns its address.
fn serve(count: Count) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server = Server::bind("127.0.0.1:0", CounterServer::new(count))
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

/// Polls while waiting for the calls to be handed out, and the pause
/// between polls.
const MAX_POLLS: u32 = 3_000;
const POLL_PAUSE: Duration = Duration::from_millis(10);

#[test]
fn calls_from_many_threads_spread_over_the_pooled_connections() {
    const CONNECTIONS: usize = 3;
    const CALLS: usize = 6;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let addr = serve(Count {
        gate: Arc::clone(&gate),
        ..Count::default()
    });
    let config = PoolConfig::default().with_connections(CONNECTIONS);
    let client = BlockingClient::connect_with(&addr, config).unwrap();
    assert_eq!(client.connections(), CONNECTIONS);
    let counter = CounterClient::new(client.transport());
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..CALLS)
            .map(|_| s.spawn(|| client.wait(counter.gated()).unwrap()))
            .collect();
        // Every call is held at the server until the gate opens: see how
        // they were spread.
        let mut spread = client.in_flight();
        for _ in 0..MAX_POLLS {
            if spread.iter().sum::<usize>() == CALLS {
                break;
            }
            std::thread::sleep(POLL_PAUSE);
            spread = client.in_flight();
        }
        assert_eq!(spread.iter().sum::<usize>(), CALLS, "{spread:?}");
        assert!(
            spread.iter().all(|&n| n > 0),
            "every connection carries calls: {spread:?}"
        );
        gate.add_permits(CALLS);
        let mut done: Vec<u64> = calls.into_iter().map(|c| c.join().unwrap()).collect();
        done.sort_unstable();
        assert_eq!(
            done,
            (1..=CALLS as u64).collect::<Vec<_>>(),
            "each ran once"
        );
    });
    assert_eq!(client.in_flight(), vec![0; CONNECTIONS]);
}

#[test]
fn a_pool_size_out_of_range_is_refused_by_name() {
    let addr = server();
    match BlockingClient::connect_with(&addr, PoolConfig::default().with_connections(0)) {
        Err(e @ BlockingError::Pool(_)) => assert!(e.to_string().contains("1 to"), "{e}"),
        Err(e) => panic!("expected a pool size error, got {e}"),
        Ok(_) => panic!("a pool of no connections"),
    }
}
