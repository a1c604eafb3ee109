//! `ebb up` killed with SIGKILL cannot stop its nodes, so the nodes stop
//! themselves: a process node, and as root a container runner with the
//! container it runs and a VM node's QEMU, ends once its owner is gone
//! instead of serving on as an orphan.
#![allow(clippy::unwrap_used)]

mod common;
mod gateway_common;

use gateway_common::{MAX_POLLS, POLL_PAUSE, Up, alive, children_of};

fn config(kind: &str) -> String {
    format!(
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"{kind}\"\ninitial = 2\nmin = 1\nmax = 4\n"
    )
}

/// Every process below `pid`, children first.
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut pending = vec![pid];
    while let Some(p) = pending.pop() {
        for c in children_of(p) {
            out.push(c);
            pending.push(c);
        }
    }
    out
}

fn nodes_end_with_their_owner(kind: &str) {
    let up = Up::start(&format!("owner-killed-{kind}"), &config(kind));
    up.wait_ready(2);
    let nodes = up.node_pids();
    assert_eq!(nodes.len(), 2, "one child per node: {nodes:?}");
    kill_and_wait(kind, up);
}

/// SIGKILLs `ebb up` and waits until every process below it has ended.
fn kill_and_wait(kind: &str, up: Up) {
    let below = descendants(up.pid());
    // SAFETY: kill(2) on the pid of `ebb up`, this test's own child, not
    // yet waited for.
    assert_eq!(unsafe { libc::kill(up.pid() as i32, libc::SIGKILL) }, 0);
    let mut polls = 0;
    loop {
        let left: Vec<u32> = below.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            break;
        }
        polls += 1;
        if polls >= MAX_POLLS {
            for p in &left {
                // SAFETY: kill(2) on processes this test's `ebb up`
                // started, so that a failure leaves none running.
                unsafe { libc::kill(*p as i32, libc::SIGKILL) };
            }
            panic!(
                "{kind}: processes still running after their owner was killed: {left:?} of {below:?}"
            );
        }
        std::thread::sleep(POLL_PAUSE);
    }
}

#[test]
fn process_nodes_end_when_ebb_up_is_killed() {
    nodes_end_with_their_owner("process");
}

#[test]
fn container_runners_end_when_ebb_up_is_killed_as_root() {
    common::on_kind(
        "container",
        "container_runners_end_when_ebb_up_is_killed_as_root",
        nodes_end_with_their_owner,
    );
}

/// The command name of `pid`, from /proc.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// QEMU is started when a VM node starts, long before its guest has
/// booted: the test kills `ebb up` once QEMU runs, so it needs no boot.
#[test]
fn vm_nodes_end_when_ebb_up_is_killed_as_root() {
    const NAME: &str = "vm_nodes_end_when_ebb_up_is_killed_as_root";
    if let Some(why) = common::vm_nodes_unavailable() {
        ebb_testkit::skip_or_fail(NAME, &why);
        return;
    }
    let up = Up::start(
        "owner-killed-vm",
        "[gateway]\nrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
         [service]\nname = \"demo\"\n\
         [pool]\nkind = \"vm\"\ninitial = 1\nmin = 1\nmax = 1\nmemory_mb = 256\n\
         boot_timeout_ms = 300000\n",
    );
    let mut polls = 0;
    let qemu = loop {
        if let Some(q) = up
            .node_pids()
            .into_iter()
            .find(|p| comm(*p).starts_with("qemu-system"))
        {
            break q;
        }
        polls += 1;
        assert!(
            polls < MAX_POLLS,
            "no QEMU below ebb up; children {:?}; output {:?}",
            up.node_pids(),
            up.output()
        );
        std::thread::sleep(POLL_PAUSE);
    };
    kill_and_wait("vm", up);
    assert!(!alive(qemu), "QEMU {qemu} outlived ebb up");
}
