//! `ebb node` and `ebb call` as processes: replies on stdout, and failures
//! that exit non-zero with a message naming the problem.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

fn call(addr: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", addr])
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn failure(o: &Output) -> String {
    assert!(!o.status.success(), "expected failure, got {}", stdout(o));
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn call_prints_json_replies_and_explains_failures() {
    let node = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let a = node.addr.as_str();

    assert_eq!(
        stdout(&call(a, &["Demo.incr", r#"{"key":"a"}"#])),
        r#"{"Ok":1}"#
    );
    assert_eq!(
        stdout(&call(a, &["Demo.incr", r#"{"key":"a"}"#])),
        r#"{"Ok":2}"#
    );
    assert_eq!(
        stdout(&call(a, &["Demo.echo", r#"{"msg":"hi"}"#])),
        r#""hi""#
    );

    let e = failure(&call(a, &["Demo.nope", "{}"]));
    assert!(
        e.contains("Demo.nope") && e.contains("echo, work, sleep, incr, get, put"),
        "{e}"
    );

    let e = failure(&call(a, &["Demo.incr", "{key"]));
    assert!(e.contains("not valid JSON") && e.contains("{key"), "{e}");

    let e = failure(&call(a, &["Demo.incr", r#"{"kex":"a"}"#]));
    assert!(e.contains("kex"), "{e}");

    let e = failure(&call(a, &["incr", "{}"]));
    assert!(e.contains("SERVICE.METHOD"), "{e}");

    let e = failure(&call(a, &["Nope.incr", "{}"]));
    assert!(e.contains("Nope") && e.contains("Demo"), "{e}");

    let e = failure(&call(
        a,
        &["--timeout-ms", "50", "Demo.sleep", r#"{"millis":5000}"#],
    ));
    assert!(e.contains("deadline") && e.contains("--timeout-ms"), "{e}");
}

#[test]
fn call_to_a_closed_port_names_the_address() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let e = failure(&call(&addr, &["Demo.echo", r#"{"msg":"x"}"#]));
    assert!(e.contains(&addr) && e.contains("ebb node"), "{e}");
}
