//! Methods marked blocking run on the server's worker threads: as many at
//! once as it has threads, while the I/O loop (a single-threaded runtime
//! here) keeps answering cheap calls.
#![allow(clippy::unwrap_used)]

mod common;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{Gate, HOLD_LIMIT, assert_echo_answers, serve_on_one_thread};
use ebb_rpc::service::{
    BoxFuture, CallOptions, DispatchError, MethodInfo, ServiceDispatch, Transport,
};
use ebb_rpc::transport::TcpClient;
use tokio::sync::mpsc;

static METHODS: [MethodInfo; 2] = [
    MethodInfo {
        service: "Hold",
        id: 0,
        name: "echo",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
    MethodInfo {
        service: "Hold",
        id: 1,
        name: "hold",
        idempotent: false,
        blocking: true,
        params: &[],
        returns: "()",
    },
];

/// `hold` blocks its thread (as CPU work would) until the gate opens,
/// announcing that it started; it counts how many run at once.
struct Hold {
    started: mpsc::UnboundedSender<()>,
    gate: Gate,
    running: AtomicUsize,
    most_running: AtomicUsize,
}

impl Hold {
    fn hold(&self) {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_running.fetch_max(now, Ordering::SeqCst);
        let _ = self.started.send(());
        self.gate.wait();
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServiceDispatch for Hold {
    fn name(&self) -> &'static str {
        "Hold"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            match id {
                0 => Ok(args),
                1 => {
                    self.hold();
                    Ok(Bytes::new())
                }
                _ => Err(DispatchError::UnknownMethod(format!("Hold method #{id}"))),
            }
        })
    }
    fn dispatch_json(
        &self,
        m: &str,
        _a: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        let m = m.to_owned();
        Box::pin(async move { Err(DispatchError::UnknownMethod(m)) })
    }
    /// JSON `echo` holds its thread first, standing in for the seconds a
    /// large JSON conversion keeps a core busy.
    fn dispatch_json_by_id(
        &self,
        id: u16,
        args: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, DispatchError>> {
        Box::pin(async move {
            match id {
                0 => {
                    self.hold();
                    Ok(args)
                }
                _ => Err(DispatchError::UnknownMethod(format!("Hold method #{id}"))),
            }
        })
    }
}

/// A server with `threads` workers, its I/O on a single-threaded runtime of
/// its own thread, so a blocking method run inline would stop it dead.
fn spawn_server(threads: usize) -> (String, Arc<Hold>, mpsc::UnboundedReceiver<()>) {
    let (started, starts) = mpsc::unbounded_channel();
    let svc = Arc::new(Hold {
        started,
        gate: Gate::default(),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
    });
    let addr = serve_on_one_thread(Arc::clone(&svc), move |server| {
        let server = server.with_threads(NonZeroUsize::new(threads).unwrap());
        assert_eq!(server.threads().get(), threads);
        server
    });
    (addr, svc, starts)
}

async fn next_start(starts: &mut mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(HOLD_LIMIT, starts.recv())
        .await
        .expect("a held call started")
        .expect("the service is alive");
}

type HoldCall = tokio::task::JoinHandle<Result<Bytes, ebb_rpc::CallError>>;

/// `n` calls of the blocking `hold`, each in a task of its own.
fn spawn_holds(client: &Arc<TcpClient>, n: usize) -> Vec<HoldCall> {
    (0..n)
        .map(|_| {
            let c = Arc::clone(client);
            tokio::spawn(async move {
                c.call(&METHODS[1], Bytes::new(), CallOptions::default())
                    .await
            })
        })
        .collect()
}

/// Opens the gate and waits for every held call to succeed.
async fn release(svc: &Hold, holds: Vec<HoldCall>) {
    svc.gate.open();
    for h in holds {
        h.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn blocking_calls_run_in_parallel_and_cheap_calls_still_answer() {
    let (addr, svc, mut starts) = spawn_server(2);
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let holds = spawn_holds(&client, 2);
    // Both started and neither can finish before the gate opens: they run
    // at the same time, on two threads.
    next_start(&mut starts).await;
    next_start(&mut starts).await;
    assert_eq!(svc.running.load(Ordering::SeqCst), 2);
    assert_echo_answers(&client, &METHODS[0]).await;
    assert_eq!(
        svc.running.load(Ordering::SeqCst),
        2,
        "the echo was answered while both blocking calls ran"
    );
    release(&svc, holds).await;
    assert_eq!(svc.most_running.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_more_blocking_calls_run_at_once_than_there_are_threads() {
    let (addr, svc, mut starts) = spawn_server(1);
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let holds = spawn_holds(&client, 3);
    next_start(&mut starts).await;
    assert_echo_answers(&client, &METHODS[0]).await;
    release(&svc, holds).await;
    assert_eq!(svc.most_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn large_json_arguments_are_converted_off_the_io_loop() {
    use ebb_rpc::transport::server::MAX_INLINE_JSON_BYTES;
    // No blocking method at all, one worker: only the size of the JSON
    // arguments sends the call to the worker.
    let (addr, svc, mut starts) = spawn_server(1);
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let args = serde_json::json!({ "msg": "x".repeat(MAX_INLINE_JSON_BYTES + 1) });
    let json = {
        let (c, args) = (Arc::clone(&client), args.clone());
        tokio::spawn(async move { c.call_json(0, true, &args, CallOptions::default()).await })
    };
    next_start(&mut starts).await;
    // Sent after the JSON call on the same connection: answered only if
    // the I/O loop is not the thread the JSON call holds.
    assert_echo_answers(&client, &METHODS[0]).await;
    assert_eq!(
        svc.running.load(Ordering::SeqCst),
        1,
        "the echo was answered while the JSON call held its thread"
    );
    svc.gate.open();
    assert_eq!(json.await.unwrap().unwrap(), args);
}

/// How long a resize may take to be answered on loopback; only a failing
/// test waits it out.
const RESIZE_TIMEOUT: ebb_core::Nanos = ebb_core::Nanos::from_secs(10);

fn capacity(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap()
}

/// A resizable server with one worker: asked for three, it answers three
/// and then runs three blocking calls at once; asked for one again, one.
#[tokio::test]
async fn a_resize_changes_how_many_blocking_calls_run_at_once() {
    let (started, mut starts) = mpsc::unbounded_channel();
    let svc = Arc::new(Hold {
        started,
        gate: Gate::default(),
        running: AtomicUsize::new(0),
        most_running: AtomicUsize::new(0),
    });
    let addr = serve_on_one_thread(Arc::clone(&svc), |server| {
        server.with_threads(NonZeroUsize::MIN).resizable()
    });
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let took = client.resize(capacity(3), RESIZE_TIMEOUT).await.unwrap();
    assert_eq!(took, Some(capacity(3)));
    let holds = spawn_holds(&client, 3);
    for _ in 0..3 {
        next_start(&mut starts).await;
    }
    // Three started and none can finish before the gate opens.
    assert_eq!(svc.running.load(Ordering::SeqCst), 3);
    release(&svc, holds).await;
    assert_eq!(svc.most_running.load(Ordering::SeqCst), 3);

    // Back to one: a fresh gate, three calls, never two at once.
    let took = client.resize(capacity(1), RESIZE_TIMEOUT).await.unwrap();
    assert_eq!(took, Some(capacity(1)));
    svc.gate.close();
    svc.most_running.store(0, Ordering::SeqCst);
    let holds = spawn_holds(&client, 3);
    next_start(&mut starts).await;
    assert_echo_answers(&client, &METHODS[0]).await;
    release(&svc, holds).await;
    assert_eq!(svc.most_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_server_that_does_not_resize_says_so_and_keeps_its_workers() {
    let (addr, svc, mut starts) = spawn_server(1);
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let took = client.resize(capacity(4), RESIZE_TIMEOUT).await.unwrap();
    assert_eq!(took, None);
    let holds = spawn_holds(&client, 2);
    next_start(&mut starts).await;
    release(&svc, holds).await;
    assert_eq!(svc.most_running.load(Ordering::SeqCst), 1);
}

/// A resize whose caller stopped waiting holds no place among the pending
/// ones: a server that leaves resizes unanswered (here one that never
/// reads) can be asked again and again, each ending by its own timeout,
/// never refused at once as `TooManyOutstanding`, as a gateway that asks a
/// slow node again after a timeout needs.
#[tokio::test]
async fn resizes_that_timed_out_do_not_fill_the_pending_bound() {
    use ebb_rpc::transport::client::MAX_PENDING_RESIZES;
    // The kernel completes the connection; nothing ever reads it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let client = TcpClient::connect(&addr).await.unwrap();
    for asked in 0..2 * MAX_PENDING_RESIZES {
        let ended = client
            .resize(capacity(2), ebb_core::Nanos::from_millis(1))
            .await;
        assert!(
            matches!(ended, Err(ebb_rpc::CallError::DeadlineExceeded { .. })),
            "resize #{asked} ended {ended:?}, not by its own timeout"
        );
    }
}
