//! Ctrl-C at the terminal that runs `ebb up`: the SIGINT reaches every
//! process of the foreground group, yet a call in flight still finishes
//! and its reply reaches the caller, because process and VM nodes (and the
//! origin store) live in groups of their own and are drained by the
//! gateway, not killed by the signal.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use gateway_common::{MAX_POLLS, POLL_PAUSE, Up, alive, any_node, pool_extra};
use std::process::Command;

/// How long the call in flight holds its node: long enough that the
/// signal lands while it runs (the test waits until the node has it),
/// short of the drain bound (`pool.shutdown_grace_ms`: 10 s by default,
/// [`gateway_common::VM_SHUTDOWN_GRACE_MS`] for a VM pool).
const CALL_MILLIS: u64 = 2_000;

#[test]
fn a_terminal_ctrl_c_lets_the_call_in_flight_finish_through_ebb_up() {
    let data = tempfile::tempdir().unwrap();
    let config = format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 1\n\
         [origin]\ndata = {:?}\n",
        data.path().display().to_string()
    );
    let mut up = Up::start_as_terminal_job("interrupt", &config);
    up.wait_ready(1);
    // The node and the origin store `ebb up` started.
    let nodes = up.node_pids();
    assert_eq!(nodes.len(), 2, "a node and the origin: {nodes:?}");
    for p in &nodes {
        assert_eq!(
            process_group(*p),
            *p,
            "child {p} leads a process group of its own, out of reach of the terminal's Ctrl-C"
        );
    }
    assert_eq!(process_group(up.pid()), up.pid());
    call_in_flight_survives_a_terminal_ctrl_c(&mut up, nodes);
}

/// The same with a VM node: QEMU leads a process group of its own, so the
/// guest is drained and stopped by `ebb up` rather than ended by the
/// terminal's SIGINT with the call inside it.
#[test]
fn a_terminal_ctrl_c_lets_a_vm_nodes_call_in_flight_finish() {
    const NAME: &str = "a_terminal_ctrl_c_lets_a_vm_nodes_call_in_flight_finish";
    if let Some(why) = common::vm_nodes_unavailable() {
        ebb_testkit::skip_or_fail(NAME, &why);
        return;
    }
    let config = format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"vm\"\ninitial = 1\nmin = 1\nmax = 1\n{}",
        pool_extra("vm")
    );
    assert!(
        config.contains(&format!(
            "shutdown_grace_ms = {}",
            gateway_common::VM_SHUTDOWN_GRACE_MS
        )),
        "the VM pool's drain bound is the generous one: {config}"
    );
    let mut up = Up::start_as_terminal_job("interrupt-vm", &config);
    up.wait_booted();
    let nodes = up.node_pids();
    assert_eq!(nodes.len(), 1, "one QEMU: {nodes:?}");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", nodes[0])).unwrap();
    assert!(comm.starts_with("qemu"), "the child is QEMU: {comm}");
    assert_eq!(
        process_group(nodes[0]),
        nodes[0],
        "QEMU leads a process group of its own, out of reach of the terminal's Ctrl-C"
    );
    call_in_flight_survives_a_terminal_ctrl_c(&mut up, nodes);
}

/// Makes a call that holds the one node, sends Ctrl-C to the terminal's
/// group while it runs, and checks that the call was answered, that the
/// node was drained and stopped by `ebb up`, and that none of `nodes` is
/// left.
fn call_in_flight_survives_a_terminal_ctrl_c(up: &mut Up, nodes: Vec<u32>) {
    let rpc = up.rpc.to_string();
    let call = std::thread::spawn(move || {
        Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["call", "--addr", &rpc, "--timeout-ms", "60000"])
            .args(["Demo.sleep", &format!("{{\"millis\":{CALL_MILLIS}}}")])
            .output()
            .unwrap()
    });
    up.wait_until("the call in flight on the node", |s| {
        any_node(s, |n| n["in_flight"] == 1)
    });
    up.interrupt_group();
    let out = call.join().unwrap();
    assert!(
        out.status.success(),
        "the call in flight at Ctrl-C was answered: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        CALL_MILLIS.to_string()
    );
    up.wait_exit();
    let mut polls = 0;
    while !up.output().iter().any(|l| l == "stopped") {
        polls += 1;
        assert!(polls < MAX_POLLS, "no `stopped` line: {:?}", up.output());
        std::thread::sleep(POLL_PAUSE);
    }
    let lines = up.output();
    // The node was drained and stopped by the gateway, not ended by the
    // terminal's SIGINT.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("draining -> gone (stopped after draining")),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("SIGINT")), "{lines:?}");
    let left: Vec<u32> = nodes.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

/// The process group of `pid`, from /proc (the field after the parent).
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid pgrp ...: comm may hold spaces.
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn a_second_ctrl_c_stops_ebb_up_at_once_and_leaves_no_node() {
    let config = "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
                  [service]\nname = \"demo\"\n\
                  [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 1\n";
    let mut up = Up::start_as_terminal_job("interrupt-twice", config);
    up.wait_ready(1);
    let nodes = up.node_pids();
    assert_eq!(nodes.len(), 1, "one node: {nodes:?}");
    // A call the drain would wait for, longer than the drain's bound: only
    // the second Ctrl-C ends `ebb up` with status 130.
    let mut call = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "call",
            "--addr",
            &up.rpc.to_string(),
            "--timeout-ms",
            "60000",
        ])
        .args(["Demo.sleep", r#"{"millis":30000}"#])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    up.wait_until("the call in flight on the node", |s| {
        any_node(s, |n| n["in_flight"] == 1)
    });
    up.interrupt_group();
    let mut polls = 0;
    while !up.output().iter().any(|l| l.starts_with("shutting down")) {
        polls += 1;
        assert!(polls < MAX_POLLS, "no shutdown line: {:?}", up.output());
        std::thread::sleep(POLL_PAUSE);
    }
    up.interrupt_group();
    let status = up.wait_status();
    assert_eq!(status.code(), Some(130), "{:?}", up.output());
    // The caller would retry its idempotent call until its deadline.
    let _ = call.kill();
    let _ = call.wait();
    let mut polls = 0;
    while nodes.iter().any(|p| alive(*p)) {
        polls += 1;
        assert!(polls < MAX_POLLS, "node left behind: {nodes:?}");
        std::thread::sleep(POLL_PAUSE);
    }
}
