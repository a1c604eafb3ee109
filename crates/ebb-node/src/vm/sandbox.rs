//! `ebb sandbox run --kind vm`: one command in a fresh VM, its exit status
//! passed back over the serial console.
//!
//! The guest's `/init` prints a begin marker, runs the command with the
//! console as its stdout/stderr, prints `EBB-EXIT <status>` and powers off;
//! QEMU then exits (`-no-reboot`). Everything between the markers is the
//! command's output.

use super::image::VmImage;
use super::initramfs::{BEGIN_MARKER, EXIT_MARKER, compose, overlay_script};
use super::machine::{Machine, MachineSpec};
use super::{DEFAULT_MEMORY_MB, VmError};
use crate::sandbox::{Outcome, SandboxSpec};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Wall-clock bound on one sandboxed run unless the caller sets one.
pub const DEFAULT_RUN_TIMEOUT_MS: u64 = 120_000;
/// Below this the cloud kernel cannot unpack the initramfs and boot.
pub const MIN_MEMORY_MB: u64 = 64;
/// More vCPUs than this is a typo, not a sandbox.
pub const MAX_CPUS: u32 = 64;

#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Host binaries to copy into the guest (with their shared libraries),
    /// at their host paths, so the command can name them.
    pub host_binaries: Vec<PathBuf>,
    pub timeout_ms: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            host_binaries: Vec::new(),
            timeout_ms: DEFAULT_RUN_TIMEOUT_MS,
        }
    }
}

/// Boots a VM that runs `spec.command`, copies its console output to `out`
/// and returns how it ended.
///
/// `limits.memory_mb` becomes the guest's RAM and `limits.cpus` its vCPU
/// count (rounded up): the guest kernel cannot exceed what it was given.
/// `limits.pids` and `rootfs` are refused rather than silently ignored.
pub fn run_sandboxed(
    spec: &SandboxSpec,
    opts: &SandboxOptions,
    out: &mut dyn Write,
) -> Result<Outcome, VmError> {
    if spec.command.is_empty() {
        return Err(VmError::Unsupported("an empty command".into()));
    }
    if spec.limits.pids.is_some() {
        return Err(VmError::Unsupported(
            "a pids limit (the guest kernel has its own process table; bound memory instead)"
                .into(),
        ));
    }
    if let Some(r) = &spec.rootfs {
        return Err(VmError::Unsupported(format!(
            "a custom rootfs ({}); the guest root is ebb's initramfs",
            r.display()
        )));
    }
    let memory_mb = spec.limits.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
    if memory_mb < MIN_MEMORY_MB {
        return Err(VmError::Unsupported(format!(
            "memory_mb={memory_mb} (a VM needs at least {MIN_MEMORY_MB})"
        )));
    }
    let cpus = match spec.limits.cpus {
        None => 1,
        Some(c) if c > 0.0 && c <= f64::from(MAX_CPUS) => c.ceil() as u32,
        Some(c) => {
            return Err(VmError::Unsupported(format!(
                "cpus={c} (accepted: 0 < cpus <= {MAX_CPUS})"
            )));
        }
    };
    let image = VmImage::prepare(&opts.host_binaries)?;
    let run_dir = std::env::temp_dir().join(format!("ebb-vm-run-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let initrd = run_dir.join(format!("initrd-{}.cpio", unique()));
    compose(&image.base, &overlay_script("run", &spec.command)?, &initrd)?;
    let machine_spec = MachineSpec {
        vmlinuz: image.kernel.vmlinuz.clone(),
        initrd: initrd.clone(),
        accel: image.accel,
        memory_mb,
        cpus,
        forward_port: false,
        incoming: None,
    };
    let result = run(&machine_spec, opts.timeout_ms, out);
    let _ = std::fs::remove_file(&initrd);
    result
}

fn run(spec: &MachineSpec, timeout_ms: u64, out: &mut dyn Write) -> Result<Outcome, VmError> {
    let mut m = Machine::spawn(spec)?;
    m.wait_exit(Duration::from_millis(timeout_ms))?;
    let console = m.console();
    let (output, status) = parse_console(&console);
    out.write_all(output.as_bytes())?;
    match status {
        Some(code) => Ok(Outcome::Exited(code)),
        None => Err(VmError::QemuExited {
            status: "guest stopped without reporting the command's exit status".into(),
            console: super::tail_lines(&console, 20),
        }),
    }
}

/// Splits the console into the command's output and its exit status.
pub fn parse_console(console: &str) -> (String, Option<i32>) {
    let text = console.replace('\r', "");
    let mut output = String::new();
    let mut inside = false;
    for line in text.lines() {
        if !inside {
            inside = line.trim() == BEGIN_MARKER;
            continue;
        }
        if let Some(code) = line.strip_prefix(EXIT_MARKER) {
            return (output, code.trim().parse().ok());
        }
        output.push_str(line);
        output.push('\n');
    }
    (output, None)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_parsing_finds_output_and_status() {
        let c = "[ 0.1] boot\r\nEBB-BEGIN\r\nhello\r\nworld\r\nEBB-EXIT 3\r\n[ 1.0] reboot\r\n";
        let (out, code) = parse_console(c);
        assert_eq!(out, "hello\nworld\n");
        assert_eq!(code, Some(3));
        assert_eq!(parse_console("EBB-BEGIN\nno end\n").1, None);
    }
}
