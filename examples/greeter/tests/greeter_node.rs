//! The greeter as a user runs it: its own node binary on `--listen` and on
//! an inherited socket (through the process provider, as an autoscaler
//! would start it), called from Rust through the generated client.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ebb::rpc::transport::TcpClient;
use ebb_core::NodeId;
use ebb_node::process::{ProcessProvider, ProcessProviderConfig};
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_testkit::Proc;
use greeter::{GreeterClient, SignError};

const NODE: &str = env!("CARGO_BIN_EXE_greeter-node");
/// Bound on polls for the provider's ready event (2 ms apart: 10 s in all).
const MAX_POLLS: u32 = 5_000;

/// Says hello and signs twice; returns the two signature counts.
fn hello_and_sign_twice(addr: &str) -> (u64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let g = GreeterClient::new(TcpClient::connect(addr).await.unwrap());
        assert_eq!(g.hello("ann".into()).await.unwrap(), "hello, ann");
        let long = "x".repeat(greeter::MAX_NAME_BYTES + 1);
        assert!(matches!(
            g.sign(long).await.unwrap(),
            Err(SignError::NameTooLong { .. })
        ));
        let first = g.sign("ann".into()).await.unwrap().unwrap();
        let second = g.sign("bo".into()).await.unwrap().unwrap();
        (first, second)
    })
}

#[test]
fn the_node_binary_serves_on_listen() {
    let node = Proc::start(NODE, &["--listen", "127.0.0.1:0"]);
    assert_eq!(hello_and_sign_twice(&node.addr), (1, 2));
}

/// A user's node serves through `ebb::node`, so a gateway may resize it in
/// place (scale up) like `ebb node`: it answers with the capacity applied.
#[test]
fn the_node_binary_takes_a_resize() {
    let node = Proc::start(NODE, &["--listen", "127.0.0.1:0", "--threads", "1"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let took = rt.block_on(async {
        let client = TcpClient::connect(&node.addr).await.unwrap();
        let three = std::num::NonZeroU32::new(3).unwrap();
        client
            .resize(three, ebb_core::Nanos::from_secs(10))
            .await
            .unwrap()
    });
    assert_eq!(took.map(|c| c.get()), Some(3));
    // It serves on as before.
    assert_eq!(hello_and_sign_twice(&node.addr), (1, 2));
}

#[test]
fn a_process_provider_runs_the_node_binary_on_an_inherited_socket() {
    let mut provider = ProcessProvider::new(ProcessProviderConfig {
        program: PathBuf::from(NODE),
        args: vec!["--listen-fd".into(), "{fd}".into()],
    });
    let node = provider.start(NodeId(1)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..MAX_POLLS {
        seen.extend(provider.poll_events());
        if !seen.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(
        seen,
        [NodeEvent::Ready(NodeId(1))],
        "the node did not start"
    );
    assert_eq!(hello_and_sign_twice(&node.addr.to_string()), (1, 2));
    provider.stop(NodeId(1)).unwrap();
}

#[test]
fn help_and_bad_arguments() {
    let help = Command::new(NODE).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Usage: greeter-node [--listen ADDR | --listen-fd FD]"),
        "{text}"
    );

    let bad = Command::new(NODE).args(["--port", "7"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("unknown argument \"--port\"") && err.contains("--listen ADDR"),
        "{err}"
    );

    let fd = Command::new(NODE)
        .args(["--listen-fd", "1"])
        .output()
        .unwrap();
    assert_eq!(fd.status.code(), Some(1));
    let err = String::from_utf8_lossy(&fd.stderr);
    assert!(
        err.contains("--listen-fd 1: descriptors 0, 1 and 2"),
        "{err}"
    );
}
