//! Ctrl-C during `ebb load` and `ebb demo`: sending stops, the requests in
//! flight end, and the report of what was sent still prints (and, for the
//! demo, is written), over the time actually sent for; the exit status of
//! both says it was interrupted.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Polls made, at most, for the load to reach the node.
const MAX_POLLS: usize = 20_000;

#[test]
fn ctrl_c_stops_sending_and_still_reports_what_was_sent() {
    let node = common::ebb(&["node", "--listen", "127.0.0.1:0"]);
    let addr: std::net::SocketAddr = node.addr.parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "load",
            "--target",
            &node.addr,
            "--rate",
            "200",
            "--duration",
            "600",
        ])
        .args([
            "--method",
            "Demo.incr",
            "--args",
            r#"{"key":"load"}"#,
            // Far past any stall of a loaded machine: every call sent is
            // to end `ok`, not by `ebb load`'s default second.
            "--deadline-ms",
            "30000",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The load has reached the node once the counter it bumps moved past
    // this test's own increments.
    let mut polls = 0;
    let mut own = 0;
    loop {
        own += 1;
        if common::incr(addr, "load") > own {
            break;
        }
        polls += 1;
        assert!(polls < MAX_POLLS, "the load never reached the node");
        std::thread::yield_now();
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not
    // waited for, so the pid is still that child's.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT delivered");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted after"), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = r["sent"].as_u64().unwrap();
    assert!(sent > 0, "{r}");
    assert_eq!(
        r["ok"].as_u64(),
        Some(sent),
        "every request sent ended: {r}"
    );
    assert_eq!(r["unfinished"].as_u64(), Some(0), "{r}");
    let secs = r["duration_s"].as_f64().unwrap();
    assert!(
        secs > 0.0 && secs < 600.0,
        "the time actually sent for: {r}"
    );
    // The node counted every increment the report calls ok, plus the
    // test's own: no acknowledged call was lost, none ran twice.
    assert_eq!(common::incr(addr, "load"), sent + own + 1, "{r}");
}

/// Lines read, at most, before the demo's first live line.
const MAX_LINES: usize = 100;

#[test]
fn ctrl_c_ends_a_demo_with_its_report_and_the_same_status_as_load() {
    let out = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["demo", "--seconds", "600", "--kind", "thread", "--plain"])
        .args(["--gets", "0", "--puts", "0", "--trace", "steady"])
        .arg("--out")
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first live line comes from inside the run, after the Ctrl-C
    // handler is in place.
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    for _ in 0..MAX_LINES {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "the demo ended before running: {seen}"
        );
        seen.push_str(&line);
        if line.starts_with('[') && line.contains("| nodes ") {
            break;
        }
    }
    assert!(seen.contains("nodes"), "no live line: {seen}");
    // SAFETY: kill(2) on the pid of a child this test spawned and has not
    // waited for, so the pid is still that child's.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT delivered");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}\n{seen}{rest}");
    assert!(
        rest.contains("interrupted: the report covers the run up to the stop")
            && rest.contains("summary: "),
        "{rest}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert!(summary["requests"].as_u64().is_some(), "{summary}");
    assert!(out.path().join("index.html").exists());
}
