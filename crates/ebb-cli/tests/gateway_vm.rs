//! A pool of VM nodes (QEMU microvm, TCG when there is no KVM) behind
//! `ebb up`, answering over HTTP and over `ebb call`, and keeping the
//! demo's data in the origin store `ebb up` starts on the host's loopback
//! (which a guest dials as 10.0.2.2). Root only; a TCG guest
//! on a loaded machine boots slowly, so the bounds below are generous and
//! named rather than the usual ones.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use std::time::Duration;

use gateway_common::{Up, http, live_nodes};
use serde_json::Value;

/// How long a VM node may take from start to a finished handshake before
/// the gateway replaces it (`pool.boot_timeout_ms`).
const VM_BOOT_TIMEOUT_MS: u64 = 300_000;
/// How long this test waits for the pool to be ready: the boot timeout and
/// one replacement's worth more.
const VM_READY_WAIT: Duration = Duration::from_millis(2 * VM_BOOT_TIMEOUT_MS);
const VM_READY_POLL: Duration = Duration::from_millis(200);
/// The deadline of each call: a TCG guest answers slowly.
const VM_CALL_DEADLINE_MS: u64 = 60_000;

#[test]
fn vm_pool_serves_through_the_gateway() {
    const NAME: &str = "vm_pool_serves_through_the_gateway";
    if let Some(why) = common::vm_nodes_unavailable() {
        ebb_testkit::skip_or_fail(NAME, &why);
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(
        "vm",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"vm\"\ninitial = 1\nmin = 1\nmax = 1\nmemory_mb = 256\n\
             boot_timeout_ms = {VM_BOOT_TIMEOUT_MS}\n\
             [admission]\ndefault_deadline_ms = {VM_CALL_DEADLINE_MS}\n\
             [origin]\ndata = {:?}\n",
            data.path().display().to_string()
        ),
    );
    let polls = VM_READY_WAIT.as_millis() / VM_READY_POLL.as_millis();
    let mut ready: Option<Value> = None;
    for _ in 0..polls {
        let s = up.status();
        let live = live_nodes(&s);
        if live.len() == 1 && live[0]["state"] == "ready" {
            ready = Some(s);
            break;
        }
        std::thread::sleep(VM_READY_POLL);
    }
    let status = ready.unwrap_or_else(|| {
        panic!(
            "no VM node ready within {VM_READY_WAIT:?}; status {}; output {:?}",
            up.status(),
            up.output()
        )
    });
    assert_eq!(live_nodes(&status)[0]["kind"], "vm", "{status}");

    let deadline = VM_CALL_DEADLINE_MS.to_string();
    let headers = [("ebb-deadline-ms", deadline.as_str())];
    let (code, body, _) = up.post("/rpc/Demo/echo", r#"{"msg":"from a vm"}"#, &headers);
    assert_eq!((code, body.as_str()), (200, Some("from a vm")), "{body}");
    let (code, body, _) = up.post("/rpc/Demo/incr", r#"{"key":"vm"}"#, &headers);
    assert_eq!((code, &body["Ok"]), (200, &1.into()), "{body}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "call",
            "--timeout-ms",
            &deadline,
            "--addr",
            &up.rpc.to_string(),
        ])
        .args(["Demo.incr", r#"{"key":"vm"}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"Ok":2}"#);
    // A write through the VM node lands in the origin on the host: a node
    // on the host, on the same origin, reads it back.
    let (code, body, _) = up.post(
        "/rpc/Demo/write",
        r#"{"key":"vm-shared","value":"written in a vm"}"#,
        &headers,
    );
    assert!(
        code == 200 && body["Ok"].as_u64().is_some(),
        "{code} {body}"
    );
    let lines = up.output();
    let origin = lines
        .iter()
        .find_map(|l| l.strip_prefix("origin listening on "))
        .unwrap_or_else(|| panic!("no origin address announced: {lines:?}"));
    let host_node = common::ebb(&["node", "--listen", "127.0.0.1:0", "--origin", origin]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["call", "--addr", &host_node.addr])
        .args(["Demo.read", r#"{"key":"vm-shared"}"#])
        .output()
        .unwrap();
    let read = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && read.contains("written in a vm"),
        "{read} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, metrics, _) = http(up.http, "GET", "/metrics", "", &[]);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("ebb_gateway_nodes{state=\"ready\",kind=\"vm\"} 1"),
        "{metrics}"
    );
    up.stop();
}
