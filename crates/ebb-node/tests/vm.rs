//! VM nodes end to end: a real QEMU `microvm` booting Debian's cloud kernel
//! (TCG unless KVM really works). Each test skips with a printed reason only
//! when QEMU or the kernel cannot be had on this machine.
#![allow(clippy::unwrap_used)]

use ebb_core::NodeId;
use ebb_node::provider::{NodeEvent, NodeProvider};
use ebb_node::sandbox::{Limits, Outcome, SandboxSpec};
use ebb_node::vm::image::VmImage;
use ebb_node::vm::initramfs::{compose, overlay_script};
use ebb_node::vm::migrate::live_migrate;
use ebb_node::vm::provider::VmConfig;
use ebb_node::vm::sandbox::SandboxOptions;
use ebb_node::vm::{GUEST_PORT, Machine, MachineSpec, VmError, VmProvider, run_sandboxed};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const MEMORY_MB: u64 = 256;

/// A guest process that keeps a counter in its own memory and hands out the
/// next value to each TCP connection: state that survives only if the
/// guest's RAM does.
fn counter_command() -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "n=0; while true; do n=$((n+1)); echo count=$n | nc -l -p {port}; done".into(),
    ]
}

/// Whether `e` means VMs cannot run on this machine (a skip) rather than
/// that something broke (a failure). A kernel that could not be fetched is
/// a failure, except without root, which fetching needs.
fn vm_unavailable(e: &VmError) -> bool {
    match e {
        VmError::NoQemu(_) | VmError::NoBusybox(_) => true,
        VmError::Kernel(_) => !ebb_testkit::is_root(),
        _ => false,
    }
}

fn prepare(test: &str) -> Option<VmImage> {
    match VmImage::prepare(&[]) {
        Ok(img) => {
            eprintln!("{test}: accelerator {}", img.accel.as_str());
            Some(img)
        }
        Err(e) if vm_unavailable(&e) => {
            ebb_testkit::skip_or_fail(test, &e.to_string());
            None
        }
        Err(e) => panic!("{test}: preparing the VM image failed: {e}"),
    }
}

/// Reads one `count=N` line from the counter; retries briefly because the
/// guest re-arms `nc` between connections.
fn read_count(addr: SocketAddr) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if let Some(n) = buf.trim().strip_prefix("count=") {
                return n.parse().unwrap();
            }
        }
        assert!(
            Instant::now() < deadline,
            "counter at {addr} never answered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_ready(p: &mut VmProvider, id: NodeId) {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        for ev in p.poll_events() {
            match ev {
                NodeEvent::Ready(n) if n == id => return,
                NodeEvent::Gone(n, why) if n == id => panic!("node {id} gone: {why}"),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id} not ready in {BOOT_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn counter_config() -> VmConfig {
    VmConfig {
        host_binaries: Vec::new(),
        node_command: counter_command(),
        memory_mb: MEMORY_MB,
        cpus: 1,
        max_capacity: 1,
        boot_timeout_ms: 60_000,
        files: Vec::new(),
    }
}

fn counter_provider() -> VmProvider {
    VmProvider::new(counter_config()).unwrap()
}

#[test]
fn vm_sandbox_passes_the_exit_status_and_output_through() {
    if prepare("vm_sandbox_passes_the_exit_status_and_output_through").is_none() {
        return;
    }
    let spec = SandboxSpec {
        limits: Limits {
            memory_mb: Some(MEMORY_MB),
            cpus: Some(1.0),
            pids: None,
        },
        rootfs: None,
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo hello from $(uname -r); exit 7".into(),
        ],
    };
    let mut out = Vec::new();
    let outcome = run_sandboxed(&spec, &SandboxOptions::default(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(outcome, Outcome::Exited(7), "console output: {out}");
    assert!(
        out.contains("hello from") && out.contains("cloud-amd64"),
        "{out}"
    );
}

#[test]
fn vm_sandbox_reports_the_guest_running_out_of_memory_as_the_memory_limit() {
    if prepare("vm_sandbox_reports_the_guest_running_out_of_memory_as_the_memory_limit").is_none() {
        return;
    }
    let spec = SandboxSpec {
        limits: Limits {
            memory_mb: Some(96),
            cpus: None,
            pids: None,
        },
        rootfs: None,
        // `sort` holds its whole input line in memory: 300 MB > 96 MiB.
        command: vec![
            "sh".into(),
            "-c".into(),
            "head -c 300000000 /dev/zero | sort >/dev/null".into(),
        ],
    };
    let outcome = run_sandboxed(&spec, &SandboxOptions::default(), &mut Vec::new()).unwrap();
    match outcome {
        Outcome::LimitKilled(why) => assert!(why.contains("memory_mb=96"), "{why}"),
        other => panic!("expected the memory limit to end the command, got {other:?}"),
    }
}

#[test]
fn vm_sandbox_runs_the_command_chrooted_in_a_given_rootfs() {
    if prepare("vm_sandbox_runs_the_command_chrooted_in_a_given_rootfs").is_none() {
        return;
    }
    let guard = tempfile::Builder::new()
        .prefix("ebb-vm-rootfs-")
        .tempdir()
        .unwrap();
    let root = guard.path();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    std::fs::write(root.join("etc/marker"), "inside the caller's rootfs\n").unwrap();
    let spec = SandboxSpec {
        limits: Limits {
            memory_mb: Some(MEMORY_MB),
            cpus: None,
            pids: None,
        },
        rootfs: Some(root.to_path_buf()),
        // Only the rootfs has /etc/marker; ebb's own initramfs has /ebb.
        command: vec![
            "/bin/sh".into(),
            "-c".into(),
            "/bin/busybox cat /etc/marker; test -e /ebb || exit 4".into(),
        ],
    };
    let mut out = Vec::new();
    let outcome = run_sandboxed(&spec, &SandboxOptions::default(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert_eq!(outcome, Outcome::Exited(4), "{out}");
    assert!(out.contains("inside the caller's rootfs"), "{out}");
}

#[test]
fn vm_sandbox_refuses_limits_it_cannot_apply() {
    let spec = SandboxSpec {
        limits: Limits {
            memory_mb: None,
            cpus: None,
            pids: Some(10),
        },
        rootfs: None,
        command: vec!["true".into()],
    };
    let err = run_sandboxed(&spec, &SandboxOptions::default(), &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, VmError::Unsupported(ref m) if m.contains("pids")),
        "{err}"
    );
}

#[test]
fn vm_node_boots_and_then_restores_from_a_snapshot_and_serves() {
    if prepare("vm_node_boots_and_then_restores_from_a_snapshot_and_serves").is_none() {
        return;
    }
    let mut p = counter_provider();
    // Cold boot: the node's port answers through the host forward.
    let cold = p.start(NodeId(1)).unwrap();
    wait_ready(&mut p, NodeId(1));
    assert!(read_count(cold.addr) >= 1);
    let rss = p.machine(NodeId(1)).unwrap().rss_kib().unwrap();
    let mem = p
        .machine(NodeId(1))
        .unwrap()
        .qmp()
        .query_memory_size_summary()
        .unwrap();
    assert_eq!(mem.base_memory_bytes, MEMORY_MB << 20);
    let cpus = p
        .machine(NodeId(1))
        .unwrap()
        .qmp()
        .query_cpus_fast()
        .unwrap();
    assert_eq!(cpus.len(), 1);
    eprintln!("cold node QEMU RSS {rss} KiB");

    // Snapshot, then a restored node serves on its own new port.
    let size = p.make_snapshot().unwrap();
    let restored = p.start(NodeId(2)).unwrap();
    assert_ne!(restored.addr, cold.addr);
    wait_ready(&mut p, NodeId(2));
    assert!(read_count(restored.addr) >= 1);
    let (cold_ms, restore_ms) = p.start_figures_ms();
    eprintln!("snapshot {size} bytes; cold {cold_ms:?} ms, restore {restore_ms:?} ms");
    // With a snapshot, the provider plans with the restore figure.
    assert_eq!(
        p.expected_start().as_nanos(),
        restore_ms.unwrap() * 1_000_000
    );
    p.stop(NodeId(1)).unwrap();
    p.stop(NodeId(2)).unwrap();
    let events = p.poll_events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::Gone(NodeId(1), _))),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NodeEvent::Gone(NodeId(2), _))),
        "{events:?}"
    );
    assert!(p.stop(NodeId(1)).is_err(), "a stopped node is unknown");
}

/// A node that may grow to capacity 2 boots with two vCPUs, one online; a
/// resize to 2 has the guest bring the other online (its own count, from
/// its console) and doubles its QEMU's quota on the host; live-migrated,
/// it keeps the quota and its known vCPU count (carried over at once, then
/// said by the guest on the new console), and a resize back to 1 still
/// reaches the guest.
#[test]
fn vm_node_resize_brings_vcpus_online_and_its_host_quota_follows() {
    const NAME: &str = "vm_node_resize_brings_vcpus_online_and_its_host_quota_follows";
    if prepare(NAME).is_none() {
        return;
    }
    if !ebb_testkit::is_root() {
        ebb_testkit::skip_or_fail(
            NAME,
            "a VM node that scales up needs root (its host cgroup)",
        );
        return;
    }
    let mut p = VmProvider::new(VmConfig {
        max_capacity: 2,
        ..counter_config()
    })
    .unwrap();
    let id = NodeId(1);
    p.start(id).unwrap();
    wait_ready(&mut p, id);
    let vcpus = p.machine(id).unwrap().qmp().query_cpus_fast().unwrap();
    assert_eq!(vcpus.len(), 2, "the VM has every vCPU it may get");
    let follows = |p: &mut VmProvider, want: u32| {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while p.online_cpus(id) != Some(want) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let console = p.machine(id).unwrap().console();
        assert_eq!(p.online_cpus(id), Some(want), "console:\n{console}");
        assert_eq!(p.cpu_quota(id).unwrap(), Some(f64::from(want)));
    };
    // Capacity 1 at boot, then 2.
    follows(&mut p, 1);
    p.resize(id, 2).unwrap();
    follows(&mut p, 2);
    // Moved to a new QEMU, the node keeps its quota (the new process
    // joined the cgroup) and its vCPU count, and still takes a resize,
    // back to 1.
    let before = p.machine(id).unwrap().pid();
    p.migrate(id).unwrap();
    assert_ne!(p.machine(id).unwrap().pid(), before, "a new QEMU");
    assert_eq!(p.cpu_quota(id).unwrap(), Some(2.0));
    // Right after the move the count is known: carried over from the
    // source if the guest has not yet said it on the new console.
    let said_yet = p.machine(id).unwrap().console().contains("EBB-CPUS");
    assert_eq!(p.online_cpus(id), Some(2), "right after the move");
    eprintln!("{NAME}: guest had answered on the new console when first read: {said_yet}");
    // Then the guest's own word on the new QEMU's console, which never saw
    // the boot (so the count is not a line from before the move).
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !p.machine(id).unwrap().console().contains("EBB-CPUS 2") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let console = p.machine(id).unwrap().console();
    assert!(console.contains("EBB-CPUS 2"), "target console:\n{console}");
    assert!(
        !console.contains("EBB-SERVING"),
        "target console:\n{console}"
    );
    follows(&mut p, 2);
    p.resize(id, 1).unwrap();
    follows(&mut p, 1);
    p.stop(id).unwrap();
}

#[test]
fn vm_live_migration_preserves_guest_memory_state_and_the_address() {
    let Some(img) = prepare("vm_live_migration_preserves_guest_memory_state_and_the_address")
    else {
        return;
    };
    let guard = tempfile::Builder::new()
        .prefix("ebb-vm-test-")
        .tempdir()
        .unwrap();
    let dir = guard.path();
    let initrd = dir.join("migrate.cpio");
    let cmd: Vec<String> = counter_command()
        .iter()
        .map(|w| w.replace("{port}", &GUEST_PORT.to_string()))
        .collect();
    compose(&img.base, &overlay_script("serve", &cmd).unwrap(), &initrd).unwrap();
    let spec = MachineSpec {
        vmlinuz: img.kernel.vmlinuz.clone(),
        initrd: initrd.clone(),
        accel: img.accel,
        memory_mb: MEMORY_MB,
        cpus: 1,
        max_cpus: 1,
        forward_port: true,
        incoming: None,
    };
    let mut src = Machine::spawn(&spec).unwrap();
    src.wait_port_answers(BOOT_TIMEOUT).unwrap();
    let a = read_count(src.host_addr().unwrap());
    let b = read_count(src.host_addr().unwrap());
    assert!(b > a);

    let addr = src.host_addr().unwrap();
    let (mut dst, report) = live_migrate(&mut src).unwrap();
    assert!(dst.qmp().query_status().unwrap().running);
    // The target took over the source's port; the emptied source was told
    // to exit, not killed.
    assert_eq!(dst.host_addr(), Some(addr));
    assert_eq!(src.host_addr(), None);
    let exit = src.try_wait().unwrap();
    assert!(exit.is_some_and(|s| s.success()), "source: {exit:?}");
    drop(src);
    // The counter continues where it was, at the same address: the guest's
    // memory moved and so did the port.
    let c = read_count(addr);
    eprintln!("migration: {report:?}; counter {a}, {b} before, {c} after");
    assert!(c > b, "counter restarted: {c} after {b}");
    assert!(report.total_time_ms > 0);
    assert!(
        report.address_unreachable_ms.is_some(),
        "the source's STOP and the forward's move are both seen"
    );
    drop(dst);
}

#[test]
fn vm_machine_reports_qemu_failing_to_start_with_its_own_words() {
    if ebb_node::vm::image::qemu_available().is_err() {
        ebb_testkit::skip_or_fail(
            "vm_machine_reports_qemu_failing_to_start_with_its_own_words",
            "no QEMU (install qemu-system-x86)",
        );
        return;
    }
    let spec = MachineSpec {
        vmlinuz: "/nonexistent/vmlinuz".into(),
        initrd: "/nonexistent/initrd".into(),
        accel: ebb_node::vm::Accel::Tcg,
        memory_mb: 64,
        cpus: 1,
        max_cpus: 1,
        forward_port: true,
        incoming: None,
    };
    match Machine::spawn(&spec) {
        Err(VmError::QemuExited { console, .. }) => {
            assert!(console.contains("/nonexistent/vmlinuz"), "{console}")
        }
        Err(e) => panic!("expected QEMU's own error, got {e}"),
        Ok(_) => panic!("QEMU started without a kernel"),
    }
}

#[test]
fn vm_node_that_never_serves_is_reported_gone_after_the_boot_timeout() {
    if prepare("vm_node_that_never_serves_is_reported_gone_after_the_boot_timeout").is_none() {
        return;
    }
    let mut p = VmProvider::new(VmConfig {
        host_binaries: Vec::new(),
        node_command: vec!["sleep".into(), "3600".into()],
        memory_mb: MEMORY_MB,
        cpus: 1,
        max_capacity: 1,
        boot_timeout_ms: 1_000,
        files: Vec::new(),
    })
    .unwrap();
    p.start(NodeId(7)).unwrap();
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let why = loop {
        let gone = p.poll_events().into_iter().find_map(|e| match e {
            NodeEvent::Gone(NodeId(7), why) => Some(why),
            NodeEvent::Ready(n) => panic!("node {n} cannot be ready: nothing listens"),
            _ => None,
        });
        if let Some(why) = gone {
            break why;
        }
        assert!(Instant::now() < deadline, "no Gone event");
        std::thread::sleep(Duration::from_millis(20));
    };
    // It names the setting that ran out and where to raise it.
    assert!(
        why.contains("not serving within boot_timeout_ms = 1000 ms") && why.contains("[pool]"),
        "{why}"
    );
    assert!(
        p.machine(NodeId(7)).is_none(),
        "a gone node's QEMU is dropped"
    );
}
