//! `ContainerProvider` starts a TCP server in a container and the host
//! reaches it over the veth pair.
#![allow(clippy::unwrap_used)]

mod common;

use ebb_core::NodeId;
use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_node::sandbox::Limits;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

const EBB: &str = env!("CARGO_BIN_EXE_ebb");
/// Bound on readiness polls (each probe waits at most 20 ms).
const MAX_POLLS: u32 = 500;

fn poll_until(p: &mut ContainerProvider, want: impl Fn(&NodeEvent) -> bool) -> NodeEvent {
    for _ in 0..MAX_POLLS {
        if let Some(e) = p.poll_events().into_iter().find(|e| want(e)) {
            return e;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("the expected event never came");
}

/// Nodes running `command` (with `{port}` filled in) on `port`, each in a
/// container of 64 MiB, one CPU and 32 pids.
fn provider(command: &[&str], port: u16) -> ContainerProvider {
    ContainerProvider::new(ContainerProviderConfig {
        ebb_exe: PathBuf::from(EBB),
        limits: Limits {
            memory_mb: Some(64),
            cpus: Some(1.0),
            pids: Some(32),
        },
        rootfs: None,
        command: command.iter().map(|a| (*a).to_owned()).collect(),
        port,
        reach: None,
        files: Vec::new(),
    })
}

/// Says why `test` cannot run here, if it cannot.
fn skipped(test: &str) -> bool {
    match ebb_testkit::containers_unavailable() {
        Some(why) => {
            ebb_testkit::skip_or_fail(test, &why);
            true
        }
        None => false,
    }
}

#[test]
fn provider_serves_busybox_httpd_over_the_veth() {
    if skipped("provider_serves_busybox_httpd_over_the_veth") {
        return;
    }
    let mut p = provider(&["/bin/httpd", "-f", "-p", "{port}", "-h", "/"], 8080);
    let id = NodeId(7);
    let node = p.start(id).unwrap();
    assert!(
        node.addr.ip().is_unspecified() && node.addr.port() == 8080,
        "start returns before the address is known: {}",
        node.addr
    );
    let ready = poll_until(&mut p, |e| matches!(e, NodeEvent::Ready(_)));
    assert_eq!(ready, NodeEvent::Ready(id));
    eprintln!("container node ready after {}", p.expected_start());
    let addr = p.addr(id).expect("a ready node's address is known");
    assert!(addr.ip().to_string().starts_with("10.213."), "addr {addr}");

    let mut conn = TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET /etc/passwd HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).unwrap();
    assert!(reply.contains("root:x:0:0"), "reply: {reply}");

    p.stop(id).unwrap();
    let gone = poll_until(&mut p, |e| matches!(e, NodeEvent::Gone(..)));
    assert!(matches!(gone, NodeEvent::Gone(g, _) if g == id));
}

/// A container node's stdout is kept, not shown on the caller's stderr:
/// a node that fails has its last lines quoted in its `Gone` reason, those
/// printed before it was ready left out. This one serves one connection
/// (the readiness probe's), then fails.
#[test]
fn a_container_node_that_ends_is_gone_with_its_last_output() {
    if skipped("a_container_node_that_ends_is_gone_with_its_last_output") {
        return;
    }
    let script = "echo starting on {port}; nc -l -p {port} >/dev/null; \
                  echo lost my config; echo cannot serve; exit 3";
    let mut p = provider(&["/bin/sh", "-c", script], 8080);
    let id = NodeId(9);
    p.start(id).unwrap();
    let gone = poll_until(&mut p, |e| matches!(e, NodeEvent::Gone(..)));
    let NodeEvent::Gone(g, why) = gone else {
        unreachable!("polled for Gone")
    };
    assert_eq!(g, id);
    assert!(why.contains("container ended"), "{why}");
    assert!(
        why.ends_with("its last output: lost my config | cannot serve"),
        "the node's last lines, not its start-up ones: {why}"
    );
}

#[test]
fn dropping_the_provider_stops_even_a_server_that_ignores_sigterm() {
    if skipped("dropping_the_provider_stops_even_a_server_that_ignores_sigterm") {
        return;
    }
    let mut p = provider(
        &["/bin/sh", "-c", "trap '' TERM; exec httpd -f -p {port}"],
        8081,
    );
    p.start(NodeId(1)).unwrap();
    poll_until(&mut p, |e| matches!(e, NodeEvent::Ready(_)));
    let addr = p.addr(NodeId(1)).expect("a ready node's address is known");
    drop(p);
    // The runner was killed; its container dies with it (PDEATHSIG), which
    // the kernel carries out asynchronously: poll, bounded.
    let mut serving = true;
    for _ in 0..MAX_POLLS {
        serving = TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(20)).is_ok();
        if !serving {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(
        !serving,
        "the node still serves after the provider was dropped"
    );
    // The killed runner could not release its slot: the sweep does.
    let swept = std::process::Command::new(EBB)
        .args(["sandbox", "sweep"])
        .output()
        .unwrap();
    assert!(swept.status.success());
}

#[test]
fn provider_runs_ebb_node_in_containers_that_keep_their_own_state() {
    if skipped("provider_runs_ebb_node_in_containers_that_keep_their_own_state") {
        return;
    }
    // The default base layer carries this very binary as /bin/ebb.
    let mut p = provider(&["/bin/ebb", "node", "--listen", "0.0.0.0:{port}"], 7000);
    let a = p.start(NodeId(1)).unwrap();
    let b = p.start(NodeId(2)).unwrap();
    let mut ready = 0;
    for _ in 0..MAX_POLLS {
        ready += p
            .poll_events()
            .iter()
            .inspect(|e| assert!(matches!(e, NodeEvent::Ready(_)), "{e:?}"))
            .count();
        if ready == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(ready, 2, "both containers should serve");
    let (a_addr, b_addr) = (p.addr(a.id).unwrap(), p.addr(b.id).unwrap());
    assert_ne!(a_addr, b_addr, "each container has its own address");

    assert_eq!(common::incr(a_addr, "k"), 1);
    assert_eq!(common::incr(a_addr, "k"), 2);
    assert_eq!(
        common::incr(b_addr, "k"),
        1,
        "containers must not share state"
    );

    p.stop(a.id).unwrap();
    let gone = poll_until(&mut p, |e| matches!(e, NodeEvent::Gone(..)));
    assert!(
        matches!(gone, NodeEvent::Gone(g, _) if g == a.id),
        "{gone:?}"
    );
    // Stopped on request, it ends quietly: its `node listening on` stays
    // in the pipe it went to.
    assert!(
        matches!(&gone, NodeEvent::Gone(_, why) if !why.contains("output")),
        "{gone:?}"
    );
    assert_eq!(
        common::incr(b_addr, "k"),
        2,
        "the other container keeps serving"
    );
}

/// Scale up of a container node: its CPU quota follows its capacity,
/// capacity × the configured `cpus`, read back from its cgroup.
#[test]
fn resizing_a_container_node_rewrites_its_cpu_quota() {
    if skipped("resizing_a_container_node_rewrites_its_cpu_quota") {
        return;
    }
    let mut p = ContainerProvider::new(ContainerProviderConfig {
        limits: Limits {
            memory_mb: Some(64),
            cpus: Some(0.5),
            pids: Some(32),
        },
        ..provider(&["/bin/httpd", "-f", "-p", "{port}", "-h", "/"], 8080).config()
    });
    let id = NodeId(9);
    p.start(id).unwrap();
    assert_eq!(
        poll_until(&mut p, |e| matches!(e, NodeEvent::Ready(_))),
        NodeEvent::Ready(id)
    );
    assert_eq!(p.cpu_quota(id).unwrap(), Some(0.5), "the quota at start");
    p.resize(id, 3).unwrap();
    assert_eq!(
        p.cpu_quota(id).unwrap(),
        Some(1.5),
        "capacity 3 × 0.5 cores"
    );
    p.resize(id, 1).unwrap();
    assert_eq!(p.cpu_quota(id).unwrap(), Some(0.5), "back to capacity 1");
    assert!(matches!(
        p.resize(NodeId(99), 2),
        Err(ebb_node::provider::ProviderError::UnknownNode(_))
    ));
    p.stop(id).unwrap();
}
