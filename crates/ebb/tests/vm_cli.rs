//! `ebb vm run` end to end: the ebb binary itself runs inside a TCG (or KVM)
//! guest and the command's exit status comes back as ebb's own.
#![allow(clippy::unwrap_used)]

use ebb_node::vm::VmError;
use ebb_node::vm::image::VmImage;
use std::process::Command;

#[test]
fn vm_run_passes_the_guest_command_status_through_the_cli() {
    let ebb = env!("CARGO_BIN_EXE_ebb");
    match VmImage::prepare(&[]) {
        Ok(_) => {}
        Err(e @ (VmError::NoQemu(_) | VmError::Kernel(_) | VmError::NoBusybox(_))) => {
            eprintln!("SKIP vm_run_passes_the_guest_command_status_through_the_cli: {e}");
            return;
        }
        Err(e) => panic!("preparing the VM image failed: {e}"),
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
