//! `ebb node --http`: the node serves HTTP/JSON beside RPC, on the same
//! service instance, with the documented errors.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{Value, json};

/// One HTTP/1.1 POST on a fresh connection; returns status and JSON body.
fn post(addr: &str, path: &str, body: &str) -> (u16, Value) {
    post_with(addr, path, "", body)
}

/// As `post`, with extra header lines (each ending in `\r\n`).
fn post_with(addr: &str, path: &str, headers: &str, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("the node's HTTP port accepts");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: node\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let (_, body) = response
        .split_once("\r\n\r\n")
        .expect("a response has a body");
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

#[test]
fn http_and_rpc_reach_the_same_service_instance() {
    let node = common::ebb_listening(
        &["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        2,
    );
    let (rpc, http) = (&node.addrs[0], &node.addrs[1]);
    assert_eq!(
        post(http, "/rpc/Demo/incr", r#"{"key":"a"}"#),
        (200, json!({"Ok": 1}))
    );
    assert_eq!(
        post(http, "/rpc/Demo/incr", r#"{"key":"a"}"#),
        (200, json!({"Ok": 2}))
    );
    let over_rpc = common::incr(rpc.parse().expect("a socket address"), "a");
    assert_eq!(over_rpc, 3, "the RPC call saw the HTTP calls' counter");
    assert_eq!(
        post(http, "/rpc/Demo/echo", r#"{"msg":"hi"}"#),
        (200, json!("hi"))
    );
    assert_eq!(
        post(http, "/rpc/Demo/work", r#"{"micros":10}"#),
        (200, json!(10))
    );
}

#[test]
fn http_errors_are_the_documented_kinds() {
    let node = common::ebb_listening(
        &["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        2,
    );
    let http = &node.addrs[1];
    let cases = [
        ("/rpc/Demo/nope", "{}", 404, "unknown_method"),
        ("/rpc/Nope/echo", "{}", 404, "unknown_service"),
        ("/rpc/Demo/incr", r#"{"key":1}"#, 400, "bad_arguments"),
        ("/rpc/Demo/incr", "{", 400, "bad_request"),
        ("/status/nothing", "{}", 404, "not_found"),
    ];
    for (path, body, status, kind) in cases {
        let (got, json) = post(http, path, body);
        assert_eq!(
            (got, json["error"].as_str()),
            (status, Some(kind)),
            "{path} {body}: {json}"
        );
    }
}

/// A request axum itself refuses before the node's handler runs (a path
/// parameter that is not UTF-8) still gets a JSON body with an `error`
/// kind, as the gateway's errors do, not axum's plain text.
#[test]
fn axums_own_refusals_are_json_too() {
    let node = common::ebb_listening(
        &["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        2,
    );
    let http = &node.addrs[1];
    let (status, json) = post(http, "/rpc/Demo/%FF", "{}");
    assert_eq!(
        (status, json["error"].as_str()),
        (400, Some("bad_request")),
        "{json}"
    );
    assert!(
        json["message"].as_str().is_some_and(|m| !m.is_empty()),
        "axum's own explanation is kept as the message: {json}"
    );
}

#[test]
fn an_http_address_that_is_taken_fails_before_the_node_says_it_listens() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().expect("bound").to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["node", "--listen", "127.0.0.1:0", "--http", &addr])
        .output()
        .expect("ebb runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("--http {addr}: cannot listen there")),
        "{stderr}"
    );
    assert!(
        !stdout.contains("listening"),
        "a script waiting for the line would take a failing node for a serving one: {stdout}"
    );
}

/// How long each `Demo.work` below spins: long enough for all of them to
/// be seen running at once even on a loaded machine (it spins on wall
/// time, so the load does not stretch it).
const WORK_MICROS: u64 = 3_000_000;
/// Bound on polling the node's threads for the calls to be running.
const MAX_POLLS: usize = 3_000;
const POLL_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// `ebb node --http --threads 1` resized to 3 over RPC (what a gateway
/// does to scale the node up) runs three HTTP `Demo.work` calls at once:
/// the HTTP side runs its blocking calls on the RPC server's workers, so
/// it follows the resize. Seen from the kernel: three `ebb-worker` threads
/// runnable at one instant (`work` spins), not from timing.
#[test]
fn the_http_side_follows_a_resize_over_rpc() {
    let node = common::ebb_listening(
        &[
            "node",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--threads",
            "1",
        ],
        2,
    );
    let (rpc, http) = (node.addrs[0].clone(), node.addrs[1].clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let three = std::num::NonZeroU32::new(3).expect("3 is not zero");
    let took = rt.block_on(async {
        let client = ebb::rpc::transport::TcpClient::connect(&rpc)
            .await
            .expect("the node accepts RPC");
        client.resize(three, ebb_core::Nanos::from_secs(30)).await
    });
    assert_eq!(took.expect("the node answers the resize"), Some(three));
    let body = format!(r#"{{"micros":{WORK_MICROS}}}"#);
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let (http, body) = (http.clone(), body.clone());
            // Past any stall: the default deadline (1 s) is shorter than
            // the call.
            let deadline = "ebb-deadline-ms: 60000\r\n";
            std::thread::spawn(move || post_with(&http, "/rpc/Demo/work", deadline, &body))
        })
        .collect();
    let mut running = Vec::new();
    for _ in 0..MAX_POLLS {
        running = common::worker_stat_fields(node.pid())
            .iter()
            .filter_map(|fields| fields.first().cloned())
            .collect();
        if running.iter().filter(|s| *s == "R").count() >= 3 {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    assert_eq!(
        running.iter().filter(|s| *s == "R").count(),
        3,
        "three HTTP work calls running at once after the resize to 3; worker states: {running:?}"
    );
    for call in calls {
        let answered = call.join().expect("the caller thread ends");
        assert_eq!(answered, (200, json!(WORK_MICROS)));
    }
}
