//! Scale up in the running system: `ebb up` with `[pool]
//! max_capacity_per_node` above 1 resizes its one node in place (its worker
//! threads), by hand (`POST /pool`) and by the `queue` policy under load,
//! and the node really runs that many `Demo.work` calls at once.
//!
//! A container node's CPU quota follows its capacity (capacity × `cpus`),
//! read back from its cgroup, as root.
//!
//! Evidence comes from the node process itself: its `ebb-worker` threads
//! in `/proc/PID/task`, and how many of them are runnable at one instant
//! (`Demo.work` spins, so a thread running one is runnable throughout), not
//! from timing.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use gateway_common::{MAX_POLLS, POLL_PAUSE, Up, live_nodes};

/// Long enough for every call of a batch to be seen running at once even on
/// a loaded machine; `work` spins on wall time, so the load does not
/// stretch it.
const WORK_MICROS: u64 = 3_000_000;

fn config(name: &str, autoscale: &str) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"{name}\"\n\
         [pool]\nkind = \"process\"\ninitial = 1\nmin = 1\nmax = 1\nmax_capacity_per_node = 4\n\
         [admission]\ndefault_deadline_ms = 30000\n{autoscale}"
    )
}

/// The state letter (`R` runnable, `S` sleeping, ...) of each `ebb-worker`
/// thread of `pid`.
fn worker_states(pid: u32) -> Vec<char> {
    common::worker_stat_fields(pid)
        .iter()
        .filter_map(|fields| fields.first()?.chars().next())
        .collect()
}

/// Polls the node's threads until `pred` holds for them; returns the last
/// states seen.
fn wait_for_workers(pid: u32, pred: impl Fn(&[char]) -> bool) -> Vec<char> {
    let mut seen = Vec::new();
    for _ in 0..MAX_POLLS {
        seen = worker_states(pid);
        if pred(&seen) {
            break;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    seen
}

/// Waits for `ebb up` to print a line `pred` holds for: the line follows
/// the registry's change, which `/status` may show first.
fn wait_for_line(up: &Up, pred: impl Fn(&str) -> bool) {
    for _ in 0..MAX_POLLS {
        if up.output().iter().any(|l| pred(l)) {
            return;
        }
        std::thread::sleep(POLL_PAUSE);
    }
    panic!("no such line printed: {:?}", up.output());
}

fn node_capacity(status: &serde_json::Value) -> Option<u64> {
    let live = live_nodes(status);
    (live.len() == 1 && live[0]["state"] == "ready")
        .then(|| live[0]["capacity"].as_u64())
        .flatten()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Starts `n` `Demo.work` calls through the gateway at once.
fn start_works(
    rt: &tokio::runtime::Runtime,
    client: &Arc<TcpClient>,
    n: usize,
) -> Vec<tokio::task::JoinHandle<Result<u64, ebb::rpc::CallError>>> {
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(30));
    (0..n)
        .map(|_| {
            let demo = DemoClient::new(Arc::clone(client)).with_options(opts);
            rt.spawn(async move { demo.work(WORK_MICROS).await })
        })
        .collect()
}

#[test]
fn capacity_set_by_hand_resizes_the_running_node() {
    let up = Up::start("scale-up-hand", &config("demo", ""));
    up.wait_ready(1);
    let pid = *up.node_pids().first().expect("one node process");
    let status = up.wait_until("the node at capacity 1", |s| node_capacity(s) == Some(1));
    assert_eq!(status["pool"]["max_capacity_per_node"], 4, "{status}");

    let (code, body, _) = up.post("/pool", r#"{"target": 1, "capacity": 3}"#, &[]);
    assert_eq!(
        (code, &body),
        (200, &serde_json::json!({"target": 1, "capacity": 3}))
    );
    up.wait_until("the node at capacity 3", |s| node_capacity(s) == Some(3));
    wait_for_line(&up, |l| l.ends_with("capacity 1 -> 3"));
    assert_eq!(
        gateway_common::metric(up.http, "ebb_gateway_pool_capacity"),
        3
    );

    // Three calls: three worker threads runnable at one instant.
    let rt = runtime();
    let client =
        rt.block_on(async { Arc::new(TcpClient::connect(&up.rpc.to_string()).await.unwrap()) });
    let works = start_works(&rt, &client, 3);
    let seen = wait_for_workers(pid, |s| s.iter().filter(|&&c| c == 'R').count() == 3);
    assert_eq!(
        seen.iter().filter(|&&c| c == 'R').count(),
        3,
        "three calls ran at once on the resized node: {seen:?}"
    );
    for w in works {
        rt.block_on(w).unwrap().unwrap();
    }

    // Back to one: the surplus threads leave once idle.
    let (code, _, _) = up.post("/pool", r#"{"target": 1, "capacity": 1}"#, &[]);
    assert_eq!(code, 200);
    up.wait_until("the node back at capacity 1", |s| {
        node_capacity(s) == Some(1)
    });
    let seen = wait_for_workers(pid, |s| s.len() == 1);
    assert_eq!(seen.len(), 1, "one worker thread is left: {seen:?}");

    // Out of bounds: refused by name, nothing changed.
    let (code, body, _) = up.post("/pool", r#"{"target": 1, "capacity": 5}"#, &[]);
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_capacity_per_node")),
        "{body}"
    );
    assert_eq!(node_capacity(&up.status()), Some(1));
    drop(client);
    up.stop();
}

#[test]
fn the_queue_policy_scales_up_a_full_pool_under_load_and_back_down() {
    let up = Up::start(
        "scale-up-queue",
        &config("demo", "[autoscale]\npolicy = \"queue\"\ntick_ms = 200\n"),
    );
    up.wait_ready(1);
    let rt = runtime();
    let client =
        rt.block_on(async { Arc::new(TcpClient::connect(&up.rpc.to_string()).await.unwrap()) });
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    // Four callers each keeping one 100 ms call in flight: four servers'
    // worth of work for a pool that may not add a node.
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
            let stop = Arc::clone(&stop);
            rt.spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    if let Err(e) = demo.work(100_000).await {
                        failures.push(e);
                    }
                }
                failures
            })
        })
        .collect();
    let status = up.wait_until("the node scaled up", |s| {
        node_capacity(s).is_some_and(|c| c > 1)
    });
    stop.store(true, Ordering::SeqCst);
    for c in callers {
        let failures = rt.block_on(c).unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    assert_eq!(
        status["pool"]["target"], 1,
        "the pool did not grow: {status}"
    );
    let recent = status["scaling"]["recent"].as_array().unwrap();
    assert!(
        recent
            .iter()
            .any(|d| d["capacity_per_node"].as_u64().is_some_and(|c| c > 1)),
        "a decision set the capacity: {recent:?}"
    );
    // The load went: capacity falls back before any node would go.
    up.wait_until("the node back at capacity 1", |s| {
        node_capacity(s) == Some(1)
    });
    wait_for_line(&up, |l| l.contains("capacity ") && l.ends_with(" -> 1"));
    drop(client);
    up.stop();
}

/// A container node scaled up by hand: its CPU quota becomes capacity ×
/// `pool.cpus`, and back.
fn the_quota_follows_the_capacity(kind: &str) {
    let up = Up::start(
        "scale-up-container",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"{kind}\"\ninitial = 1\nmin = 1\nmax = 1\ncpus = 0.5\n\
             max_capacity_per_node = 4\n"
        ),
    );
    up.wait_until("the node at capacity 1", |s| node_capacity(s) == Some(1));
    // The runner's one child is the container's init, in its cgroup.
    let runner = *up.node_pids().first().expect("one container runner");
    let init = *gateway_common::children_of(runner)
        .first()
        .expect("the runner's container");
    let quota = || ebb_node::container::cpu_quota_of(init).unwrap();
    assert_eq!(quota(), Some(0.5), "the quota at start");

    let (code, _, _) = up.post("/pool", r#"{"target": 1, "capacity": 3}"#, &[]);
    assert_eq!(code, 200);
    up.wait_until("the node at capacity 3", |s| node_capacity(s) == Some(3));
    wait_for_line(&up, |l| l.ends_with("capacity 1 -> 3"));
    assert_eq!(quota(), Some(1.5), "capacity 3 × 0.5 cores");

    let (code, _, _) = up.post("/pool", r#"{"target": 1, "capacity": 1}"#, &[]);
    assert_eq!(code, 200);
    wait_for_line(&up, |l| l.ends_with("capacity 3 -> 1"));
    assert_eq!(quota(), Some(0.5), "back to capacity 1");
    up.stop();
}

#[test]
fn a_container_nodes_cpu_quota_follows_its_capacity_as_root() {
    common::on_kind(
        "container",
        "a_container_nodes_cpu_quota_follows_its_capacity_as_root",
        the_quota_follows_the_capacity,
    );
}

#[test]
fn up_check_says_the_nodes_scale_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("up.toml");
    std::fs::write(&cfg, config("demo", "")).unwrap();
    let out = gateway_common::up_check(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("nodes scale up in place to at most 4 blocking calls at once each"),
        "{text}"
    );
}
