//! Thread and process nodes behind the `NodeProvider` interface: each node
//! serves the demo service at the address `start` returned, keeps its own
//! state, and is reported gone when stopped or when it dies.
#![allow(clippy::unwrap_used)]

mod common;

use common::incr;
use ebb_core::NodeId;
use ebb_demo::{DemoServer, DemoService};
use ebb_node::process::{ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::{NodeEvent, NodeProvider, StartedNode};
use ebb_node::thread::ThreadProvider;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const EBB: &str = env!("CARGO_BIN_EXE_ebb");
/// Bound on polls for an event (with a 2 ms pause each: 10 s in all).
const MAX_POLLS: u32 = 5_000;

/// Polls until an event `want`s; events polled before it are kept in
/// `backlog` for later waits, so none is lost.
fn wait_for(
    p: &mut dyn NodeProvider,
    backlog: &mut Vec<NodeEvent>,
    want: impl Fn(&NodeEvent) -> bool,
) -> NodeEvent {
    for _ in 0..MAX_POLLS {
        backlog.extend(p.poll_events());
        if let Some(i) = backlog.iter().position(&want) {
            return backlog.remove(i);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the expected event never came; saw {backlog:?}");
}

fn ready(p: &mut dyn NodeProvider, id: NodeId) {
    let e = wait_for(
        p,
        &mut Vec::new(),
        |e| matches!(e, NodeEvent::Ready(i) | NodeEvent::Gone(i, _) if *i == id),
    );
    assert_eq!(
        e,
        NodeEvent::Ready(id),
        "node {} did not become ready",
        id.0
    );
}

fn gone(p: &mut dyn NodeProvider, backlog: &mut Vec<NodeEvent>, id: NodeId) -> String {
    match wait_for(
        p,
        backlog,
        |e| matches!(e, NodeEvent::Gone(i, _) if *i == id),
    ) {
        NodeEvent::Gone(_, why) => why,
        NodeEvent::Ready(_) => unreachable!("filtered out"),
    }
}

/// Three nodes, each with its own counter; stopping one leaves the others.
fn nodes_serve_separately_and_stop(p: &mut dyn NodeProvider) {
    let nodes: Vec<StartedNode> = (1..=3).map(|i| p.start(NodeId(i)).unwrap()).collect();
    // Started together, ready in any order.
    let mut backlog = Vec::new();
    let mut pending: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    while !pending.is_empty() {
        match wait_for(p, &mut backlog, |_| true) {
            NodeEvent::Ready(id) => pending.retain(|p| *p != id),
            gone @ NodeEvent::Gone(..) => panic!("a node died while starting: {gone:?}"),
        }
    }
    assert!(nodes.iter().all(|n| n.kind == p.kind()));
    assert_eq!(incr(nodes[0].addr, "k"), 1);
    assert_eq!(incr(nodes[0].addr, "k"), 2);
    assert_eq!(incr(nodes[1].addr, "k"), 1, "nodes must not share state");

    p.stop(nodes[0].id).unwrap();
    let why = gone(p, &mut backlog, nodes[0].id);
    eprintln!("{} node gone: {why}", p.kind().as_str());
    assert!(
        TcpStream::connect(nodes[0].addr).is_err(),
        "a stopped node's port still accepts"
    );
    assert_eq!(incr(nodes[1].addr, "k"), 2, "the other nodes keep serving");
    assert!(p.stop(NodeId(99)).is_err(), "stopping an unknown node");
}

#[test]
fn thread_nodes_serve_separately_and_stop() {
    let mut p = ThreadProvider::new(|| DemoServer::new(DemoService::new()));
    nodes_serve_separately_and_stop(&mut p);
    assert_eq!(p.len(), 2);
    assert!(
        p.start(NodeId(2)).is_err(),
        "a running node's id was reused"
    );
}

#[test]
fn thread_provider_drop_closes_every_node() {
    let mut p = ThreadProvider::new(|| DemoServer::new(DemoService::new()));
    let n = p.start(NodeId(1)).unwrap();
    ready(&mut p, n.id);
    drop(p);
    assert!(TcpStream::connect(n.addr).is_err());
}

fn process_provider() -> ProcessProvider {
    ProcessProvider::new(ProcessProviderConfig::ebb_node(PathBuf::from(EBB)))
}

#[test]
fn process_nodes_serve_separately_and_stop() {
    let mut p = process_provider();
    nodes_serve_separately_and_stop(&mut p);
}

#[test]
fn a_killed_process_node_is_reported_gone_with_its_signal() {
    let mut p = process_provider();
    let n = p.start(NodeId(1)).unwrap();
    ready(&mut p, n.id);
    let pid = p.pid(n.id).unwrap();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let why = gone(&mut p, &mut Vec::new(), n.id);
    assert!(why.contains("signal: 9"), "{why}");
    assert!(TcpStream::connect(n.addr).is_err());
}

#[test]
fn a_process_that_exits_before_serving_is_gone_not_ready() {
    let mut p = ProcessProvider::new(ProcessProviderConfig {
        program: PathBuf::from(EBB),
        args: ["node", "--listen-fd", "0"].map(String::from).to_vec(),
    });
    let n = p.start(NodeId(1)).unwrap();
    let e = wait_for(&mut p, &mut Vec::new(), |_| true);
    match e {
        NodeEvent::Gone(id, why) => {
            assert_eq!(id, n.id);
            assert!(why.contains("exit status: 1"), "{why}");
        }
        other => panic!("expected Gone, got {other:?}"),
    }
}

/// A process node's stdout is kept, not shown: a node that ends has its
/// last lines quoted in its `Gone` reason.
#[test]
fn a_process_node_that_ends_is_gone_with_its_last_output() {
    let mut p = ProcessProvider::new(ProcessProviderConfig {
        program: PathBuf::from("/bin/sh"),
        args: ["-c", "echo starting; echo cannot serve: no config; exit 2"]
            .map(String::from)
            .to_vec(),
    });
    let n = p.start(NodeId(1)).unwrap();
    match wait_for(&mut p, &mut Vec::new(), |_| true) {
        NodeEvent::Gone(id, why) => {
            assert_eq!(id, n.id);
            assert!(why.contains("exit status: 2"), "{why}");
            assert!(
                why.contains("starting | cannot serve: no config"),
                "the node's last lines: {why}"
            );
        }
        other => panic!("expected Gone, got {other:?}"),
    }
}

#[test]
fn provider_drop_stops_process_nodes() {
    let mut p = process_provider();
    let n = p.start(NodeId(1)).unwrap();
    ready(&mut p, n.id);
    let pid = p.pid(n.id).unwrap();
    drop(p);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "node process {pid} outlived its provider"
    );
}

#[test]
fn node_listen_fd_rejects_descriptors_that_are_not_listening_sockets() {
    for (fd, says) in [
        ("1", "stdin, stdout and stderr"),
        ("1000", "no such open descriptor"),
    ] {
        let out = Command::new(EBB)
            .args(["node", "--listen-fd", fd])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--listen-fd") && err.contains(says), "{err}");
    }
}
