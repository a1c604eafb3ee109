//! `ebb load` as a real process against `ebb node` (and against a fake HTTP
//! server that behaves like a failing proxy): every arrival is accounted
//! for, and each way a request can end lands in its class.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use serde_json::Value;

/// Runs `ebb load ARGS --json` and returns its report.
fn load(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("load")
        .args(args)
        .arg("--json")
        .output()
        .expect("the ebb binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ebb load {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {report}"))
}

/// The report's own accounting: nothing scheduled goes missing.
fn assert_counts_add_up(r: &Value) {
    assert_eq!(n(r, "scheduled"), n(r, "sent") + n(r, "not_sent"), "{r}");
    let ended: u64 = [
        "ok",
        "overloaded",
        "deadline_exceeded",
        "outcome_unknown",
        "other_errors",
        "unfinished",
    ]
    .iter()
    .map(|f| n(r, f))
    .sum();
    assert_eq!(n(r, "sent"), ended, "{r}");
    let by_label: u64 = r["errors"]
        .as_object()
        .expect("errors is an object")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(by_label, ended - n(r, "ok") - n(r, "unfinished"), "{r}");
    for field in [
        "achieved_rate",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
    ] {
        assert!(r[field].is_number(), "{field} missing in {r}");
    }
}

fn node() -> common::Proc {
    common::ebb_listening(
        &["node", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        2,
    )
}

#[test]
fn every_call_to_a_healthy_node_succeeds_over_rpc_and_http() {
    let node = node();
    for (target, http) in [(&node.addrs[0], false), (&node.addrs[1], true)] {
        let mut args = vec![
            "--target",
            target,
            "--rate",
            "300",
            "--duration",
            "1",
            "--method",
            "Demo.echo",
            "--args",
            r#"{"msg":"hi"}"#,
            "--deadline-ms",
            "30000",
            "--seed",
            "3",
        ];
        if http {
            args.push("--http");
        }
        let r = load(&args);
        assert_counts_add_up(&r);
        assert!(n(&r, "sent") > 0, "{r}");
        assert_eq!(n(&r, "ok"), n(&r, "sent"), "{r}");
        assert_eq!(r["protocol"], if http { "http" } else { "rpc" });
        // The drawn count is reported beside the rate that was asked for.
        assert_eq!(r["requested_rate"].as_f64(), Some(300.0), "{r}");
        assert!(r["offered_rate"].is_number(), "{r}");
        assert!(r["p50_ms"].as_f64().is_some_and(|p| p > 0.0), "{r}");
    }
}

#[test]
fn calls_past_their_deadline_are_counted_as_deadline_exceeded() {
    let node = node();
    for (target, http) in [(&node.addrs[0], false), (&node.addrs[1], true)] {
        let mut args = vec![
            "--target",
            target,
            "--rate",
            "50",
            "--duration",
            "0.5",
            "--method",
            "Demo.sleep",
            "--args",
            r#"{"millis":60000}"#,
            "--deadline-ms",
            "50",
        ];
        if http {
            args.push("--http");
        }
        // The node cancels each call a grace past its deadline and says
        // `OutcomeUnknown`; a generator descheduled past that grace reads
        // the cancellation before its own deadline timer fires, and still
        // counts the call `deadline_exceeded` (the client session's rule,
        // pinned where it can be forced: ebb-rpc's
        // `a_cancellation_read_before_the_deadline_timer_ends_the_call_past_its_deadline`).
        let r = load(&args);
        assert_counts_add_up(&r);
        assert!(n(&r, "sent") > 0, "{r}");
        assert_eq!(n(&r, "deadline_exceeded"), n(&r, "sent"), "{r}");
    }
}

#[test]
fn an_unknown_method_over_http_is_counted_under_its_kind() {
    let node = node();
    let r = load(&[
        "--target",
        &node.addrs[1],
        "--http",
        "--rate",
        "100",
        "--duration",
        "0.5",
        "--method",
        "Demo.nope",
        "--args",
        "{}",
    ]);
    assert_counts_add_up(&r);
    assert!(n(&r, "sent") > 0, "{r}");
    assert_eq!(n(&r, "other_errors"), n(&r, "sent"), "{r}");
    assert_eq!(r["errors"]["unknown_method"], r["sent"], "{r}");
}

/// With room for one outstanding request and each taking far longer than
/// the gap between arrivals, later arrivals are counted as not sent.
#[test]
fn arrivals_past_the_outstanding_bound_are_counted_not_sent() {
    let node = node();
    let r = load(&[
        "--target",
        &node.addrs[0],
        "--rate",
        "200",
        "--duration",
        "0.5",
        "--method",
        "Demo.sleep",
        "--args",
        r#"{"millis":2000}"#,
        "--deadline-ms",
        "10000",
        "--max-outstanding",
        "1",
    ]);
    assert_counts_add_up(&r);
    assert_eq!(n(&r, "sent"), 1, "{r}");
    assert!(n(&r, "not_sent") > 0, "{r}");
    assert_eq!(n(&r, "ok"), 1, "{r}");
}

/// A fake HTTP server: answers every request on a connection with `reply`
/// (or, if `None`, closes the connection after reading the request, as a
/// proxy whose upstream died would). Serves until the test ends.
fn fake_server(reply: Option<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("bound").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve_one(stream, reply));
        }
    });
    addr
}

fn serve_one(stream: TcpStream, reply: Option<&str>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let Some(reply) = reply else { return };
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

const PAGE_503: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\ncontent-length: 19\r\n\r\n<h1>no server</h1>\n";
const PAGE_502: &str = "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\ncontent-length: 17\r\n\r\n<h1>bad gw</h1>\n\n";

#[test]
fn a_proxys_error_pages_and_broken_connections_are_classified() {
    let cases = [
        (fake_server(Some(PAGE_503)), "overloaded"),
        (fake_server(Some(PAGE_502)), "outcome_unknown"),
        (fake_server(None), "outcome_unknown"),
    ];
    for (addr, class) in &cases {
        // A deadline no wait for the fake server's threads can reach, even
        // on a loaded machine: the default second (and the client's grace
        // past it) would class a slow answer `deadline_exceeded`, not by
        // what the proxy said. The run still ends as soon as every call
        // has its answer.
        let r = load(&[
            "--target",
            addr,
            "--http",
            "--rate",
            "100",
            "--duration",
            "0.5",
            "--method",
            "Demo.echo",
            "--args",
            r#"{"msg":"x"}"#,
            "--connections",
            "2",
            "--deadline-ms",
            "60000",
        ]);
        assert_counts_add_up(&r);
        assert!(n(&r, "sent") > 0, "{r}");
        assert_eq!(n(&r, class), n(&r, "sent"), "{class}: {r}");
    }
}

#[test]
fn bad_flags_are_refused_naming_the_input() {
    let cases: [(&[&str], &str); 5] = [
        (&["--rate", "0"], "--rate 0"),
        (&["--rate", "10", "--args", "{oops"], "--args"),
        (&["--rate", "10", "--args", "[1]"], "must be a JSON object"),
        (&["--rate", "10", "--method", "work"], "SERVICE.METHOD"),
        (
            &["--rate", "10", "--method", "Nope.work"],
            "unknown service",
        ),
    ];
    let node = node();
    for (args, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["load", "--target", &node.addrs[0], "--duration", "0.1"])
            .args(args)
            .output()
            .expect("the ebb binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_target_that_is_not_listening_is_named_before_anything_is_sent() {
    // Port 1 on loopback: privileged and unused, so the connect is refused.
    for http in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebb"));
        cmd.args([
            "load",
            "--target",
            "127.0.0.1:1",
            "--rate",
            "10",
            "--duration",
            "0.1",
        ]);
        if http {
            cmd.arg("--http");
        }
        let out = cmd.output().expect("the ebb binary runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "http={http}");
        assert!(stderr.contains("127.0.0.1:1"), "http={http}: {stderr}");
        assert!(stderr.contains("listening there"), "http={http}: {stderr}");
    }
}

/// Three sender threads share a trace of 300 arrivals (per-second counts,
/// so the count is exact, not drawn): together they send every one, each
/// answered, and the report carries how late the generator sent them and
/// the connections opened over all threads.
#[test]
fn several_sender_threads_together_send_the_schedule_and_report_their_lag() {
    let node = node();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let trace = dir.path().join("counts.txt");
    std::fs::write(&trace, "100\n150\n50\n").expect("the trace is written");
    let trace = trace.to_str().expect("a UTF-8 path");
    let r = load(&[
        "--target",
        &node.addrs[0],
        "--trace",
        trace,
        "--duration",
        "3",
        "--threads",
        "3",
        "--connections",
        "4",
        "--method",
        "Demo.echo",
        "--args",
        r#"{"msg":"hi"}"#,
        "--deadline-ms",
        "30000",
    ]);
    assert_counts_add_up(&r);
    assert_eq!(n(&r, "scheduled"), 300, "{r}");
    assert_eq!((n(&r, "sent"), n(&r, "ok")), (300, 300), "{r}");
    assert_eq!(n(&r, "threads"), 3, "{r}");
    // --connections counts them all: split 2 + 1 + 1 over the threads.
    assert_eq!(n(&r, "connections"), 4, "{r}");
    // A trace's arrivals are its own: no Poisson rate was asked for.
    assert!(r["requested_rate"].is_null(), "{r}");
    let lag = |f: &str| {
        r[f].as_f64()
            .unwrap_or_else(|| panic!("{f} missing in {r}"))
    };
    // A send lag is recorded per request sent, so the quantiles exist and
    // are ordered; whether the generator was behind is said either way.
    assert!(lag("send_lag_p50_ms") > 0.0, "{r}");
    assert!(lag("send_lag_p50_ms") <= lag("send_lag_p99_ms"), "{r}");
    assert!(lag("send_lag_p99_ms") <= lag("send_lag_max_ms"), "{r}");
    assert!(r["generator_behind"].is_boolean(), "{r}");
}
