//! `ebb node` and `ebb call` as processes: replies on stdout, and failures
//! that exit non-zero with a message naming the problem.
#![allow(clippy::unwrap_used)]

mod common;

use common::call;

use std::process::{Command, Output};

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

#[test]
fn arguments_come_from_a_file_or_stdin_even_at_ten_megabytes() {
    use std::io::Write;
    use std::process::Stdio;
    const MSG_BYTES: usize = 10 * 1024 * 1024;
    let node = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let a = node.addr.as_str();
    let msg = "x".repeat(MSG_BYTES);
    let json = format!(r#"{{"msg":"{msg}"}}"#);
    let file = tempfile::Builder::new()
        .prefix("ebb-call-args-")
        .suffix(".json")
        .tempfile()
        .unwrap();
    let path = file.path();
    std::fs::write(path, &json).unwrap();
    let out = call(
        a,
        &[
            "Demo.echo",
            &format!("@{}", path.display()),
            "--timeout-ms",
            "60000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout(&out).len(),
        MSG_BYTES + 2,
        "the reply is the quoted message"
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", a, "Demo.incr", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"key":"from-stdin"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), r#"{"Ok":1}"#);

    let e = failure(&call(a, &["Demo.echo", "@/nonexistent/args.json"]));
    assert!(
        e.contains("\"/nonexistent/args.json\" (given as @FILE)"),
        "{e}"
    );
}

#[test]
fn bad_flags_say_what_is_accepted_and_errors_carry_no_backtrace() {
    let e = failure(&call("127.0.0.1:1", &["Demo.echo", "--timeout-ms", "-1"]));
    assert!(
        e.contains("\"-1\" is not a timeout: give a whole number of milliseconds from 1"),
        "{e}"
    );
    assert!(!e.contains("-- -1"), "{e}");

    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", "127.0.0.1:1", "Demo.echo"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let e = failure(&out);
    assert!(e.starts_with("Error: "), "{e}");
    assert!(!e.contains("backtrace"), "{e}");
    assert_eq!(out.status.code(), Some(1));
}
