//! A forwarding server's deferred calls, started by the ingress
//! connection's task and ended by its node client's reader: the requests
//! one read of the ingress starts, and the replies one read of the node
//! completes, leave in fewer writes than there are calls, and every caller
//! gets its own reply.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::CallError;
use crate::fast_map::FastMap;
use crate::service::{
    BoxFuture, CallContext, CallOptions, CallSink, DeferredReply, DispatchError, MethodInfo,
    ServiceDispatch, Transport, WriteBatch,
};
use crate::transport::gather::{Gather, METHODS};
use crate::transport::server::shared::Core;
use crate::transport::{Server, TcpClient};

/// Calls in flight at once, answered together by the node.
const CALLS: usize = 16;

/// The forwarder's calls on the node, by token, and how their outcomes
/// came: in a batch (`deliver_in`) or one by one.
#[derive(Default)]
struct Pending {
    replies: Mutex<FastMap<u64, DeferredReply>>,
    next: AtomicU64,
    in_batches: AtomicUsize,
    alone: AtomicUsize,
}

impl Pending {
    fn take(&self, token: u64) -> DeferredReply {
        self.replies.lock().unwrap().remove(&token).unwrap()
    }
}

fn answer(outcome: Result<Bytes, CallError>) -> Result<Bytes, DispatchError> {
    outcome.map_err(|e| DispatchError::Rejected(e.to_string()))
}

impl CallSink for Pending {
    fn deliver(&self, token: u64, outcome: Result<Bytes, CallError>) {
        self.alone.fetch_add(1, Ordering::SeqCst);
        self.take(token).send(answer(outcome));
    }

    fn deliver_in(&self, token: u64, outcome: Result<Bytes, CallError>, batch: &mut WriteBatch) {
        self.in_batches.fetch_add(1, Ordering::SeqCst);
        self.take(token).send_in(answer(outcome), batch);
    }
}

/// The forwarding server's service: every call goes on to the node, and
/// the node client's reader answers it.
struct Forward {
    node: Arc<TcpClient>,
    pending: Arc<Pending>,
    sink: Arc<dyn CallSink>,
}

impl ServiceDispatch for Forward {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async { panic!("every call is deferred") })
    }
    fn defers(&self, _: u16) -> bool {
        true
    }
    fn dispatch_deferred(&self, id: u16, args: Bytes, cx: CallContext, reply: DeferredReply) {
        self.dispatch_deferred_in(id, args, cx, reply, &mut WriteBatch::default());
    }
    fn dispatch_deferred_in(
        &self,
        _: u16,
        args: Bytes,
        _: CallContext,
        reply: DeferredReply,
        writes: &mut WriteBatch,
    ) {
        let token = self.pending.next.fetch_add(1, Ordering::SeqCst);
        self.pending.replies.lock().unwrap().insert(token, reply);
        let options = CallOptions::default();
        let started =
            self.node
                .start_call_in(&METHODS[0], args, options, &self.sink, token, writes);
        assert!(started.is_ok(), "a TcpClient starts calls with a sink");
    }
}

/// A node, a forwarding server in front of it and a caller connected to
/// that server; the forwarder's node client is returned too.
async fn forwarding() -> (Arc<Pending>, Arc<TcpClient>, Arc<Core<Forward>>, TcpClient) {
    let node = Gather::new(CALLS);
    let node = Server::bind("127.0.0.1:0", node).await.unwrap();
    let node_addr = node.local_addr().unwrap().to_string();
    tokio::spawn(node.run());
    let pending = Arc::new(Pending::default());
    let client = Arc::new(TcpClient::connect(&node_addr).await.unwrap());
    let forward = Forward {
        node: Arc::clone(&client),
        pending: Arc::clone(&pending),
        sink: Arc::clone(&pending) as Arc<dyn CallSink>,
    };
    let ingress = Server::bind("127.0.0.1:0", forward).await.unwrap();
    let addr = ingress.local_addr().unwrap().to_string();
    let core = Arc::clone(&ingress.core);
    tokio::spawn(ingress.run());
    let caller = TcpClient::connect(&addr).await.unwrap();
    (pending, client, core, caller)
}

/// `CALLS` calls, each with its own arguments, that all get their own.
async fn call_all(caller: &TcpClient, held: bool) {
    if held {
        caller.hold_writes();
    }
    let calls = (0..CALLS).map(|i| {
        let args = Bytes::from(vec![u8::try_from(i).unwrap(); 8]);
        caller.call(&METHODS[0], args, CallOptions::default())
    });
    let mut all = std::pin::pin!(futures_util::future::join_all(calls));
    // One poll starts every call (their requests held, if asked).
    std::future::poll_fn(|cx| {
        assert!(
            all.as_mut().poll(cx).is_pending(),
            "the node gathers them all"
        );
        std::task::Poll::Ready(())
    })
    .await;
    if held {
        caller.release_writes();
    }
    for (i, reply) in all.await.into_iter().enumerate() {
        let want = vec![u8::try_from(i).unwrap(); 8];
        assert_eq!(reply.unwrap(), want, "caller {i} got another's reply");
    }
}

#[tokio::test]
async fn the_replies_one_node_read_completes_leave_in_fewer_writes_than_replies() {
    let (pending, _, core, caller) = forwarding().await;
    call_all(&caller, false).await;
    // Every outcome came from the node client's reader, in batches.
    assert_eq!(pending.in_batches.load(Ordering::SeqCst), CALLS);
    assert_eq!(pending.alone.load(Ordering::SeqCst), 0);
    // The caller's one connection: its handshake's answer and the
    // replies, in fewer writes than replies (one per node read; one each
    // if written as each was recorded).
    let out = {
        let shared = core.lock();
        assert_eq!(shared.outs.len(), 1, "one caller connection");
        Arc::clone(shared.outs.values().next().unwrap())
    };
    let writes = out.writes();
    assert!(
        writes < CALLS as u64,
        "{CALLS} replies took {writes} writes"
    );
}

#[tokio::test]
async fn the_requests_one_ingress_read_starts_leave_in_fewer_writes_than_requests() {
    let (_, node, _, caller) = forwarding().await;
    let before = node.writes();
    // Held by the caller and written at once: the forwarder reads them
    // together.
    call_all(&caller, true).await;
    let writes = node.writes() - before;
    assert!(
        writes < CALLS as u64,
        "{CALLS} requests took {writes} writes"
    );
}
