//! `ebb sandbox run --kind vm`: one command in a fresh VM, its exit status
//! passed back over the serial console.
//!
//! The guest's `/init` prints a begin marker, runs the command with the
//! console as its stdout/stderr, prints `EBB-EXIT <status>` and powers off;
//! QEMU then exits (`-no-reboot`). Everything between the markers is the
//! command's output.

use super::image::VmImage;
use super::initramfs::{
    BEGIN_MARKER, EXIT_MARKER, OOM_MARKER, compose, files_archive, overlay_raw_script,
    overlay_script,
};
use super::machine::{Machine, MachineSpec};
use super::rootfs::{GUEST_ROOTFS, append_tree, chroot_script};
use super::{DEFAULT_MEMORY_MB, VmError};
use crate::sandbox::{FileIn, Outcome, SandboxSpec};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
    /// Host files copied into the guest before the command starts, mode
    /// 0400, at their path inside the command's root (under `/rootfs`
    /// when the spec has one), as `ebb sandbox run --file` does for a
    /// container.
    pub files: Vec<FileIn>,
    /// Bound on the whole run, boot included.
    pub timeout_ms: u64,
    /// Bound on the boot alone: from launch until the guest starts the
    /// command (a [`VmError::BootTimeout`] past it).
    pub boot_timeout_ms: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            host_binaries: Vec::new(),
            files: Vec::new(),
            timeout_ms: DEFAULT_RUN_TIMEOUT_MS,
            boot_timeout_ms: super::provider::DEFAULT_BOOT_TIMEOUT_MS,
        }
    }
}

/// Boots a VM that runs `spec.command`, copies its console output to `out`
/// and returns how it ended.
///
/// `limits.memory_mb` becomes the guest's RAM and `limits.cpus` its vCPU
/// count (rounded up): the guest kernel cannot exceed what it was given.
/// `limits.pids` is refused rather than silently ignored. A `rootfs`
/// directory is copied into guest RAM (at most half of `memory_mb`) and the
/// command runs chrooted in it.
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
    // Read before booting, so a missing or oversized file is an error
    // naming it, not a guest that runs without it.
    let under = if spec.rootfs.is_some() {
        GUEST_ROOTFS
    } else {
        ""
    };
    let files = files_archive(&opts.files, under)?;
    let image = VmImage::prepare(&opts.host_binaries)?;
    let initrd = super::SCRATCH.path("initrd", ".cpio");
    let built = match &spec.rootfs {
        None => overlay_script("run", &spec.command).and_then(|mut overlay| {
            overlay.extend(files);
            compose(&image.base, &overlay, &initrd)
        }),
        Some(dir) => {
            compose_with_rootfs(&image.base, dir, &spec.command, memory_mb, &files, &initrd)
        }
    };
    if let Err(e) = built {
        let _ = std::fs::remove_file(&initrd);
        return Err(e);
    }
    let machine_spec = MachineSpec {
        vmlinuz: image.kernel.vmlinuz.clone(),
        initrd: initrd.clone(),
        accel: image.accel,
        memory_mb,
        cpus,
        max_cpus: cpus,
        forward_port: false,
        incoming: None,
    };
    let result = run(&machine_spec, opts, out);
    let _ = std::fs::remove_file(&initrd);
    result
}

/// base + the caller's tree under `/rootfs` + a `/ebb/run` that chroots
/// + the caller's files (an archive already rooted under `/rootfs`).
fn compose_with_rootfs(
    base: &Path,
    dir: &Path,
    command: &[String],
    memory_mb: u64,
    files: &[u8],
    initrd: &Path,
) -> Result<(), VmError> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(initrd)?);
    std::io::copy(&mut std::fs::File::open(base)?, &mut f)?;
    append_tree(&mut f, dir, (memory_mb << 20) / 2)?;
    f.write_all(&overlay_raw_script("run", &chroot_script(command))?)?;
    f.write_all(files)?;
    f.flush()?;
    Ok(())
}

fn run(spec: &MachineSpec, opts: &SandboxOptions, out: &mut dyn Write) -> Result<Outcome, VmError> {
    let timeout_ms = opts.timeout_ms;
    // `ebb sandbox run --kind vm` killed must not leave its VM running.
    let mut m = Machine::spawn(spec)?;
    let launched = Instant::now();
    let deadline = launched + Duration::from_millis(timeout_ms);
    let booted_by = launched + Duration::from_millis(opts.boot_timeout_ms);
    let mut parser = ConsoleParser::default();
    // Stream the command's output as it appears, until QEMU exits.
    loop {
        let exited = m.try_wait()?.is_some();
        for line in parser.feed(&m.console()) {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        if exited {
            break;
        }
        if !parser.started() && Instant::now() >= booted_by {
            return Err(VmError::BootTimeout {
                what: "running the command",
                ms: opts.boot_timeout_ms,
                console: super::tail_lines(&m.console(), 20),
            });
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: "the sandboxed command to finish",
                ms: timeout_ms,
                console: super::tail_lines(&m.console(), 20),
            });
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
    match parser.status {
        Some(_) if parser.oom => Ok(Outcome::LimitKilled(format!(
            "memory_mb={}: the guest kernel ran out of memory and killed a process",
            spec.memory_mb
        ))),
        Some(code) => Ok(Outcome::Exited(code)),
        None => Err(VmError::QemuExited {
            status: "guest stopped without reporting the command's exit status".into(),
            console: super::tail_lines(&m.console(), 20),
        }),
    }
}

/// Console polling period while a sandboxed command runs.
const POLL_MS: u64 = 20;

/// Reads the console incrementally: the command's output lines (between
/// the begin marker and the exit line), its status, and whether the OOM
/// killer ran. Only complete lines are consumed, so a line being written
/// is picked up whole on the next feed.
#[derive(Debug, Default)]
pub struct ConsoleParser {
    consumed_lines: usize,
    inside: bool,
    pub status: Option<i32>,
    pub oom: bool,
}

impl ConsoleParser {
    /// The guest has booted and started the command.
    pub fn started(&self) -> bool {
        self.inside
    }

    /// Takes the whole console so far; returns the new output lines.
    pub fn feed(&mut self, console: &str) -> Vec<String> {
        let complete = match console.rfind('\n') {
            Some(i) => &console[..=i],
            None => return Vec::new(),
        };
        let mut out = Vec::new();
        for line in complete.lines().skip(self.consumed_lines) {
            self.consumed_lines += 1;
            let line = line.trim_end_matches('\r');
            if self.status.is_some() {
                continue;
            }
            if !self.inside {
                self.inside = line.trim() == BEGIN_MARKER;
            } else if let Some(code) = line.strip_prefix(EXIT_MARKER) {
                self.status = code.trim().parse().ok();
            } else if line.trim() == OOM_MARKER {
                self.oom = true;
            } else {
                out.push(line.to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_parser_streams_whole_lines_then_finds_the_status() {
        let mut p = ConsoleParser::default();
        let mut c = String::from("[ 0.1] boot\r\nEBB-BEGIN\r\nhel");
        assert!(p.feed(&c).is_empty());
        c.push_str("lo\r\nwor");
        assert_eq!(p.feed(&c), vec!["hello"]);
        c.push_str("ld\r\nEBB-OOM\r\nEBB-EXIT 3\r\n[ 1.0] reboot\r\n");
        assert_eq!(p.feed(&c), vec!["world"]);
        assert_eq!((p.status, p.oom), (Some(3), true));
        let mut q = ConsoleParser::default();
        q.feed("EBB-BEGIN\nno end\n");
        assert_eq!(q.status, None);
    }
}
