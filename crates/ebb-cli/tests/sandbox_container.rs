//! `ebb sandbox run --kind container` end to end. Needs root, namespaces,
//! cgroups and Debian's busybox-static; each test says why when it skips.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const EBB: &str = env!("CARGO_BIN_EXE_ebb");

/// Why containers cannot run here, if they cannot.
macro_rules! require_containers {
    ($name:expr) => {
        if let Some(why) = ebb_testkit::containers_unavailable() {
            ebb_testkit::skip_or_fail($name, &why);
            return;
        }
    };
}

fn sandbox(args: &[&str], cmd: &[&str]) -> Output {
    Command::new(EBB)
        .args(["sandbox", "run", "--kind", "container"])
        .args(args)
        .arg("--")
        .args(cmd)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exit_status_passes_through() {
    require_containers!("exit_status_passes_through");
    let out = sandbox(&["--net", "none"], &["/bin/sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
}

#[test]
fn container_sees_only_its_own_processes() {
    require_containers!("container_sees_only_its_own_processes");
    let out = sandbox(&["--net", "none"], &["/bin/ls", "/proc"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let pids: Vec<u32> = text(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // Init (1) and ls itself; nothing from the host.
    assert!(pids.contains(&1), "no PID 1 in {pids:?}");
    assert!(
        pids.len() <= 3,
        "container sees foreign processes: {pids:?}"
    );
}

#[test]
fn hostname_is_its_own() {
    require_containers!("hostname_is_its_own");
    let host_before = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = sandbox(
        &["--net", "none", "--hostname", "inner-box"],
        &["/bin/hostname"],
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "inner-box",
        "stderr: {}",
        text(&out.stderr)
    );
    let host_after = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host_before, host_after, "the host's hostname changed");
}

/// A minimal base layer: busybox and a shell link, removed when the guard drops.
fn tiny_rootfs(tag: &str) -> tempfile::TempDir {
    let guard = tempfile::Builder::new()
        .prefix(&format!("ebb-test-rootfs-{tag}-"))
        .tempdir()
        .unwrap();
    let dir = guard.path();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", dir.join("bin/sh")).unwrap();
    guard
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn writes_stay_in_the_upper_layer() {
    require_containers!("writes_stay_in_the_upper_layer");
    let guard = tiny_rootfs("upper");
    let base = guard.path();
    let before = files_under(base);
    let script = "echo hi > /written && echo x > /bin/added && rm /bin/sh && cat /written";
    let out = sandbox(
        &["--net", "none", "--rootfs", base.to_str().unwrap()],
        &["/bin/busybox", "sh", "-c", script],
    );
    assert_eq!(
        text(&out.stdout).trim(),
        "hi",
        "stderr: {}",
        text(&out.stderr)
    );
    assert_eq!(files_under(base), before, "the base layer changed");
    // The upper layer lived on a tmpfs inside the container's own mount
    // namespace: the host never sees it, and it went with the container.
    let scratch: Vec<_> = std::fs::read_dir("/run/ebb/scratch")
        .unwrap()
        .flatten()
        .collect();
    assert!(
        scratch.is_empty(),
        "upper layer visible on the host: {scratch:?}"
    );
}

#[test]
fn exceeding_the_memory_limit_kills_only_the_container() {
    require_containers!("exceeding_the_memory_limit_kills_only_the_container");
    let out = sandbox(
        &["--net", "none", "--memory-mb", "32"],
        &["/bin/ebb", "sandbox", "hog", "--mb", "256"],
    );
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(137), "stderr: {err}");
    assert!(
        err.contains("killed: memory limit 32 MiB reached"),
        "stderr: {err}"
    );
    // The same program under a roomier limit completes: the limit did it.
    let ok = sandbox(
        &["--net", "none", "--memory-mb", "64"],
        &["/bin/ebb", "sandbox", "hog", "--mb", "8"],
    );
    assert!(ok.status.success(), "stderr: {}", text(&ok.stderr));
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit() {
    require_containers!("a_fork_bomb_stops_at_the_pids_limit");
    let bomb = "i=0; while [ $i -lt 40 ]; do sleep 1 & i=$((i+1)); done; wait";
    let out = sandbox(&["--net", "none", "--pids", "8"], &["/bin/sh", "-c", bomb]);
    let err = text(&out.stderr);
    assert!(err.contains("pids limit 8 reached"), "stderr: {err}");
}

#[test]
fn refused_syscalls_fail_inside_and_work_outside() {
    require_containers!("refused_syscalls_fail_inside_and_work_outside");
    for probe in ["keyctl", "unshare", "clone-newuts"] {
        let outside = Command::new(EBB)
            .args(["sandbox", "probe-syscall", probe])
            .output()
            .unwrap();
        let said = text(&outside.stdout);
        assert!(outside.status.success(), "{probe} refused outside: {said}");
        let inside = sandbox(
            &["--net", "none"],
            &["/bin/ebb", "sandbox", "probe-syscall", probe],
        );
        let said = text(&inside.stdout);
        let err = text(&inside.stderr);
        assert_eq!(
            inside.status.code(),
            Some(1),
            "{probe}: stdout {said} stderr {err}"
        );
        assert!(
            said.contains("refused: Operation not permitted"),
            "{probe}: {said}"
        );
    }
}

#[test]
fn a_second_container_does_not_see_the_first() {
    require_containers!("a_second_container_does_not_see_the_first");
    let mut first = Command::new(EBB)
        .args(["sandbox", "run", "--net", "none", "--", "/bin/sh", "-c"])
        .arg("echo up; exec sleep 41")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(first.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "up");
    let second = sandbox(&["--net", "none"], &["/bin/ps"]);
    let ps = text(&second.stdout);
    // SAFETY: kill with a child's pid and a constant signal.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    let status = first.wait().unwrap();
    assert!(
        !ps.contains("sleep 41"),
        "second container sees the first: {ps}"
    );
    assert!(ps.contains("ps"), "ps printed nothing: {ps}");
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "SIGTERM reached the command"
    );
}

/// Bound on polling for the runner's address file (1 ms apart).
const ADDR_POLLS: u32 = 10_000;

#[test]
fn cpu_quota_and_limits_reach_the_cgroup() {
    require_containers!("cpu_quota_and_limits_reach_the_cgroup");
    if !Path::new("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists() {
        ebb_testkit::skip_or_fail(
            "cpu_quota_and_limits_reach_the_cgroup",
            "checks cgroup v1 files only",
        );
        return;
    }
    let guard = tempfile::Builder::new()
        .prefix("ebb-quota-")
        .tempdir()
        .unwrap();
    let addr = guard.path().join("addr");
    let runner = Command::new(EBB)
        .args([
            "sandbox",
            "run",
            "--cpus",
            "0.5",
            "--memory-mb",
            "48",
            "--pids",
            "9",
        ])
        .arg("--addr-file")
        .arg(&addr)
        .args(["--", "/bin/sleep", "44"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut text = String::new();
    for _ in 0..ADDR_POLLS {
        text = std::fs::read_to_string(&addr).unwrap_or_default();
        if text.ends_with('\n') {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let ip: std::net::Ipv4Addr = text.split_whitespace().next().unwrap().parse().unwrap();
    let slot = (u32::from(ip) - u32::from(std::net::Ipv4Addr::new(10, 213, 0, 0))) / 4;
    let read = |p: String| std::fs::read_to_string(p).unwrap().trim().to_string();
    let quota = read(format!("/sys/fs/cgroup/cpu/ebb/c{slot}/cpu.cfs_quota_us"));
    let period = read(format!("/sys/fs/cgroup/cpu/ebb/c{slot}/cpu.cfs_period_us"));
    let mem = read(format!(
        "/sys/fs/cgroup/memory/ebb/c{slot}/memory.limit_in_bytes"
    ));
    let pids = read(format!("/sys/fs/cgroup/pids/ebb/c{slot}/pids.max"));
    // SAFETY: kill with a child's pid and a constant signal.
    // Sent as early as a provider could: the command may still be starting.
    unsafe { libc::kill(runner.id() as i32, libc::SIGTERM) };
    let out = runner.wait_with_output().unwrap();
    let status = out.status;
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "SIGTERM was lost");
    // Stopped as asked: nothing to report (`ebb up` stops every container
    // node this way at shutdown).
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("killed by signal"), "stderr: {err}");
    assert_eq!((quota.as_str(), period.as_str()), ("50000", "100000"));
    assert_eq!(mem, (48u64 << 20).to_string());
    assert_eq!(pids, "9");
}

#[test]
fn a_missing_command_exits_127_and_says_why() {
    require_containers!("a_missing_command_exits_127_and_says_why");
    let out = sandbox(&["--net", "none"], &["/bin/no-such-program"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "stderr: {err}");
    assert!(
        err.contains("cannot run /bin/no-such-program"),
        "stderr: {err}"
    );
}

#[test]
fn the_command_starts_with_default_signal_dispositions() {
    require_containers!("the_command_starts_with_default_signal_dispositions");
    let out = sandbox(
        &["--net", "none"],
        &["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
    );
    let said = text(&out.stdout);
    assert!(
        said.contains("SigIgn:\t0000000000000000"),
        "ignored signals leak in: {said}"
    );
    assert!(
        said.contains("SigBlk:\t0000000000000000"),
        "blocked signals leak in: {said}"
    );
}

/// `--file HOST:INSIDE` gives the command a copy of a host file it could
/// not otherwise see, readable by root only; a missing host file is an
/// error naming it, before anything starts.
#[test]
fn a_host_file_is_copied_in_readable_by_root_only() {
    require_containers!("a_host_file_is_copied_in_readable_by_root_only");
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("node.token");
    std::fs::write(&host, "secret-7f3a\n").unwrap();
    let spec = format!("{}:/etc/ebb/node.token", host.display());
    let out = sandbox(
        &["--net", "none", "--file", &spec],
        &[
            "/bin/sh",
            "-c",
            "stat -c %a /etc/ebb/node.token; cat /etc/ebb/node.token",
        ],
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "400\nsecret-7f3a\n");

    let missing = format!("{}:/etc/ebb/t", dir.path().join("missing").display());
    let out = sandbox(&["--net", "none", "--file", &missing], &["/bin/true"]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(e.contains("cannot read") && e.contains("missing"), "{e}");
}
