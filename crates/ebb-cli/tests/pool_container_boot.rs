//! A container that is slow to come up holds up no other node: the
//! gateway's pool manager starts container nodes on its own thread, and
//! `ContainerProvider::start` returns as soon as the runner is spawned, its
//! address learnt while it boots. Node 1's runner here waits, before it
//! even starts the container, until the test opens a gate; node 2 must
//! become ready meanwhile, with node 1 still booting, and node 1 ready
//! once the gate opens. Root only (containers).
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ebb_core::NodeId;
use ebb_gateway::pool::PoolConfig;
use ebb_gateway::{Gateway, GatewayConfig, Life, NodeChange, ServiceSource};
use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
use ebb_node::sandbox::Limits;

const EBB: &str = env!("CARGO_BIN_EXE_ebb");
/// Bound on waiting for a node to be ready: far past a container start on
/// a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The container port the nodes serve on.
const PORT: u16 = 7000;

/// A stand-in for the `ebb` binary that holds node 1's runner (its
/// `--hostname node-1`) until `gate` exists, then runs the real one.
fn gated_ebb(dir: &std::path::Path, gate: &std::path::Path) -> PathBuf {
    let script = dir.join("ebb-gated");
    let text = format!(
        "#!/bin/sh\ncase \" $* \" in *\" node-1 \"*) while [ ! -e '{}' ]; do sleep 0.01; done;; esac\nexec '{EBB}' \"$@\"\n",
        gate.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// Waits for node `id` to become ready; returns the changes seen before.
fn wait_ready(rx: &mpsc::Receiver<NodeChange>, id: NodeId, seen: &mut Vec<NodeChange>) {
    loop {
        let c = rx
            .recv_timeout(READY_TIMEOUT)
            .unwrap_or_else(|_| panic!("node {id} never became ready; changes: {seen:?}"));
        let done = c.id == id && c.to == Life::Ready && c.capacity.is_none();
        seen.push(c);
        if done {
            return;
        }
    }
}

fn state_of(status: &serde_json::Value, id: u32) -> String {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map_or_else(|| "absent".to_owned(), |n| n["state"].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_slow_to_come_up_holds_up_no_other_node() {
    if let Some(why) = ebb_testkit::containers_unavailable() {
        ebb_testkit::skip_or_fail("a_container_slow_to_come_up_holds_up_no_other_node", &why);
        return;
    }
    let dir = std::env::temp_dir().join(format!("ebb-container-boot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let gate = dir.join("gate");
    let provider = ContainerProvider::new(ContainerProviderConfig {
        ebb_exe: gated_ebb(&dir, &gate),
        limits: Limits {
            memory_mb: Some(256),
            cpus: None,
            pids: Some(64),
        },
        rootfs: None,
        // The default base layer carries the real binary as /bin/ebb.
        command: ["/bin/ebb", "node", "--listen", "0.0.0.0:{port}"]
            .map(String::from)
            .to_vec(),
        port: PORT,
        reach: None,
        files: Vec::new(),
    });
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let on_change: ebb_gateway::pool::OnChange = Arc::new(move |c: &NodeChange| {
        let _ = tx.lock().unwrap().send(c.clone());
    });
    let cfg = GatewayConfig {
        rpc_addr: "127.0.0.1:0".into(),
        http_addr: "127.0.0.1:0".into(),
        pool: PoolConfig {
            initial: 2,
            min: 2,
            max: 2,
            ..PoolConfig::default()
        },
        ..GatewayConfig::default()
    };
    let gateway = Gateway::start(
        cfg,
        ServiceSource::Describe { expect: None },
        Box::new(provider),
        None,
        on_change,
    )
    .await
    .unwrap();
    let (seen, rx) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        wait_ready(&rx, NodeId(2), &mut seen);
        (seen, rx)
    })
    .await
    .unwrap();
    let status = gateway.shared().status();
    assert!(!gate.exists(), "node 1's runner is still held at its gate");
    assert_eq!(
        state_of(&status, 1),
        "\"booting\"",
        "node 1 was started beside node 2 and still boots: {status}; changes: {seen:?}"
    );
    std::fs::write(&gate, "").unwrap();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = seen;
        wait_ready(&rx, NodeId(1), &mut seen);
        seen
    })
    .await
    .unwrap();
    let ready = seen
        .iter()
        .find(|c| c.id == NodeId(1) && c.to == Life::Ready)
        .unwrap();
    assert!(
        ready.addr.ip().to_string().starts_with("10.213."),
        "node 1's address was learnt while it booted: {ready:?}"
    );
    gateway.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
