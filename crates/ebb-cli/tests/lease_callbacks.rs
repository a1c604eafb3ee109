//! Callbacks (lease term ∞) on the real origin: nothing expires, so a write
//! completes only once every holder acknowledged its invalidation, and a
//! holder that is gone blocks it only until the failure detector declares
//! it dead (`ebb origin --holder-timeout-ms`).
//!
//! Real processes over loopback: one `ebb origin --max-term-ms inf` and
//! three `ebb node --lease-term-ms inf`. A holder is frozen with SIGSTOP
//! (alive, silent) or killed with SIGKILL (gone).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::TcpClient;
use ebb_core::Nanos;
use ebb_demo::DemoClient;

/// Long enough that a frozen holder is never declared dead in the first
/// test; the second test uses a short one.
const LONG_HOLDER_TIMEOUT_MS: u64 = 60_000;
const SHORT_HOLDER_TIMEOUT_MS: u64 = 2_000;
/// How long the frozen holder stays frozen while the write is pending.
const FROZEN_MS: u64 = 1_500;
/// How often a node's poll returns when idle (`CacheSettings::poll_wait_ms`):
/// the origin last saw a live node at most this long before it died.
const POLL_WAIT_MS: u64 = 500;

struct Cluster {
    _dir: tempfile::TempDir,
    _origin: common::Proc,
    nodes: Vec<common::Proc>,
}

fn cluster(holder_timeout_ms: u64, origin_bug: Option<&str>) -> Cluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8 path").to_owned();
    let env: Vec<(&str, &str)> = origin_bug
        .map(|b| vec![("EBB_PLANTED_BUG", b)])
        .unwrap_or_default();
    let origin = common::Proc::start_with_env(
        env!("CARGO_BIN_EXE_ebb"),
        &[
            "origin",
            "--listen",
            "127.0.0.1:0",
            "--data",
            &data,
            "--max-term-ms",
            "inf",
            "--holder-timeout-ms",
            &holder_timeout_ms.to_string(),
        ],
        &env,
        1,
    );
    let nodes = (0..3)
        .map(|_| {
            common::ebb(&[
                "node",
                "--listen",
                "127.0.0.1:0",
                "--origin",
                &origin.addr,
                "--lease-term-ms",
                "inf",
            ])
        })
        .collect();
    Cluster {
        _dir: dir,
        _origin: origin,
        nodes,
    }
}

fn signal(p: &common::Proc, sig: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child.
    let rc = unsafe { libc::kill(p.pid() as i32, sig) };
    assert_eq!(rc, 0, "signal {sig} to {}", p.pid());
}

/// Stops `p` and returns once every one of its threads is stopped.
/// `kill` returns as soon as SIGSTOP is queued; the group stop begins only
/// when one thread of the target is scheduled and takes the signal, and on
/// a loaded machine the node's other threads (its lease poller among them)
/// keep running meanwhile, long enough to acknowledge an invalidation. The
/// parent hears of the stop (`WUNTRACED`) once the whole group stopped.
fn freeze(p: &common::Proc) {
    let sent = Instant::now();
    signal(p, libc::SIGSTOP);
    let pid = p.pid() as i32;
    let mut status = 0;
    // SAFETY: waitpid writes only to `status`, a live local; the pid is our
    // own child, so no other child's status is consumed.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
    assert_eq!(rc, pid, "waitpid for the stop of {pid}");
    assert!(
        libc::WIFSTOPPED(status),
        "{pid} did not stop (wait status {status:#x})"
    );
    eprintln!(
        "holder {pid} stopped {:?} after SIGSTOP was sent",
        sent.elapsed()
    );
}

async fn demo(addr: &str, timeout_ms: u64) -> DemoClient<TcpClient> {
    let client = TcpClient::connect(addr).await.expect("the node accepts");
    DemoClient::new(client)
        .with_options(CallOptions::default().with_timeout(Nanos::from_millis(timeout_ms)))
}

/// Every node caches v1 under a callback; node 2 is frozen; node 0 writes
/// v2. Returns when node 2 was resumed and when the write completed (both
/// since the write was invoked), and how many nodes then still served v1.
fn frozen_holder_run(origin_bug: Option<&str>) -> (Duration, Duration, usize) {
    let c = cluster(LONG_HOLDER_TIMEOUT_MS, origin_bug);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let call_ms = LONG_HOLDER_TIMEOUT_MS / 2;
    let clients: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for n in &c.nodes {
            v.push(demo(&n.addr, call_ms).await);
        }
        v
    });
    rt.block_on(async {
        clients[0]
            .write("k".into(), "v1".into())
            .await
            .unwrap()
            .unwrap();
        for d in &clients {
            let r = d.read("k".into()).await.unwrap().unwrap();
            assert_eq!(r.value.as_deref(), Some("v1"));
        }
    });
    // Precondition: the holder is stopped before the write is sent.
    freeze(&c.nodes[2]);
    let invoked = Instant::now();
    let writer = rt.block_on(demo(&c.nodes[0].addr, call_ms));
    let mut write = rt.spawn(async move {
        let v = writer.write("k".into(), "v2".into()).await;
        (v, invoked.elapsed())
    });
    // The scenario: the holder stays frozen FROZEN_MS, then resumes; a
    // write that ends sooner resumes it at once. With a bug planted that
    // lets the write skip the holders, the holder stays frozen until the
    // write ends (up to its deadline), so the write ends first however
    // slowly a loaded machine runs it.
    let hold = Duration::from_millis(if origin_bug.is_some() {
        call_ms
    } else {
        FROZEN_MS
    });
    let early = rt.block_on(async { tokio::time::timeout(hold, &mut write).await.ok() });
    let resumed = invoked.elapsed();
    signal(&c.nodes[2], libc::SIGCONT);
    let (v, completed) = match early {
        Some(ended) => ended,
        None => rt.block_on(write),
    }
    .expect("write task");
    v.expect("the write call completes")
        .expect("the write is applied");
    let stale = rt.block_on(async {
        let mut stale = 0;
        for d in &clients {
            let r = d.read("k".into()).await.unwrap().unwrap();
            if r.value.as_deref() != Some("v2") {
                stale += 1;
            }
        }
        stale
    });
    (resumed, completed, stale)
}

#[test]
fn a_write_waits_for_every_holders_acknowledgement() {
    let (resumed, completed, stale) = frozen_holder_run(None);
    assert_eq!(stale, 0, "nodes still serve v1 after the write");
    assert!(
        completed > resumed,
        "the write completed {completed:?} after it was sent, before the frozen holder resumed ({resumed:?}) and could acknowledge"
    );
    // The failure detector played no part: the holder timeout is far off.
    assert!(completed < Duration::from_millis(LONG_HOLDER_TIMEOUT_MS));
    // The same run with the origin's write not waiting for holders: the
    // write completes while the holder is still frozen, so the assertion
    // above is one that can fail.
    let (resumed, completed, stale) = frozen_holder_run(Some("write-skips-holders"));
    assert!(
        completed < resumed,
        "with write-skips-holders planted the write still waited ({completed:?} vs {resumed:?})"
    );
    assert!(stale > 0, "with write-skips-holders no node served v1");
}

#[test]
fn a_gone_holder_blocks_a_write_only_until_declared_dead() {
    let c = cluster(SHORT_HOLDER_TIMEOUT_MS, None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let call_ms = 10 * SHORT_HOLDER_TIMEOUT_MS;
    let (a, gone) = rt.block_on(async {
        (
            demo(&c.nodes[0].addr, call_ms).await,
            demo(&c.nodes[2].addr, call_ms).await,
        )
    });
    rt.block_on(async {
        a.write("k".into(), "v1".into()).await.unwrap().unwrap();
        let r = gone.read("k".into()).await.unwrap().unwrap();
        assert_eq!(r.value.as_deref(), Some("v1"));
    });
    let mut c = c;
    let killed = Instant::now();
    c.nodes[2].kill();
    let v = rt.block_on(a.write("k".into(), "v2".into()));
    let took = killed.elapsed();
    v.expect("the write call completes within its deadline")
        .expect("the write is applied once the holder is declared dead");
    // The origin last heard from the holder at most one poll wait before
    // the kill, and waits the holder timeout from then.
    let at_least = Duration::from_millis(SHORT_HOLDER_TIMEOUT_MS - POLL_WAIT_MS);
    assert!(
        took >= at_least,
        "the write completed {took:?} after the holder died: it did not wait for the failure detector ({at_least:?} at least)"
    );
    let r = rt.block_on(a.read("k".into())).unwrap().unwrap();
    assert_eq!(r.value.as_deref(), Some("v2"));
    eprintln!(
        "write blocked {took:?} by a dead holder (holder timeout {SHORT_HOLDER_TIMEOUT_MS} ms)"
    );
}
