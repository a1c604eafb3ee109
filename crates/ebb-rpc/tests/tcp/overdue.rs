//! Calls whose callers have stopped waiting: a call still running past its
//! deadline plus the grace is cancelled (its future dropped) and recorded
//! `OutcomeUnknown`; a blocking call still queued for a worker at its
//! deadline does not start and is recorded as refused. Either way a
//! duplicate gets the recorded answer and nothing runs again. Both run on
//! tokio's paused clock, the server's clock seam. The cancellation's timer
//! fires as soon as the test has nothing left to do. The queued call's
//! method holds a real worker thread, which paused time does not wait for:
//! left to advance on its own, the clock would jump ahead whenever the test
//! waits for that thread. So that test holds a blocking task open (tokio
//! does not advance a paused clock while one runs) and moves the clock
//! itself, past the queued call's deadline, while the call waits.

use std::num::NonZeroUsize;
use std::sync::Mutex;

use ebb_core::Nanos;
use ebb_rpc::semantics::ServerStats;
use ebb_rpc::wire::{ClientSecret, Incarnation, Ping, Reply};
use tokio::sync::Notify;

use super::*;

const fn blocking_method(id: u16, name: &'static str) -> MethodInfo {
    MethodInfo {
        blocking: true,
        ..method(id, name, false)
    }
}

static OVERDUE: [MethodInfo; 2] = [method(0, "hang", false), blocking_method(1, "block")];

/// `hang` never finishes (and counts its future's drop); `block` holds its
/// worker thread until the test lets it go.
#[derive(Default)]
struct Overdue {
    hangs_started: AtomicUsize,
    hangs_dropped: Arc<AtomicUsize>,
    blocks_started: AtomicUsize,
    block_started: Notify,
    release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// Counts the drop of the future it lives in.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl ServiceDispatch for Overdue {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &OVERDUE
    }
    fn dispatch(&self, id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            match id {
                0 => {
                    self.hangs_started.fetch_add(1, Ordering::SeqCst);
                    let _counted = DropCount(Arc::clone(&self.hangs_dropped));
                    std::future::pending::<()>().await;
                    Ok(args)
                }
                1 => {
                    self.blocks_started.fetch_add(1, Ordering::SeqCst);
                    self.block_started.notify_one();
                    // On the worker thread: waits for the test, as a
                    // CPU-bound method holds its thread.
                    let release = self.release.lock().unwrap().take();
                    if let Some(release) = release {
                        let _ = release.recv();
                    }
                    Ok(args)
                }
                _ => Err(DispatchError::UnknownMethod(format!("Test method #{id}"))),
            }
        })
    }
}

/// Long enough that no connection or session times out while paused time
/// jumps ahead to the server's timers.
const QUIET: Nanos = Nanos::from_secs(24 * 3600);

async fn serve(svc: &Arc<Overdue>, grace: Nanos) -> (String, impl Fn() -> ServerStats + use<>) {
    let config = ServerConfig {
        overdue_grace: grace,
        handshake_timeout: QUIET,
        idle_timeout: QUIET,
        session_expiry: QUIET,
        ..ServerConfig::default()
    };
    let server = Server::bind_with("127.0.0.1:0", Arc::clone(svc), config)
        .await
        .unwrap()
        .with_threads(NonZeroUsize::MIN);
    let addr = server.local_addr().unwrap().to_string();
    let stats = server.stats_reader();
    tokio::spawn(server.run());
    (addr, stats)
}

/// A client speaking raw frames, so it can send a duplicate of a call it
/// has already been answered for.
struct Raw {
    s: TcpStream,
    buf: bytes::BytesMut,
    secret: ClientSecret,
    incarnation: Incarnation,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let mut raw = Raw {
            s: TcpStream::connect(addr).await.unwrap(),
            buf: bytes::BytesMut::new(),
            secret: ClientSecret(0x0dd),
            incarnation: Incarnation::at_least_one(1),
        };
        let client = raw.secret.client_id();
        raw.send(&Message::Ping(Ping {
            client,
            floor: Seq(1),
            ack_below: Seq(1),
            incarnation: None,
            secret: raw.secret,
            token: Bytes::new(),
        }))
        .await;
        let Message::Pong(pong) = raw.next().await else {
            panic!("expected the handshake's pong")
        };
        assert_eq!(pong.refused, None);
        raw.incarnation = pong.incarnation;
        raw
    }

    async fn send(&mut self, m: &Message) {
        let mut out = bytes::BytesMut::new();
        wire::encode_message(m, &mut out).unwrap();
        self.s.write_all(&out).await.unwrap();
    }

    /// Sends an at-most-once call of `method` with `deadline` left.
    async fn call(&mut self, seq: u64, method: u16, deadline: Nanos) {
        let request = Message::Request(Request {
            client: self.secret.client_id(),
            seq: Seq(seq),
            ack_below: Seq(1),
            incarnation: Some(self.incarnation),
            deadline,
            method,
            idempotent: false,
            json: false,
            payload: Bytes::from_static(b"args"),
        });
        self.send(&request).await;
    }

    async fn next(&mut self) -> Message {
        loop {
            if let Some(m) = wire::decode_message(&mut self.buf).unwrap() {
                return m;
            }
            assert!(
                self.s.read_buf(&mut self.buf).await.unwrap() > 0,
                "server closed"
            );
        }
    }

    async fn reply(&mut self) -> Reply {
        match self.next().await {
            Message::Reply(r) => r,
            other => panic!("expected a reply, got {other:?}"),
        }
    }
}

/// Yields until `done` holds, a bounded number of times: the server runs
/// on this same thread, so each yield lets it take a step.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: never happened");
}

#[tokio::test(start_paused = true)]
async fn a_call_running_past_its_deadline_is_cancelled_and_its_duplicate_answered_from_the_record()
{
    let svc = Arc::new(Overdue::default());
    let grace = Nanos::from_millis(10);
    let (addr, stats) = serve(&svc, grace).await;
    let mut raw = Raw::connect(&addr).await;
    raw.call(1, 0, Nanos::from_millis(50)).await;
    // Nothing else to do: paused time moves to the server's overdue timer.
    let cancelled = raw.reply().await;
    assert_eq!(
        (cancelled.seq, cancelled.outcome),
        (Seq(1), Outcome::OutcomeUnknown)
    );
    assert!(
        cancelled.message().contains("cancelled"),
        "{}",
        cancelled.message()
    );
    assert_eq!(
        svc.hangs_dropped.load(Ordering::SeqCst),
        1,
        "the future was dropped"
    );
    assert_eq!(stats().cancelled_overdue, 1);
    // The duplicate: the recorded answer, and the method does not start again.
    raw.call(1, 0, Nanos::from_millis(50)).await;
    let again = raw.reply().await;
    assert_eq!(
        (again.seq, again.outcome),
        (Seq(1), Outcome::OutcomeUnknown)
    );
    assert_eq!(again.payload, cancelled.payload);
    let s = stats();
    assert_eq!(
        (s.saved_replies, s.executed, s.cancelled_overdue),
        (1, 1, 1)
    );
    assert_eq!(
        svc.hangs_started.load(Ordering::SeqCst),
        1,
        "it never ran again"
    );
}

/// Holds tokio's paused clock still while it lives: a blocking task keeps
/// the runtime from advancing time on its own, so only the test moves it.
struct ClockHeld {
    release: std::sync::mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ClockHeld {
    fn now() -> ClockHeld {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let task = tokio::task::spawn_blocking(move || {
            let _ = released.recv();
        });
        ClockHeld { release, task }
    }

    async fn let_go(self) {
        drop(self.release);
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_blocking_call_queued_past_its_deadline_does_not_start_and_its_duplicate_is_refused_too()
{
    let held = ClockHeld::now();
    let svc = Arc::new(Overdue::default());
    let (release, released) = std::sync::mpsc::channel();
    *svc.release.lock().unwrap() = Some(released);
    let (addr, stats) = serve(&svc, Nanos::from_millis(10)).await;
    let mut raw = Raw::connect(&addr).await;
    // The one worker thread is taken by the first call...
    let started = svc.block_started.notified();
    raw.call(1, 1, Nanos::from_secs(3600)).await;
    started.await;
    // ...so the second waits for it, and its deadline passes meanwhile:
    // the clock moves only here.
    let deadline = Nanos::from_millis(50);
    raw.call(2, 1, deadline).await;
    until("the second call admitted", || stats().executed == 2).await;
    tokio::time::advance(std::time::Duration::from(deadline) * 2).await;
    release.send(()).unwrap();
    let first = raw.reply().await;
    assert_eq!((first.seq, first.outcome), (Seq(1), Outcome::Ok));
    let late = raw.reply().await;
    let refused = Outcome::Refused(Refusal::DeadlinePassed);
    assert_eq!((late.seq, late.outcome), (Seq(2), refused));
    assert_eq!(stats().refused_deadline_before_start, 1);
    // The duplicate gets the recorded refusal; the method never started.
    raw.call(2, 1, deadline).await;
    let again = raw.reply().await;
    assert_eq!((again.seq, again.outcome), (Seq(2), refused));
    assert_eq!(stats().saved_replies, 1);
    assert_eq!(svc.blocks_started.load(Ordering::SeqCst), 1);
    held.let_go().await;
}
