//! Calls a dispatcher answers later through a `DeferredReply` (a
//! forwarder's), and calls a client starts with a `CallSink` for their
//! outcome: the server session records a deferred answer as any other, so a
//! duplicate of a deferred at-most-once call waits and then gets the same
//! reply, nothing runs twice, and a reply dropped unsent still answers.

use std::sync::Mutex;

use ebb_rpc::service::{CallContext, CallSink, DeferredReply};
use ebb_rpc::wire::{ClientSecret, Ping};
use tokio::sync::{Notify, mpsc};

use super::*;

static DEFERRED: [MethodInfo; 3] = [
    method(0, "kept", false),
    method(1, "dropped", false),
    method(2, "panics", false),
];

/// `kept` keeps its reply for the test to send; `dropped` drops it unsent;
/// `panics` panics while starting.
#[derive(Default)]
struct Deferring {
    kept: Mutex<Vec<DeferredReply>>,
    started: AtomicUsize,
    arrived: Notify,
}

impl ServiceDispatch for Deferring {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &DEFERRED
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async { panic!("every call of this service is deferred") })
    }
    fn defers(&self, _: u16) -> bool {
        true
    }
    fn dispatch_deferred(&self, id: u16, _: Bytes, _: CallContext, reply: DeferredReply) {
        self.started.fetch_add(1, Ordering::SeqCst);
        match id {
            0 => {
                self.kept.lock().unwrap().push(reply);
                self.arrived.notify_one();
            }
            1 => drop(reply),
            _ => panic!("boom while starting a deferred call"),
        }
    }
}

async fn serve_deferring() -> (String, Arc<Deferring>) {
    let svc = Arc::new(Deferring::default());
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc)).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    (addr, svc)
}

/// The next kept reply, once its call has arrived.
async fn next_kept(svc: &Deferring) -> DeferredReply {
    loop {
        let notified = svc.arrived.notified();
        if let Some(reply) = svc.kept.lock().unwrap().pop() {
            return reply;
        }
        notified.await;
    }
}

/// Writes `frame` and reads until one frame comes back.
async fn exchange(
    s: &mut TcpStream,
    buf: &mut bytes::BytesMut,
    frame: Option<&Message>,
) -> Message {
    if let Some(frame) = frame {
        let mut out = bytes::BytesMut::new();
        wire::encode_message(frame, &mut out).unwrap();
        s.write_all(&out).await.unwrap();
    }
    loop {
        if let Some(m) = wire::decode_message(buf).unwrap() {
            return m;
        }
        assert!(s.read_buf(buf).await.unwrap() > 0, "server closed");
    }
}

#[tokio::test]
async fn a_deferred_call_answers_when_its_reply_is_sent_and_a_duplicate_gets_the_same_reply() {
    let (addr, svc) = serve_deferring().await;
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let secret = ClientSecret(0x5eed);
    let client = secret.client_id();
    let ping = Message::Ping(Ping {
        client,
        floor: Seq(1),
        ack_below: Seq(1),
        incarnation: None,
        secret,
        token: Bytes::new(),
    });
    let Message::Pong(pong) = exchange(&mut s, &mut buf, Some(&ping)).await else {
        panic!("expected the handshake's pong")
    };
    assert_eq!(pong.refused, None);
    let request = Message::Request(Request {
        client,
        seq: Seq(1),
        ack_below: Seq(1),
        incarnation: Some(pong.incarnation),
        deadline: ebb_core::Nanos::from_secs(60),
        method: 0,
        idempotent: false,
        json: false,
        payload: Bytes::from_static(b"args"),
    });
    let mut out = bytes::BytesMut::new();
    wire::encode_message(&request, &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let reply = next_kept(&svc).await;
    // The duplicate arrives while the call runs: it waits, nothing starts.
    s.write_all(&out).await.unwrap();
    // Sent from another task than the connection's.
    tokio::spawn(async move { reply.send(Ok(Bytes::from_static(b"answer"))) })
        .await
        .unwrap();
    let Message::Reply(first) = exchange(&mut s, &mut buf, None).await else {
        panic!("expected the reply")
    };
    assert_eq!((first.seq, first.outcome), (Seq(1), Outcome::Ok));
    assert_eq!(first.payload, &b"answer"[..]);
    // Once more, after it completed: the saved reply, not a second run.
    let Message::Reply(again) = exchange(&mut s, &mut buf, Some(&request)).await else {
        panic!("expected the saved reply")
    };
    assert_eq!(again.payload, &b"answer"[..]);
    assert_eq!(svc.started.load(Ordering::SeqCst), 1, "it started once");
}

#[tokio::test]
async fn a_deferred_reply_dropped_unsent_answers_outcome_unknown_and_a_panic_answers_panicked() {
    let (addr, svc) = serve_deferring().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let dropped = client
        .call(&DEFERRED[1], Bytes::new(), CallOptions::default())
        .await;
    assert!(
        matches!(dropped, Err(CallError::OutcomeUnknown { .. })),
        "{dropped:?}"
    );
    let panicked = client
        .call(&DEFERRED[2], Bytes::new(), CallOptions::default())
        .await;
    assert!(
        matches!(panicked, Err(CallError::Panicked { .. })),
        "{panicked:?}"
    );
    assert_eq!(svc.started.load(Ordering::SeqCst), 2);
}

/// Outcomes a client hands its sink, by token.
struct Outcomes(mpsc::UnboundedSender<(u64, Result<Bytes, CallError>)>);

impl CallSink for Outcomes {
    fn deliver(&self, token: u64, outcome: Result<Bytes, CallError>) {
        let _ = self.0.send((token, outcome));
    }
}

#[tokio::test]
async fn a_started_call_hands_its_outcome_to_the_sink_once_and_abandoning_ends_the_rest() {
    let (addr, svc) = serve_deferring().await;
    let client = TcpClient::connect(&addr).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sink: Arc<dyn CallSink> = Arc::new(Outcomes(tx));
    let options = CallOptions::default();
    client
        .start_call(&DEFERRED[0], Bytes::new(), options, &sink, 7)
        .unwrap();
    next_kept(&svc).await.send(Ok(Bytes::from_static(b"seven")));
    let (token, outcome) = rx.recv().await.unwrap();
    assert_eq!((token, outcome.unwrap()), (7, Bytes::from_static(b"seven")));
    // A call the server holds ends when its caller abandons the client's
    // calls: sent, so it may have run.
    client
        .start_call(&DEFERRED[0], Bytes::new(), options, &sink, 8)
        .unwrap();
    let _held = next_kept(&svc).await;
    client.abandon_calls("the test gave up on the server");
    let (token, outcome) = rx.recv().await.unwrap();
    assert_eq!(token, 8);
    assert!(
        matches!(outcome, Err(CallError::ConnectionLost { sent: true, .. })),
        "{outcome:?}"
    );
    assert!(rx.try_recv().is_err(), "each outcome delivered once");
}
