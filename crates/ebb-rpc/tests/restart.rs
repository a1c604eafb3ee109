//! A server that restarts while an at-most-once call runs: the client learns
//! `OutcomeUnknown` from the new incarnation, and the new server never runs
//! the call.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_core::Nanos;
use ebb_rpc::CallError;
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::{Server, TcpClient};
use tokio::sync::Notify;

static METHODS: [MethodInfo; 1] = [MethodInfo {
    service: "Hang",
    id: 0,
    name: "hang",
    idempotent: false,
    blocking: false,
    params: &[],
    returns: "()",
}];

/// `hang` never returns; it announces that it started.
struct Hang {
    started: Arc<Notify>,
    runs: Arc<AtomicUsize>,
}

impl ServiceDispatch for Hang {
    fn name(&self) -> &'static str {
        "Hang"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, _id: u16, _args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.started.notify_one();
        Box::pin(std::future::pending())
    }
}

/// A server on its own runtime and thread; dropping the runtime is a crash:
/// every task and socket goes at once.
fn spawn_server(
    addr: &str,
    svc: Hang,
) -> (
    String,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let addr = addr.to_owned();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::bind(&addr, svc)).unwrap();
        addr_tx
            .send(server.local_addr().unwrap().to_string())
            .unwrap();
        rt.spawn(server.run());
        // Serve until told to crash.
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            std::thread::spawn(move || {
                let _ = stop_rx.recv();
                let _ = tx.send(());
            });
            let _ = rx.await;
        });
        drop(rt);
    });
    (addr_rx.recv().unwrap(), stop_tx, thread)
}

#[tokio::test]
async fn a_call_outstanding_across_a_restart_ends_outcome_unknown() {
    let started = Arc::new(Notify::new());
    let first_runs = Arc::new(AtomicUsize::new(0));
    let (addr, crash, thread) = spawn_server(
        "127.0.0.1:0",
        Hang {
            started: Arc::clone(&started),
            runs: Arc::clone(&first_runs),
        },
    );
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let call = {
        let client = Arc::clone(&client);
        tokio::spawn(async move {
            let opts = CallOptions::default().with_timeout(Nanos::from_secs(10));
            client.call(&METHODS[0], Bytes::new(), opts).await
        })
    };
    started.notified().await;
    crash.send(()).unwrap();
    thread.join().unwrap();

    let second_runs = Arc::new(AtomicUsize::new(0));
    let (_, _keep, _thread2) = spawn_server(
        &addr,
        Hang {
            started: Arc::new(Notify::new()),
            runs: Arc::clone(&second_runs),
        },
    );
    let outcome = call.await.unwrap();
    assert!(
        matches!(outcome, Err(CallError::OutcomeUnknown { old, new }) if old != new),
        "{outcome:?}"
    );
    assert_eq!(first_runs.load(Ordering::SeqCst), 1);
    assert_eq!(
        second_runs.load(Ordering::SeqCst),
        0,
        "the new incarnation ran an orphan"
    );
}
