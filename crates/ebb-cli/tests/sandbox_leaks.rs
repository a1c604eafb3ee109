//! Nothing a container creates outlives it: not on a normal exit, and not
//! after its runner is killed with SIGKILL (the next start sweeps). One test
//! in its own binary so no other container runs at the same time.
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

const EBB: &str = env!("CARGO_BIN_EXE_ebb");
const STATE_ROOT: &str = "/run/ebb/containers";
/// Bound on polling for the runner's address file (1 ms apart).
const ADDR_POLLS: u32 = 10_000;
/// Bound on polling for the kernel's teardown of a veth pair (1 ms apart).
const VETH_TEARDOWN_POLLS: u32 = 10_000;

/// What one container slot can leave behind.
fn traces(index: u32) -> Vec<PathBuf> {
    let mut t = vec![
        Path::new(STATE_ROOT).join(format!("c{index}")),
        PathBuf::from(format!("/sys/class/net/eb{index}h")),
    ];
    for ctl in ["memory", "cpu", "pids"] {
        t.push(PathBuf::from(format!("/sys/fs/cgroup/{ctl}/ebb/c{index}")));
    }
    t.into_iter().filter(|p| p.exists()).collect()
}

fn slot_of(addr_file: &Path) -> u32 {
    let text = std::fs::read_to_string(addr_file).unwrap();
    let ip: Ipv4Addr = text.split_whitespace().next().unwrap().parse().unwrap();
    (u32::from(ip) - u32::from(Ipv4Addr::new(10, 213, 0, 0))) / 4
}

fn wait_for(path: &Path) {
    for _ in 0..ADDR_POLLS {
        if std::fs::read_to_string(path).is_ok_and(|t| t.ends_with('\n')) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("{} never appeared", path.display());
}

#[test]
fn nothing_leaks_after_exit_or_after_kill_9() {
    if let Some(why) = ebb_testkit::containers_unavailable() {
        ebb_testkit::skip_or_fail("nothing_leaks_after_exit_or_after_kill_9", &why);
        return;
    }
    let guard = tempfile::Builder::new()
        .prefix("ebb-leak-")
        .tempdir()
        .unwrap();
    let dir = guard.path();

    // Normal exit.
    let addr = dir.join("a");
    let out = Command::new(EBB)
        .args([
            "sandbox",
            "run",
            "--memory-mb",
            "64",
            "--pids",
            "16",
            "--addr-file",
        ])
        .arg(&addr)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slot = slot_of(&addr);
    // The kernel deletes the veth pair as it tears the network namespace
    // down, asynchronously: give it a bounded while.
    for _ in 0..VETH_TEARDOWN_POLLS {
        if traces(slot).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        traces(slot),
        Vec::<PathBuf>::new(),
        "left behind after a normal exit"
    );

    // kill -9 of the runner while the container runs.
    let addr = dir.join("b");
    let mut runner = Command::new(EBB)
        .args(["sandbox", "run", "--memory-mb", "64", "--addr-file"])
        .arg(&addr)
        .args(["--", "/bin/sleep", "43"])
        .spawn()
        .unwrap();
    wait_for(&addr);
    let slot = slot_of(&addr);
    runner.kill().unwrap();
    runner.wait().unwrap();
    assert!(
        Path::new(STATE_ROOT).join(format!("c{slot}")).exists(),
        "the killed runner's slot should remain until a sweep"
    );
    let swept = Command::new(EBB)
        .args(["sandbox", "sweep"])
        .output()
        .unwrap();
    assert!(swept.status.success());
    assert_eq!(
        traces(slot),
        Vec::<PathBuf>::new(),
        "left behind after kill -9 and a sweep"
    );
    let procs = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&procs.stdout)
            .lines()
            .any(|l| l.trim() == "/bin/sleep 43"),
        "the container's process outlived its runner"
    );
}
