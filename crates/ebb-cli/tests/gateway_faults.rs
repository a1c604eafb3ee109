//! Node failures and pool changes behind the gateway, with real processes:
//! a node killed with SIGKILL mid-load, scale-in by hand under load, and
//! overload refused at once.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use std::sync::Arc;

use ebb::rpc::CallError;
use ebb::rpc::semantics::ClientConfig;
use ebb::rpc::service::CallOptions;
use ebb::rpc::transport::{TcpClient, TcpClientConfig};
use ebb_core::Nanos;
use ebb_demo::DemoClient;
use gateway_common::{Up, gone_nodes, live_nodes};
use serde_json::Value;

fn config(nodes: usize, max: usize, policy: &str, deadline_ms: u64) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\nseed = 3\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"process\"\ninitial = {nodes}\nmin = 1\nmax = {max}\n\
         [balance]\npolicy = \"{policy}\"\n\
         [admission]\nenabled = true\ndefault_deadline_ms = {deadline_ms}\n"
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A client that does not resend on a live connection within a test's
/// span: a resent idempotent call is a second, independent execution,
/// which would blur what the test counts.
fn patient() -> TcpClientConfig {
    let d = TcpClientConfig::default();
    TcpClientConfig {
        session: ClientConfig {
            retransmit_after: Nanos::from_secs(60),
            max_retransmit_interval: Nanos::from_secs(60),
            ..d.session
        },
        ..d
    }
}

fn in_flight(status: &Value) -> u64 {
    live_nodes(status)
        .iter()
        .map(|n| n["in_flight"].as_u64().unwrap())
        .sum()
}

/// The only node is frozen (SIGSTOP) so that calls reach it and stay in
/// flight without running, then killed (SIGKILL): every idempotent call
/// succeeds on the replacement, every at-most-once call ends
/// `OutcomeUnknown` at once and was not run again anywhere.
#[test]
fn a_killed_node_fails_only_its_at_most_once_calls() {
    const SLEEPS: usize = 4;
    const INCRS: usize = 8;
    let up = Up::start("kill", &config(1, 2, "rr", 30_000));
    let first = up.wait_ready(1);
    let victim = live_nodes(&first)[0]["id"].as_u64().unwrap();
    let pids = up.node_pids();
    assert_eq!(pids.len(), 1, "one node process: {pids:?}");
    let rt = runtime();
    let client = rt.block_on(async {
        Arc::new(
            TcpClient::connect_with(&up.rpc.to_string(), patient())
                .await
                .unwrap(),
        )
    });
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(30));
    let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
    // SAFETY: kill has no memory preconditions; the pid is a node of ours.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGSTOP) }, 0);
    let sleeps: Vec<_> = (0..SLEEPS)
        .map(|_| {
            let d = demo.clone();
            rt.spawn(async move { d.sleep(10).await })
        })
        .collect();
    let incrs: Vec<_> = (0..INCRS)
        .map(|i| {
            let d = demo.clone();
            rt.spawn(async move { d.incr(format!("kill-{i}")).await })
        })
        .collect();
    up.wait_until("every call in flight on the frozen node", |s| {
        in_flight(s) == (SLEEPS + INCRS) as u64
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) }, 0);

    for (i, h) in incrs.into_iter().enumerate() {
        match rt.block_on(h).unwrap() {
            Err(CallError::OutcomeUnknown { .. }) => {}
            other => panic!(
                "kill-{i} was in flight on the killed node: expected OutcomeUnknown, got {other:?}"
            ),
        }
    }
    for h in sleeps {
        let r = rt.block_on(h).unwrap();
        assert_eq!(r, Ok(10), "an idempotent call must succeed on another node");
    }
    let after = up.wait_until("the pool back at its target", |s| {
        let live = live_nodes(s);
        live.len() == 1 && live[0]["state"] == "ready" && live[0]["id"] != victim
    });
    let gone = gone_nodes(&after);
    assert!(
        gone.iter()
            .any(|n| n["id"] == victim && n["reason"].as_str().unwrap_or("").contains("SIGKILL")),
        "{after}"
    );
    // The replacement never saw the uncertain calls: had the gateway sent
    // one there too, its counter would now be 2.
    rt.block_on(async {
        for i in 0..INCRS {
            let v = demo.incr(format!("kill-{i}")).await.unwrap().unwrap();
            assert_eq!(
                v, 1,
                "kill-{i} ended OutcomeUnknown yet ran again on the new node"
            );
        }
    });
    let (_, metrics, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
    let text = metrics.as_str().unwrap();
    let retries: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ebb_gateway_retries_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(
        retries, SLEEPS as u64,
        "each sleep retried once, no incr retried"
    );
    drop(client);
    up.stop();
}

/// Shrinking the pool by hand while callers keep calling fails nothing:
/// the removed nodes drain, then stop.
#[test]
fn scale_in_under_load_fails_no_request() {
    const CALLERS: usize = 4;
    /// Calls completed before the scale-in, and after it is done.
    const BEFORE: u64 = 40;
    const AFTER: u64 = 40;
    let up = Up::start("scale-in", &config(3, 4, "p2c", 10_000));
    up.wait_ready(3);
    let rt = runtime();
    let client = rt.block_on(async {
        Arc::new(
            TcpClient::connect_with(&up.rpc.to_string(), patient())
                .await
                .unwrap(),
        )
    });
    let opts = CallOptions::default().with_timeout(Nanos::from_secs(10));
    let demo = DemoClient::new(Arc::clone(&client)).with_options(opts);
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|c| {
            let (d, done, stop) = (demo.clone(), Arc::clone(&done), Arc::clone(&stop));
            rt.spawn(async move {
                let mut failures = Vec::new();
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let r = if i % 2 == 0 {
                        d.sleep(20).await.map(|_| ())
                    } else {
                        match d.incr(format!("scale-{c}-{i}")).await {
                            Ok(Ok(1)) => Ok(()),
                            Ok(other) => panic!("scale-{c}-{i}: {other:?}"),
                            Err(e) => Err(e),
                        }
                    };
                    if let Err(e) = r {
                        failures.push(e);
                    }
                    i += 1;
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                failures
            })
        })
        .collect();
    let count = || done.load(std::sync::atomic::Ordering::SeqCst);
    up.wait_until("load flowing", |_| count() >= BEFORE);
    let (code, body, _) = up.post("/pool", r#"{"target": 1}"#, &[]);
    assert_eq!(code, 200, "{body}");
    let status = up.wait_until("two nodes drained and stopped", |s| {
        live_nodes(s).len() == 1 && gone_nodes(s).len() == 2
    });
    let at_scale_in = count();
    up.wait_until("load flowing after the scale-in", |_| {
        count() >= at_scale_in + AFTER
    });
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let failures: Vec<CallError> = callers
        .into_iter()
        .flat_map(|h| rt.block_on(h).unwrap())
        .collect();
    assert!(failures.is_empty(), "failed calls: {failures:?}");
    for n in gone_nodes(&status) {
        let reason = n["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("stopped after draining"), "{n}");
    }
    let out = up.output();
    let drained = out
        .iter()
        .filter(|l| l.contains("ready -> draining (pool shrinks)"))
        .count();
    assert_eq!(drained, 2, "{out:?}");
    drop(client);
    up.stop();
}

fn post_work(up: &Up, micros: u64, deadline_ms: u64) -> (u16, Value, String) {
    up.post(
        "/rpc/Demo/work",
        &format!(r#"{{"micros": {micros}}}"#),
        &[("ebb-deadline-ms", &deadline_ms.to_string())],
    )
}

/// More work than one node can finish by the deadline: the excess is
/// refused at once with `overloaded` and a Retry-After, not timed out.
#[test]
fn overload_is_refused_at_once_with_overloaded() {
    /// The deadline allows about 15 of these one after another, so the
    /// outcome does not hinge on how fast this machine is today: even a
    /// node slowed tenfold admits one, and none admits half the burst.
    const WORK_MICROS: u64 = 20_000;
    const DEADLINE_MS: u64 = 300;
    const BURST: usize = 60;
    let up = Up::start("overload", &config(1, 1, "jsq", 10_000));
    up.wait_ready(1);
    // Measure the service time first: admission refuses only on evidence.
    for _ in 0..3 {
        let (code, body, _) = post_work(&up, WORK_MICROS, 10_000);
        assert_eq!(code, 200, "{body}");
    }
    let http = up.http;
    let answers: Vec<(u16, Value, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..BURST)
            .map(|_| {
                s.spawn(move || {
                    gateway_common::http(
                        http,
                        "POST",
                        "/rpc/Demo/work",
                        &format!(r#"{{"micros": {WORK_MICROS}}}"#),
                        &[("ebb-deadline-ms", &DEADLINE_MS.to_string())],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ok = 0;
    let mut late = 0;
    let mut overloaded = 0;
    for (code, body, head) in &answers {
        match code {
            200 => ok += 1,
            503 => {
                assert_eq!(body["error"], "overloaded", "{body}");
                assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
                overloaded += 1;
            }
            // Admitted on an estimate that turned out short: allowed, but
            // it must be the typed deadline error.
            504 => {
                assert_eq!(body["error"], "deadline_exceeded", "{body}");
                late += 1;
            }
            _ => panic!("unexpected answer {code}: {body}"),
        }
    }
    assert!(ok + late >= 1, "some of the burst is admitted: {answers:?}");
    assert!(
        overloaded >= BURST / 2,
        "the excess is refused: {answers:?}"
    );
    // /metrics counts each refusal under the rule that made it, as the
    // refused caller's message names it.
    let (_, metrics, _) = gateway_common::http(up.http, "GET", "/metrics", "", &[]);
    let refused_by = |rule: &str| -> u64 {
        let prefix = format!("ebb_gateway_admission_refusals_total{{rule=\"{rule}\"}} ");
        metrics
            .as_str()
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in {metrics}"))
    };
    let said = |words: &str| {
        answers
            .iter()
            .filter(|(code, body, _)| {
                *code == 503 && body["message"].as_str().is_some_and(|m| m.contains(words))
            })
            .count() as u64
    };
    let deadline = refused_by("deadline");
    let behind = refused_by("gateway_behind");
    assert_eq!(deadline, said("the deadline cannot be met"), "{metrics}");
    assert_eq!(behind, said("in the gateway before dispatch"), "{metrics}");
    assert_eq!(deadline + behind, overloaded as u64, "{metrics}");
    for rule in ["held_queue_full", "held_bytes", "no_capacity"] {
        assert_eq!(refused_by(rule), 0, "{rule}: {metrics}");
    }
    up.stop();
}

/// A gateway over one node with the central queue, deadline checks off and
/// at most `hold` requests held, whose node is busy with a 3 s request
/// (answered on the returned thread) by the time this returns.
fn one_busy_central_node(
    name: &str,
    hold: usize,
) -> (Up, std::thread::JoinHandle<(u16, Value, String)>) {
    let cfg = format!(
        "{}max_held_requests = {hold}\n",
        config(1, 1, "central", 30_000).replace("enabled = true", "enabled = false")
    );
    let up = Up::start(name, &cfg);
    up.wait_ready(1);
    let http = up.http;
    let busy = std::thread::spawn(move || {
        gateway_common::http(http, "POST", "/rpc/Demo/sleep", r#"{"millis": 3000}"#, &[])
    });
    up.wait_until("the first request on the node", |s| {
        live_nodes(s)[0]["in_flight"] == 1
    });
    (up, busy)
}

/// The central queue: the one node pulls one request at a time, the held
/// FIFO takes what its bound allows, the rest is refused at once.
#[test]
fn central_queue_holds_up_to_its_bound() {
    const HOLD: usize = 2;
    const BURST: usize = 8;
    // One request occupies the node; then the burst arrives while it runs.
    let (up, first) = one_busy_central_node("central", HOLD);
    let http = up.http;
    let answers: Vec<(u16, Value, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..BURST)
            .map(|_| {
                s.spawn(move || {
                    gateway_common::http(http, "POST", "/rpc/Demo/sleep", r#"{"millis": 10}"#, &[])
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let (code, body, _) = first.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let refused = answers
        .iter()
        .filter(|a| a.0 == 503 && a.1["error"] == "overloaded")
        .count();
    assert_eq!((ok, refused), (HOLD, BURST - HOLD), "{answers:?}");
    up.stop();
}

/// An RPC caller refused by the gateway gets the typed `Overloaded` with a
/// retry-after (not a generic refusal), and `ebb call` says so: the node is
/// busy, the held FIFO is at its bound of one, so the next call is refused.
#[test]
fn an_rpc_caller_is_told_overloaded_with_a_retry_after() {
    let (up, busy) = one_busy_central_node("overloaded-rpc", 1);
    let http = up.http;
    let held = std::thread::spawn(move || {
        gateway_common::http(http, "POST", "/rpc/Demo/sleep", r#"{"millis": 1}"#, &[])
    });
    up.wait_until("one request held", |s| s["held"] == 1);

    let rt = runtime();
    let typed = rt.block_on(async {
        let client = TcpClient::connect_with(&up.rpc.to_string(), patient())
            .await
            .unwrap();
        DemoClient::new(client).sleep(1).await
    });
    match typed {
        Err(e @ CallError::Overloaded { retry_after, .. }) => {
            assert!(retry_after > Nanos::ZERO, "{e}");
            assert!(!e.may_have_run(), "{e}");
        }
        other => panic!("expected CallError::Overloaded, got {other:?}"),
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", &up.rpc.to_string(), "Demo.sleep"])
        .arg(r#"{"millis": 1}"#)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("overloaded") && err.contains("retry after") && err.contains("did not run"),
        "{err}"
    );
    assert_eq!(busy.join().unwrap().0, 200);
    assert_eq!(held.join().unwrap().0, 200);
    up.stop();
}
