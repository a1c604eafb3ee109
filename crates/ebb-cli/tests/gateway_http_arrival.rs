//! An HTTP call arrives at the gateway when hyper hands its request over,
//! before its body is read: its deadline counts from there. A call whose
//! head came in, then whose body came only after its deadline had passed,
//! is answered `deadline_exceeded` without reaching a node. The wait for
//! the body is the client's, though: the gateway's own delay, which
//! admission refuses as `gateway_behind` past its bound, counts from when
//! the body was in, so a slow body within its deadline is served.
//!
//! When the request was handed over is seen from outside: the request
//! asks for `100 Continue`, which hyper sends once the gateway reads the
//! body, so after the hand-over. A span the client waits before sending
//! the body has then certainly passed since the hand-over, however late
//! the gateway got to the request.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use gateway_common::{Up, metric};
use serde_json::{Value, json};

/// The late call's deadline, the smallest a request may ask for.
const DEADLINE_MS: u64 = 1;
/// How long the client holds the body back after `100 Continue`: longer
/// than the deadline, so it has passed since the hand-over.
const HOLD_BODY: Duration = Duration::from_millis(5 * DEADLINE_MS);
/// The gateway's bound on its own delay in the slow-body test: far above
/// how long a loaded machine keeps the gateway from deciding on a request
/// whose body is in.
const MAX_GATEWAY_DELAY_MS: u64 = 50;
/// How long the slow client holds its body back: four times that bound.
const HOLD_SLOW_BODY: Duration = Duration::from_millis(4 * MAX_GATEWAY_DELAY_MS);
/// A deadline the slow body fits in, and one it does not (shorter than
/// the hold, longer than the gateway's bound on its own delay).
const ROOMY_DEADLINE_MS: u64 = 10_000;
const SHORT_DEADLINE_MS: u64 = 2 * MAX_GATEWAY_DELAY_MS;
/// Bound on each read from the gateway.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the bytes of a head read from the gateway.
const MAX_HEAD_BYTES: usize = 16 * 1024;

fn config(admission_extra: &str) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 7\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"thread\"\ninitial = 1\nmin = 1\nmax = 1\n\
         [balance]\npolicy = \"rr\"\n\
         [admission]\nenabled = true\ndefault_deadline_ms = 10000\n{admission_extra}"
    )
}

/// Reads up to the end of one response head (the blank line).
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < MAX_HEAD_BYTES, "no end of head in {head:?}");
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed after {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// `Demo.incr` of `body` with a deadline of `deadline_ms`, its body sent
/// `hold` after the gateway asked for it with `100 Continue`: the
/// response's head and JSON body.
fn incr_with_slow_body(up: &Up, body: &str, deadline_ms: u64, hold: Duration) -> (String, Value) {
    let mut s = TcpStream::connect(up.http).unwrap();
    s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let head = format!(
        "POST /rpc/Demo/incr HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         Expect: 100-continue\r\nebb-deadline-ms: {deadline_ms}\r\n\r\n",
        up.http,
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    let interim = read_head(&mut s);
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue"),
        "the gateway reads the body only once asked: {interim:?}"
    );
    std::thread::sleep(hold);
    s.write_all(body.as_bytes()).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    let (head, json) = rest.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), serde_json::from_str(json).unwrap())
}

#[test]
fn a_body_sent_after_the_deadline_counted_from_the_hand_over_is_too_late() {
    let up = Up::start("http-arrival", &config(""));
    up.wait_ready(1);
    let body = r#"{"key":"late"}"#;
    let (head, json) = incr_with_slow_body(&up, body, DEADLINE_MS, HOLD_BODY);
    assert!(head.starts_with("HTTP/1.1 504"), "{head}\n{json}");
    assert_eq!(json["error"], "deadline_exceeded", "{json}");
    assert_eq!(json["may_have_run"], false, "{json}");
    // The late call never ran: the first `incr` of its key that reaches
    // the node counts 1.
    let (code, json, _) = up.post("/rpc/Demo/incr", body, &[]);
    assert_eq!((code, json), (200, json!({"Ok": 1})));
    up.stop();
}

/// A body held back four times the gateway's bound on its own delay is
/// served when its deadline leaves room, not refused as `gateway_behind`;
/// with a deadline shorter than the hold, counted from the hand-over, it
/// is too late, and never runs.
#[test]
fn a_slow_body_within_its_deadline_is_not_the_gateway_falling_behind() {
    let extra = format!("max_gateway_delay_ms = {MAX_GATEWAY_DELAY_MS}\n");
    let up = Up::start("http-slow-body", &config(&extra));
    up.wait_ready(1);
    let body = r#"{"key":"slow"}"#;
    let (head, json) = incr_with_slow_body(&up, body, ROOMY_DEADLINE_MS, HOLD_SLOW_BODY);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{json}");
    assert_eq!(json, json!({"Ok": 1}));
    let refused = "ebb_gateway_admission_refusals_total{rule=\"gateway_behind\"}";
    assert_eq!(metric(up.http, refused), 0);

    let (head, json) = incr_with_slow_body(&up, body, SHORT_DEADLINE_MS, HOLD_SLOW_BODY);
    assert!(head.starts_with("HTTP/1.1 504"), "{head}\n{json}");
    assert_eq!(json["error"], "deadline_exceeded", "{json}");
    assert_eq!(json["may_have_run"], false, "{json}");
    let (code, json, _) = up.post("/rpc/Demo/incr", body, &[]);
    assert_eq!((code, json), (200, json!({"Ok": 2})), "the late call ran");
    assert_eq!(metric(up.http, refused), 0);
    up.stop();
}
