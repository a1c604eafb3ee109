//! A VM node scaled up and back down by hand (`POST /pool`) through `ebb
//! up`: its guest brings a vCPU online and takes it offline again, and its
//! QEMU's CPU quota on the host follows (capacity × `cpus`).
//!
//! The guest's count is the guest's own: the `EBB-CPUS N` lines its init
//! prints to the console from `/proc/cpuinfo` after each change, read from
//! the console log QEMU keeps (its path is on QEMU's command line). The
//! quota is read from the cgroup QEMU is in. Root only; one VM, and bounds
//! generous enough for a TCG guest on a loaded machine, with no timing
//! asserted.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_common::{Up, live_nodes};

/// How long the VM node may take to finish its handshake
/// (`pool.boot_timeout_ms`).
const VM_BOOT_TIMEOUT_MS: u64 = 300_000;
/// The boot timeout and one replacement's worth more.
const VM_READY_WAIT: Duration = Duration::from_millis(2 * VM_BOOT_TIMEOUT_MS);
/// How long a resize may take to show in the guest and in `ebb up`'s
/// output: a TCG guest onlines a vCPU in well under a second when idle.
const RESIZE_WAIT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(200);

/// Polls `probe` every [`POLL`] for at most `bound`; the last value seen.
fn poll<T>(bound: Duration, probe: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let mut seen = probe();
    for _ in 0..bound.as_millis() / POLL.as_millis() {
        if done(&seen) {
            break;
        }
        std::thread::sleep(POLL);
        seen = probe();
    }
    seen
}

/// The console log of QEMU `pid`: the `logfile=` of its serial device.
fn console_log(pid: u32) -> PathBuf {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&cmdline)
        .split('\0')
        .flat_map(|arg| arg.split(','))
        .find_map(|opt| opt.strip_prefix("logfile="))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("QEMU {pid} keeps no console log: {cmdline:?}"))
}

/// The guest's last `EBB-CPUS N`.
fn guest_cpus(log: &Path) -> Option<u32> {
    let text = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("EBB-CPUS ")?.trim().parse().ok())
}

fn the_guest_and_its_quota_follow_the_capacity(_kind: &str) {
    let up = Up::start(
        "vm-scale-up",
        &format!(
            "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [service]\nname = \"demo\"\n\
             [pool]\nkind = \"vm\"\ninitial = 1\nmin = 1\nmax = 1\nmemory_mb = 256\n\
             max_capacity_per_node = 2\nboot_timeout_ms = {VM_BOOT_TIMEOUT_MS}\n"
        ),
    );
    let status = poll(
        VM_READY_WAIT,
        || up.status(),
        |s| {
            let live = live_nodes(s);
            live.len() == 1 && live[0]["state"] == "ready" && live[0]["capacity"] == 1
        },
    );
    assert_eq!(live_nodes(&status).len(), 1, "{status} {:?}", up.output());
    assert_eq!(live_nodes(&status)[0]["state"], "ready", "{status}");
    let qemu = *up.node_pids().first().expect("the node's QEMU");
    let comm = std::fs::read_to_string(format!("/proc/{qemu}/comm")).unwrap();
    assert!(comm.starts_with("qemu"), "the node process is {comm:?}");
    let log = console_log(qemu);
    let quota = || ebb_node::container::cpu_quota_of(qemu).unwrap();

    let online = poll(RESIZE_WAIT, || guest_cpus(&log), |n| *n == Some(1));
    assert_eq!(online, Some(1), "the guest boots with one vCPU online");
    assert_eq!(quota(), Some(1.0), "the quota at capacity 1");

    for (from, to) in [(1, 2), (2, 1)] {
        let body = format!(r#"{{"target": 1, "capacity": {to}}}"#);
        let (code, reply, _) = up.post("/pool", &body, &[]);
        assert_eq!(code, 200, "{reply}");
        let line = format!("capacity {from} -> {to}");
        let lines = poll(
            RESIZE_WAIT,
            || up.output(),
            |out| out.iter().any(|l| l.contains(&line)),
        );
        // Ends with it: nothing said the node's resources were left as
        // they were.
        assert!(
            lines.iter().any(|l| l.ends_with(&line)),
            "no clean {line:?} in {lines:?}"
        );
        let online = poll(RESIZE_WAIT, || guest_cpus(&log), |n| *n == Some(to));
        assert_eq!(
            online,
            Some(to),
            "the guest's own count at capacity {to}; console:\n{}",
            String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
        );
        assert_eq!(quota(), Some(f64::from(to)), "capacity {to} × 1 core");
    }
    up.stop();
}

#[test]
fn a_vm_nodes_online_vcpus_and_host_quota_follow_its_capacity_as_root() {
    common::on_kind(
        "vm",
        "a_vm_nodes_online_vcpus_and_host_quota_follow_its_capacity_as_root",
        the_guest_and_its_quota_follow_the_capacity,
    );
}
