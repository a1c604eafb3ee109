//! `ebb node --threads N`: CPU-bound calls (`Demo.work`) run on N worker
//! threads at once, and a cheap call is answered while they run.
//!
//! Evidence comes from the node itself: the CPU time the kernel reports
//! for each of its threads (`/proc/PID/task/*/stat`), not from timing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use ebb::rpc::transport::TcpClient;
use ebb_demo::DemoClient;

/// Long enough that the echo below is answered well before it ends, short
/// enough for a test; `work` spins on wall time, so a busy machine does
/// not stretch it.
const WORK_MICROS: u64 = 3_000_000;
/// Bound on waiting for the node's worker threads to show CPU time.
const MAX_POLLS: usize = 3_000;
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// CPU clock ticks (user + system) of each thread of `pid` whose name
/// starts with `ebb-worker`.
fn worker_ticks(pid: u32) -> Vec<u64> {
    common::worker_stat_fields(pid)
        .iter()
        .filter_map(|fields| {
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .collect()
}

/// Waits until `busy` worker threads of `pid` have used CPU; returns how
/// many had.
fn wait_for_busy_workers(pid: u32, busy: usize) -> usize {
    let mut seen = 0;
    for _ in 0..MAX_POLLS {
        seen = worker_ticks(pid).iter().filter(|&&t| t > 0).count();
        if seen >= busy {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_work_calls_run_on_two_threads_while_echo_answers() {
    let node = common::ebb(&["node", "--listen", "127.0.0.1:0", "--threads", "2"]);
    let client = Arc::new(DemoClient::new(
        TcpClient::connect(&node.addr)
            .await
            .expect("the node accepts a connection"),
    ));
    let works: Vec<_> = (0..2)
        .map(|_| {
            let c = Arc::clone(&client);
            tokio::spawn(async move { c.work(WORK_MICROS).await })
        })
        .collect();
    let pid = node.pid();
    let busy = tokio::task::spawn_blocking(move || wait_for_busy_workers(pid, 2))
        .await
        .expect("the poller ran");
    assert_eq!(
        busy, 2,
        "two worker threads used CPU for the two work calls"
    );
    assert!(
        works.iter().all(|w| !w.is_finished()),
        "both work calls still run"
    );
    let echo = client.echo("still here".to_owned()).await;
    assert_eq!(echo.expect("echo answers"), "still here");
    assert!(
        works.iter().all(|w| !w.is_finished()),
        "the echo was answered while both work calls ran"
    );
    for w in works {
        assert_eq!(
            w.await.expect("the task ran").expect("work answers"),
            WORK_MICROS
        );
    }
}

#[test]
fn threads_must_be_a_positive_count() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["node", "--listen", "127.0.0.1:0", "--threads", "0"])
        .output()
        .expect("the ebb binary runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--threads") && err.contains("from 1 to 1024"),
        "{err}"
    );
}
