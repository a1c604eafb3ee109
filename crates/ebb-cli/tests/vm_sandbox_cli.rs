//! `ebb sandbox run --kind vm` as a user runs it: host files copied in
//! with `--file` (as for a container), and the scratch files of an `ebb`
//! killed with SIGKILL removed by the next one.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const EBB: &str = env!("CARGO_BIN_EXE_ebb");
/// Guest RAM for these runs: enough for the initramfs and a shell.
const MEMORY_MB: &str = "128";

/// A fresh directory, removed when the guard drops, even when the test fails.
fn scratch_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ebb-vm-sbx-test-{name}-"))
        .tempdir()
        .unwrap()
}

fn run_vm(tmp: &Path, args: &[&str], command: &str) -> (Option<i32>, String, String) {
    let out = Command::new(EBB)
        .args(["sandbox", "run", "--kind", "vm", "--memory-mb", MEMORY_MB])
        .args(args)
        .args(["--", "sh", "-c", command])
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sandbox_vm_copies_files_in_at_their_path_or_inside_the_rootfs() {
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail(
            "sandbox_vm_copies_files_in_at_their_path_or_inside_the_rootfs",
            &why,
        );
        return;
    }
    let guard = scratch_dir("files");
    let dir = guard.path();
    let token = dir.join("node.token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let file = format!("{}:/etc/ebb/node.token", token.display());
    let show = "cat /etc/ebb/node.token; stat -c 'mode=%a' /etc/ebb/node.token; exit 6";

    let (code, out, err) = run_vm(dir, &["--file", &file], show);
    assert_eq!(code, Some(6), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("s3cret-token"), "{out}");
    assert!(out.contains("mode=400"), "{out}");

    // With --rootfs the command is chrooted, so the file must be in that root.
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let rootfs = root.to_str().unwrap();
    let (code, out, err) = run_vm(dir, &["--rootfs", rootfs, "--file", &file], show);
    assert_eq!(code, Some(6), "stdout: {out}\nstderr: {err}");
    assert!(out.contains("s3cret-token"), "{out}");
    assert!(out.contains("mode=400"), "{out}");
}

/// Scratch paths in `tmp` that name `pid` as their owner.
fn owned_by(tmp: &Path, pid: u32) -> Vec<String> {
    let prefix = format!("ebb-vm-{pid}-");
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Bound on polling for a QEMU to exit after its owner died (10 ms apart).
const QEMU_EXIT_POLLS: u32 = 3_000;

/// Pids of processes whose command line names a path under `tmp`.
fn qemus_using(tmp: &Path) -> Vec<u32> {
    let needle = tmp.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// Whether every QEMU using `tmp` exits within [`QEMU_EXIT_POLLS`]: a
/// guest ends a moment after its owner, not with it.
fn no_qemu_left(tmp: &Path) -> bool {
    for _ in 0..QEMU_EXIT_POLLS {
        if qemus_using(tmp).is_empty() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

#[test]
fn scratch_files_of_an_ebb_killed_with_sigkill_are_removed_by_the_next() {
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail(
            "scratch_files_of_an_ebb_killed_with_sigkill_are_removed_by_the_next",
            &why,
        );
        return;
    }
    let guard = scratch_dir("killed");
    let tmp = guard.path();
    let mut victim = Command::new(EBB)
        .args(["sandbox", "run", "--kind", "vm", "--memory-mb", MEMORY_MB])
        .args(["--", "sh", "-c", "echo guest-up; sleep 600"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = victim.id();
    // The guest prints once it runs the command: QEMU's directory and the
    // initramfs exist by then.
    let mut lines = BufReader::new(victim.stdout.take().unwrap()).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l == "guest-up");
    assert!(up, "the guest never ran the command");
    let left = owned_by(tmp, pid);
    assert!(
        left.iter().any(|n| n.ends_with(".cpio")) && left.len() >= 2,
        "a running sandbox has its initramfs and QEMU's directory: {left:?}"
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    // Its QEMU follows it (it was tied to its owner), so no guest is left.
    let qemu_gone = no_qemu_left(tmp);
    assert!(
        qemu_gone,
        "QEMU outlived the killed ebb: {:?}",
        qemus_using(tmp)
    );
    assert_eq!(
        owned_by(tmp, pid),
        left,
        "SIGKILL gives no destructor a chance: the paths stay until the next run"
    );

    let out = Command::new(EBB)
        .args(["sandbox", "run", "--kind", "vm", "--memory-mb", MEMORY_MB])
        .args(["--", "true"])
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = owned_by(tmp, pid);
    let rest: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(
        after.is_empty(),
        "the killed run's paths were left: {after:?}"
    );
    assert!(
        rest.is_empty(),
        "the second run left paths behind: {rest:?}"
    );
}

/// The process group of `pid`, from /proc (the field after the parent).
fn process_group(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid pgrp ...: comm may hold spaces.
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// A terminal's Ctrl-C on `ebb vm run`: QEMU is out of the terminal's
/// process group (so `ebb up` can drain VM nodes), yet the guest still
/// stops, because `ebb vm run` dies of the SIGINT and QEMU follows its
/// owner.
#[test]
fn a_terminal_ctrl_c_on_ebb_vm_run_stops_its_guest() {
    use std::os::unix::process::CommandExt;
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail("a_terminal_ctrl_c_on_ebb_vm_run_stops_its_guest", &why);
        return;
    }
    let guard = scratch_dir("ctrl-c");
    let tmp = guard.path();
    // Its own group stands for the terminal's foreground job.
    let mut run = Command::new(EBB)
        .args(["vm", "run", "--memory-mb", MEMORY_MB])
        .args(["--", "sh", "-c", "echo guest-up; sleep 600"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = run.id();
    let mut lines = BufReader::new(run.stdout.take().unwrap()).lines();
    let up = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l == "guest-up");
    assert!(up, "the guest never ran the command");
    let qemus = qemus_using(tmp);
    assert_eq!(qemus.len(), 1, "one QEMU: {qemus:?}");
    assert_eq!(
        process_group(qemus[0]),
        qemus[0],
        "QEMU leads a process group of its own"
    );
    // SAFETY: kill(2) has no memory preconditions; the group is the one our
    // child leads, and the child has not been waited for.
    let rc = unsafe { libc::kill(-(pid as i32), libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT delivered to the group");
    let status = run.wait().unwrap();
    assert!(
        !status.success(),
        "ebb vm run ended by the Ctrl-C: {status}"
    );
    let qemu_gone = no_qemu_left(tmp);
    assert!(
        qemu_gone,
        "the guest outlived the Ctrl-C: {:?}",
        qemus_using(tmp)
    );
}
