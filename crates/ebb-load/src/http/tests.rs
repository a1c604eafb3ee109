//! The HTTP sender against servers on loopback: ebb's own HTTP server
//! answering with each error kind (as a gateway does), and scripted
//! servers that answer chunked, close after every reply, answer to the
//! close, or never answer. Each test counts the connections the server
//! accepted and the target's reconnects, so the path it names is shown to
//! have run.

use super::*;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use ebb_http::{HttpConfig, HttpError, JsonBackend};

/// Every end, by token, and a wake-up per end.
#[derive(Default)]
struct Seen {
    ends: Mutex<Vec<(u64, Outcome)>>,
    on_end: Notify,
}

impl Ends for Seen {
    fn ended(&self, token: u64, outcome: Outcome) {
        self.ends
            .lock()
            .expect("not poisoned")
            .push((token, outcome));
        self.on_end.notify_one();
    }
}

impl Seen {
    async fn wait_for(&self, n: usize) -> Vec<(u64, Outcome)> {
        loop {
            let notified = self.on_end.notified();
            {
                let ends = self.ends.lock().expect("not poisoned");
                if ends.len() >= n {
                    return ends.clone();
                }
            }
            notified.await;
        }
    }
}

/// What a scripted server does with each request it reads whole.
#[derive(Clone, Copy)]
enum Script {
    /// Writes these bytes and reads the next request.
    Answer(&'static [u8]),
    /// Writes these bytes and closes the connection.
    AnswerAndClose(&'static [u8]),
    /// Never answers.
    Silent,
}

/// Reads one request (head and `Content-Length` body) from `stream`;
/// false when the connection ends first.
async fn read_request(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(seen) {
            let length: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            if seen.len() >= head + length {
                seen.drain(..head + length);
                return true;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A scripted server on loopback; counts the connections it accepted.
async fn scripted(script: Script) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while read_request(&mut stream, &mut seen).await {
                    match script {
                        Script::Answer(reply) => {
                            if stream.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        Script::AnswerAndClose(reply) => {
                            let _ = stream.write_all(reply).await;
                            return;
                        }
                        Script::Silent => {}
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn target(addr: &str, connections: usize, method: &str, deadline: Nanos) -> Arc<HttpTarget> {
    let args = serde_json::json!({});
    let t = HttpTarget::connect(addr, connections, "Demo", method, &args, deadline)
        .await
        .expect("the server listens");
    Arc::new(t)
}

/// Starts `calls` calls on `target` in batches of `batch`, and waits for
/// each to end; their outcomes in token order.
async fn run(target: &Arc<HttpTarget>, calls: u64, batch: u64) -> Vec<Outcome> {
    let seen = Arc::new(Seen::default());
    let mut starter = Arc::clone(target)
        .starter(Arc::clone(&seen) as Arc<dyn Ends>)
        .expect("HTTP calls start in place");
    for token in 0..calls {
        starter.start(token);
        if (token + 1) % batch == 0 {
            starter.flush();
        }
    }
    starter.flush();
    let mut ends = seen.wait_for(calls as usize).await;
    ends.sort_by_key(|(token, _)| *token);
    let tokens: Vec<u64> = ends.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        tokens,
        (0..calls).collect::<Vec<_>>(),
        "each call ends once"
    );
    ends.into_iter().map(|(_, o)| o).collect()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1";

/// 200 calls started as 4 batches over 3 connections: each ends once,
/// answered, on the 3 connections opened at the start (no connection,
/// task or future per call).
#[tokio::test(flavor = "current_thread")]
async fn batched_calls_share_the_connections_and_each_ends_once() {
    let (addr, accepted) = scripted(Script::Answer(OK)).await;
    let target = target(&addr, 3, "echo", Nanos::from_secs(30)).await;
    let ends = run(&target, 200, 50).await;
    assert!(ends.iter().all(|o| *o == Outcome::Ok), "{ends:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert_eq!(target.reconnects(), 0);
}

/// A server that never answers: the call ends `deadline_exceeded` at
/// its deadline plus the grace, and its connection, still carrying
/// the request, is replaced for the next call (a reconnect).
#[tokio::test(flavor = "current_thread")]
async fn an_unanswered_call_ends_at_its_deadline_and_its_connection_is_replaced() {
    let (addr, accepted) = scripted(Script::Silent).await;
    let target = target(&addr, 1, "echo", Nanos::from_millis(1)).await;
    assert_eq!(run(&target, 1, 1).await, vec![Outcome::DeadlineExceeded]);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(target.reconnects(), 0);
    assert_eq!(run(&target, 1, 1).await, vec![Outcome::DeadlineExceeded]);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "a new connection");
    assert_eq!(target.reconnects(), 1);
}

/// [`Target::call`] goes through the same connections.
#[tokio::test(flavor = "current_thread")]
async fn a_call_future_is_answered_through_the_queue() {
    let (addr, accepted) = scripted(Script::Answer(OK)).await;
    let target = target(&addr, 2, "echo", Nanos::from_secs(30)).await;
    assert_eq!(target.call().await, Outcome::Ok);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Answers as a gateway does: each method named after an error kind fails
/// with it, the rest echo their arguments.
struct Kinds;

impl JsonBackend for Kinds {
    fn call<'a>(
        &'a self,
        _service: &'a str,
        method: &'a str,
        args: Value,
        _deadline: Nanos,
    ) -> BoxFuture<'a, Result<Value, HttpError>> {
        let result = match method {
            "overloaded" => Err(HttpError::Overloaded {
                message: "no capacity to meet the deadline".into(),
                retry_after: Nanos::from_millis(1_500),
            }),
            "deadline_exceeded" => Err(HttpError::DeadlineExceeded {
                deadline: Nanos::from_millis(5),
                may_have_run: true,
            }),
            "node_lost" => Err(HttpError::NodeLost {
                message: "node 3 died".into(),
                may_have_run: true,
            }),
            "node_lost_unsent" => Err(HttpError::NodeLost {
                message: "node 3 died before the call reached it".into(),
                may_have_run: false,
            }),
            "bad_arguments" => Err(HttpError::BadArguments("missing field `msg`".into())),
            _ => Ok(args),
        };
        Box::pin(async move { result })
    }
}

/// Every outcome class from ebb's own HTTP server, as a gateway answers:
/// 503 with `Retry-After` is `overloaded`, 504 `deadline_exceeded`, 502
/// `outcome_unknown` when the call may have run and a plain error when it
/// provably did not, a 400 by its kind; and each error response leaves the
/// connection fit for the next call (no reconnect).
#[tokio::test(flavor = "current_thread")]
async fn a_gateways_answers_land_in_their_classes_on_kept_connections() {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    let router = ebb_http::standalone(Kinds, HttpConfig::default());
    tokio::spawn(ebb_http::serve(listener, router, 64));
    let cases = [
        ("echo", Outcome::Ok),
        (
            "overloaded",
            Outcome::Overloaded {
                retry_after: Some(Nanos::from_millis(1_500)),
            },
        ),
        ("deadline_exceeded", Outcome::DeadlineExceeded),
        ("node_lost", Outcome::OutcomeUnknown),
        ("node_lost_unsent", Outcome::Other("node_lost".into())),
        ("bad_arguments", Outcome::Other("bad_arguments".into())),
    ];
    for (method, want) in cases {
        let target = target(&addr, 2, method, Nanos::from_secs(30)).await;
        let ends = run(&target, 40, 8).await;
        assert!(ends.iter().all(|o| *o == want), "{method}: {ends:?}");
        assert_eq!(target.reconnects(), 0, "{method}");
    }
}

/// A proxy's 429 with `Retry-After` and an HTML page: `overloaded` with
/// the wait it named, and the connection carries the next call.
#[tokio::test(flavor = "current_thread")]
async fn a_proxys_429_with_retry_after_is_overloaded() {
    const PAGE: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 2\r\ncontent-type: text/html\r\ncontent-length: 18\r\n\r\n<h1>slow down</h1>";
    let (addr, accepted) = scripted(Script::Answer(PAGE)).await;
    let target = target(&addr, 1, "echo", Nanos::from_secs(30)).await;
    let ends = run(&target, 10, 3).await;
    let asked = Outcome::Overloaded {
        retry_after: Some(Nanos::from_secs(2)),
    };
    assert!(ends.iter().all(|o| *o == asked), "{ends:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// Chunked answers, an error body split over chunks with an extension and
/// a trailer: read to their end, classified by the JSON kind inside them
/// (a 400 alone would be `http_400`), and the connections kept.
#[tokio::test(flavor = "current_thread")]
async fn chunked_answers_are_read_whole_and_the_connection_kept() {
    const OK_CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n\"hi\r\n1\r\n\"\r\n0\r\n\r\n";
    const ERR_CHUNKED: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n9;part=1\r\n{\"error\":\r\nf\r\n\"bad_arguments\"\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n";
    for (reply, want) in [
        (OK_CHUNKED, Outcome::Ok),
        (ERR_CHUNKED, Outcome::Other("bad_arguments".into())),
    ] {
        let (addr, accepted) = scripted(Script::Answer(reply)).await;
        let target = target(&addr, 2, "echo", Nanos::from_secs(30)).await;
        let ends = run(&target, 30, 7).await;
        assert!(ends.iter().all(|o| *o == want), "{ends:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(target.reconnects(), 0);
    }
}

/// A server that says `Connection: close` and closes after each reply:
/// every call is answered, each after the first on a new connection, and
/// each of those is counted as a reconnect. A reply with neither length
/// nor coding runs to the close: the same.
#[tokio::test(flavor = "current_thread")]
async fn a_server_closing_after_each_reply_costs_a_reconnect_per_call() {
    const CLOSING: &[u8] = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok";
    const TO_THE_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it";
    for reply in [CLOSING, TO_THE_CLOSE] {
        let (addr, accepted) = scripted(Script::AnswerAndClose(reply)).await;
        let target = target(&addr, 1, "echo", Nanos::from_secs(30)).await;
        let ends = run(&target, 12, 5).await;
        assert!(ends.iter().all(|o| *o == Outcome::Ok), "{ends:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 12);
        assert_eq!(target.reconnects(), 11);
    }
}

/// Broken answers: a connection closed after the request with no reply
/// (the request may have run), a body cut short, a body over the bound,
/// bytes that are no HTTP. None is reused.
#[tokio::test(flavor = "current_thread")]
async fn broken_answers_are_classified_and_their_connections_dropped() {
    const CUT: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
    const HUGE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n";
    const GARBAGE: &[u8] = b"SSH-2.0-OpenSSH\r\n\r\n";
    let cases = [
        (Script::AnswerAndClose(b""), Outcome::OutcomeUnknown),
        (
            Script::AnswerAndClose(CUT),
            Outcome::Other("response_unreadable".into()),
        ),
        (
            Script::Answer(HUGE),
            Outcome::Other("response_unreadable".into()),
        ),
        (Script::Answer(GARBAGE), Outcome::OutcomeUnknown),
    ];
    for (script, want) in cases {
        let (addr, accepted) = scripted(script).await;
        let target = target(&addr, 1, "echo", Nanos::from_secs(30)).await;
        let ends = run(&target, 4, 4).await;
        assert!(ends.iter().all(|o| *o == want), "{want:?}: {ends:?}");
        assert_eq!(accepted.load(Ordering::SeqCst), 4, "{want:?}");
        assert_eq!(target.reconnects(), 3, "{want:?}");
    }
}
