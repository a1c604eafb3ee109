//! The pooled client end to end on loopback: it carries more at-most-once
//! calls at once than one connection's window, a connection of the pool that
//! dies mid-call loses nothing it may not lose and runs nothing twice, and
//! clones of a generated stub built on it share the pool across tasks.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::semantics::MAX_REPLIES_PER_CLIENT;
use ebb_rpc::service::CallOptions;
use ebb_rpc::transport::{
    PoolConfig, PoolError, PooledClient, Server, TcpClient, pool::MAX_POOL_CONNECTIONS,
};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Gate {
    /// Counts a run of call `id`, then waits until the gate opens.
    async fn hold(&self, id: u64) -> u64;
}

/// Runs per call id, calls running now, and the gate they wait at.
struct GateImpl {
    runs: Mutex<HashMap<u64, u32>>,
    running: watch::Sender<usize>,
    open: watch::Receiver<bool>,
}

impl Gate for Arc<GateImpl> {
    async fn hold(&self, id: u64) -> u64 {
        *self.runs.lock().unwrap().entry(id).or_default() += 1;
        self.running.send_modify(|n| *n += 1);
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.running.send_modify(|n| *n -= 1);
        id
    }
}

struct Node {
    addr: String,
    service: Arc<GateImpl>,
    open: watch::Sender<bool>,
}

impl Node {
    async fn start() -> Node {
        let (open, open_rx) = watch::channel(false);
        let service = Arc::new(GateImpl {
            runs: Mutex::new(HashMap::new()),
            running: watch::channel(0).0,
            open: open_rx,
        });
        let server = Server::bind("127.0.0.1:0", GateServer::new(Arc::clone(&service)))
            .await
            .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        tokio::spawn(server.run());
        Node {
            addr,
            service,
            open,
        }
    }

    /// Waits (bounded) until `n` calls are running at once.
    async fn running(&self, n: usize) {
        let mut running = self.service.running.subscribe();
        let waited = tokio::time::timeout(Duration::from_secs(20), running.wait_for(|r| *r == n));
        assert!(
            waited.await.is_ok(),
            "{n} calls never ran at once ({} did)",
            *self.service.running.borrow()
        );
    }

    fn runs(&self) -> HashMap<u64, u32> {
        self.service.runs.lock().unwrap().clone()
    }
}

fn timeout(secs: u64) -> CallOptions {
    CallOptions::default().with_timeout(Nanos::from_secs(secs))
}

/// Starts `n` at-most-once `hold` calls with ids `0..n`, each on its own task.
fn spawn_calls<T>(client: &GateClient<T>, n: u64) -> Vec<JoinHandle<(u64, Result<u64, CallError>)>>
where
    T: ebb_rpc::service::Transport + Clone + 'static,
{
    spawn_ids(client, 0..n)
}

/// Starts an at-most-once `hold` call for each of `ids`, each on its own task.
fn spawn_ids<T>(
    client: &GateClient<T>,
    ids: std::ops::Range<u64>,
) -> Vec<JoinHandle<(u64, Result<u64, CallError>)>>
where
    T: ebb_rpc::service::Transport + Clone + 'static,
{
    ids.map(|id| {
        let client = client.clone();
        tokio::spawn(async move { (id, client.hold(id).await) })
    })
    .collect()
}

#[tokio::test]
async fn a_pool_runs_more_at_most_once_calls_at_once_than_one_connections_window() {
    let node = Node::start().await;
    let window = usize::try_from(MAX_REPLIES_PER_CLIENT).unwrap();
    let calls = window * 2 + window / 2;
    let pool = PooledClient::connect_with(&node.addr, PoolConfig::default().with_connections(4))
        .await
        .unwrap();
    let client = GateClient::new(pool.clone()).with_options(timeout(30));
    let handles = spawn_calls(&client, calls as u64);
    // Held at the gate, so all of them run at once: more than one session's
    // window admits, which only several sessions can carry.
    node.running(calls).await;
    let spread = pool.in_flight();
    assert_eq!(spread.iter().sum::<usize>(), calls, "{spread:?}");
    assert!(
        spread.iter().all(|&n| n <= window),
        "no connection carries more than its window: {spread:?}"
    );
    node.open.send_replace(true);
    for h in handles {
        let (id, reply) = h.await.unwrap();
        assert_eq!(reply.unwrap(), id);
    }
    let runs = node.runs();
    assert_eq!(runs.len(), calls);
    assert!(runs.values().all(|&r| r == 1), "a call ran twice");
    assert_eq!(pool.in_flight(), vec![0; 4]);
}

#[tokio::test]
async fn one_connection_runs_no_more_at_most_once_calls_at_once_than_its_window() {
    // The contrast that makes the test above mean something: over one
    // TcpClient, a full window of calls held at the gate leaves further
    // calls waiting in the session unsent; they end at their deadline never
    // having been sent, while the window's calls still run.
    let node = Node::start().await;
    let window = MAX_REPLIES_PER_CLIENT;
    let extra = 10;
    let tcp = Arc::new(TcpClient::connect(&node.addr).await.unwrap());
    let held = GateClient::new(Arc::clone(&tcp)).with_options(timeout(60));
    let first = spawn_ids(&held, 0..window);
    node.running(usize::try_from(window).unwrap()).await;
    // Started only once the window is full, and ending long before any call
    // in it can: nothing frees a slot for them.
    let late = GateClient::new(tcp).with_options(timeout(1));
    for h in spawn_ids(&late, window..window + extra) {
        match h.await.unwrap().1 {
            Err(CallError::DeadlineExceeded { sent: false, .. }) => {}
            other => panic!("a call past the window: {other:?}"),
        }
    }
    node.open.send_replace(true);
    for h in first {
        let (id, reply) = h.await.unwrap();
        assert_eq!(reply.unwrap(), id);
    }
    let runs = node.runs();
    assert_eq!(runs.len(), usize::try_from(window).unwrap(), "{runs:?}");
    assert!(
        runs.keys().all(|&id| id < window),
        "a late call ran: {runs:?}"
    );
}

/// A TCP relay that remembers its connections in accept order, so a test
/// can cut one, and can stop accepting.
struct Relay {
    addr: String,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accepted: watch::Receiver<usize>,
    acceptor: JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_owned();
        let kept = Arc::clone(&links);
        let (count, accepted) = watch::channel(0);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut up = TcpStream::connect(&upstream).await.unwrap();
                let link = tokio::spawn(async move {
                    let _ = copy_bidirectional(&mut down, &mut up).await;
                });
                kept.lock().unwrap().push(link);
                count.send_modify(|n| *n += 1);
            }
        });
        Relay {
            addr,
            links,
            accepted,
            acceptor,
        }
    }

    /// Waits (bounded) until `n` connections have been accepted.
    async fn accepted(&self, n: usize) {
        let mut accepted = self.accepted.clone();
        let waited = tokio::time::timeout(Duration::from_secs(20), accepted.wait_for(|a| *a >= n));
        assert!(waited.await.is_ok(), "never {n} connections accepted");
    }

    /// Drops both sockets of the `i`th connection accepted.
    fn cut(&self, i: usize) {
        self.links.lock().unwrap()[i].abort();
    }

    /// Closes the listening socket: reconnects are refused from now on.
    async fn stop_accepting(&mut self) {
        self.acceptor.abort();
        let stopped = (&mut self.acceptor).await;
        assert!(stopped.is_err_and(|e| e.is_cancelled()));
    }
}

#[tokio::test]
async fn a_cut_connection_of_the_pool_reconnects_and_its_calls_run_once() {
    let node = Node::start().await;
    let relay = Relay::start(&node.addr).await;
    let cfg = PoolConfig::default().with_connections(4);
    let pool = PooledClient::connect_with(&relay.addr, cfg).await.unwrap();
    let client = GateClient::new(pool.clone()).with_options(timeout(30));
    let calls = 64;
    let handles = spawn_calls(&client, calls);
    node.running(calls as usize).await;
    let before = pool.in_flight();
    assert!(before[1] > 0, "{before:?}");
    // Member 1 (the pool connects in order) loses its connection with its
    // calls running: it reconnects and resends them under the same client
    // id, and the server makes the copies wait for the running originals.
    relay.cut(1);
    relay.accepted(5).await;
    node.open.send_replace(true);
    for h in handles {
        let (id, reply) = h.await.unwrap();
        assert_eq!(reply.unwrap(), id, "call {id}");
    }
    let runs = node.runs();
    assert_eq!(runs.len(), calls as usize);
    assert!(
        runs.values().all(|&r| r == 1),
        "a resent call ran twice: {runs:?}"
    );
}

#[tokio::test]
async fn a_connection_of_the_pool_that_cannot_come_back_fails_its_calls_as_may_have_run() {
    let node = Node::start().await;
    let mut relay = Relay::start(&node.addr).await;
    let cfg = PoolConfig::default().with_connections(4);
    let pool = PooledClient::connect_with(&relay.addr, cfg).await.unwrap();
    let client = GateClient::new(pool.clone()).with_options(timeout(3));
    let calls = 64;
    let handles = spawn_calls(&client, calls);
    node.running(calls as usize).await;
    let lost = pool.in_flight()[2];
    assert!(lost > 0);
    relay.stop_accepting().await;
    relay.cut(2);
    node.open.send_replace(true);
    let mut ok = 0;
    let mut failed = 0;
    for h in handles {
        let (id, reply) = h.await.unwrap();
        match reply {
            Ok(v) => {
                assert_eq!(v, id);
                ok += 1;
            }
            Err(e) => {
                // Sent, then the link broke and never came back: it may
                // have run (it did, at the gate), so the caller is told so.
                assert!(
                    matches!(e, CallError::ConnectionLost { sent: true, .. }),
                    "call {id}: {e:?}"
                );
                assert!(e.may_have_run());
                failed += 1;
            }
        }
    }
    assert_eq!(failed, lost, "exactly the calls on the cut connection fail");
    assert_eq!(ok + failed, calls as usize);
    let runs = node.runs();
    assert!(runs.values().all(|&r| r == 1), "a call ran twice: {runs:?}");
}

#[tokio::test]
async fn clones_of_a_generated_stub_share_one_pool_across_tasks() {
    let node = Node::start().await;
    node.open.send_replace(true);
    let cfg = PoolConfig::default().with_connections(3);
    let client = GateClient::connect_with(&node.addr, cfg)
        .await
        .unwrap()
        .with_options(timeout(10));
    assert_eq!(client.transport().connections(), 3);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let id = t * 1000 + i;
                    assert_eq!(client.hold(id).await.unwrap(), id);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let runs = node.runs();
    assert_eq!(runs.len(), 400);
    assert!(runs.values().all(|&r| r == 1));
    assert_eq!(client.transport().in_flight(), vec![0; 3]);
}

#[tokio::test]
async fn a_pool_size_out_of_bounds_is_refused_with_the_bound() {
    let node = Node::start().await;
    for given in [0, MAX_POOL_CONNECTIONS + 1] {
        let cfg = PoolConfig::default().with_connections(given);
        let err = PooledClient::connect_with(&node.addr, cfg)
            .await
            .unwrap_err();
        assert!(matches!(err, PoolError::Size { given: g } if g == given));
        assert!(err.to_string().contains("1 to 16"), "{err}");
    }
}
