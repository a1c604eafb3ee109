//! `ebb vm run` end to end: the ebb binary itself runs inside a TCG (or KVM)
//! guest and the command's exit status comes back as ebb's own.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn vm_run_passes_the_guest_command_status_through_the_cli() {
    let ebb = env!("CARGO_BIN_EXE_ebb");
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail(
            "vm_run_passes_the_guest_command_status_through_the_cli",
            &why,
        );
        return;
    }
    let out = Command::new(ebb)
        .args([
            "vm",
            "run",
            "--memory-mb",
            "256",
            "--include",
            ebb,
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("{ebb} --version; exit 5"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(concat!("ebb ", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

#[test]
fn vm_probe_says_why_it_chose_the_accelerator() {
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail("vm_probe_says_why_it_chose_the_accelerator", &why);
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["vm", "probe"])
        .env("EBB_VM_ACCEL", "tcg")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("accelerator: tcg"), "{stdout}");
    assert!(stdout.contains("why: EBB_VM_ACCEL=tcg is set"), "{stdout}");
}

#[test]
fn vm_run_rejects_too_little_memory_naming_the_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["vm", "run", "--memory-mb", "8", "--", "true"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--memory-mb 8") && err.contains("at least 64"),
        "{err}"
    );
}

/// The address on a `<what>: ADDR …` line of `ebb vm migrate`.
fn printed_addr<'a>(stdout: &'a str, what: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{what}: ")))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {what} line in {stdout}"))
}

/// The `N` in a `check_<when>: {"Ok":N} …` line of `ebb vm migrate`.
fn checked_count(stdout: &str, when: &str) -> u64 {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("check_{when}: ")))
        .unwrap_or_else(|| panic!("no check_{when} line in {stdout}"));
    let digits: String = line
        .trim_start_matches("{\"Ok\":")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no counter in {line:?}"))
}

#[test]
fn vm_migrate_keeps_an_ebb_node_demo_counter_and_its_address() {
    let ebb = env!("CARGO_BIN_EXE_ebb");
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail(
            "vm_migrate_keeps_an_ebb_node_demo_counter_and_its_address",
            &why,
        );
        return;
    }
    // The default guest command is this binary's `ebb node`.
    // A TCG guest sharing the CPU with other tests can be slow to answer.
    let check =
        format!("{ebb} call --timeout-ms 30000 --addr {{addr}} Demo.incr '{{\"key\":\"a\"}}' 2>&1");
    let out = Command::new(ebb)
        .args(["vm", "migrate", "--check", &check])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        printed_addr(&stdout, "source"),
        printed_addr(&stdout, "target"),
        "the node's address changed: {stdout}"
    );
    assert!(stdout.contains("(address unchanged)"), "{stdout}");
    let before = checked_count(&stdout, "before");
    let after = checked_count(&stdout, "after");
    assert_eq!(
        after,
        before + 1,
        "the node's counter did not survive: {stdout}"
    );
}

/// Bound on polling for QEMU to start or exit (10 ms apart).
const QEMU_POLLS: u32 = 6_000;

/// Command lines of processes that name a path under `tmp` (QEMUs started
/// by an `ebb` whose TMPDIR is `tmp`).
fn qemus_using(tmp: &Path) -> Vec<(u32, String)> {
    let needle = tmp.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            c.contains(&needle).then_some((pid, c))
        })
        .collect()
}

#[test]
fn vm_migrate_killed_with_sigkill_leaves_no_target_qemu() {
    let ebb = env!("CARGO_BIN_EXE_ebb");
    if let Some(why) = common::vm_image_unavailable() {
        ebb_testkit::skip_or_fail("vm_migrate_killed_with_sigkill_leaves_no_target_qemu", &why);
        return;
    }
    let guard = tempfile::Builder::new()
        .prefix("ebb-vm-migrate-kill-")
        .tempdir()
        .unwrap();
    let tmp = guard.path();
    let mut victim = Command::new(ebb)
        .args(["vm", "migrate"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The target is the QEMU started with `-incoming`; once it runs, the
    // source is copying (or has copied) its guest to it.
    let mut target = None;
    for _ in 0..QEMU_POLLS {
        target = qemus_using(tmp)
            .into_iter()
            .find(|(_, cmd)| cmd.contains("-incoming"));
        if target.is_some() || victim.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let Some((target_pid, _)) = target else {
        let _ = victim.kill();
        let _ = victim.wait();
        panic!("ebb vm migrate never started a target QEMU");
    };
    victim.kill().unwrap();
    victim.wait().unwrap();
    let mut left = qemus_using(tmp);
    for _ in 0..QEMU_POLLS {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        left = qemus_using(tmp);
    }
    for (pid, _) in &left {
        // SAFETY: kill with a pid read from /proc and a constant signal; a
        // leftover of a failed run is not left to hold the CPU.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    assert!(
        left.is_empty(),
        "QEMU outlived the killed ebb vm migrate (target was {target_pid}): {left:?}"
    );
}
