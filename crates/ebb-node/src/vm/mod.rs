//! Virtual-machine nodes: QEMU's `microvm` machine driven over QMP.
//!
//! A VM isolates more than a container: the guest runs its own kernel, so a
//! kernel bug or a system-call flood in one node stays in that node. The price
//! is boot time and memory, which this module measures and shrinks with
//! snapshots (restore instead of boot) and which it reports to the autoscaler
//! through [`VmProvider`]'s `expected_start`.
//!
//! Pieces, from the bottom up:
//! - [`kernel`]: Debian's cloud kernel, fetched with `apt-get download`
//!   and unpacked into a cache directory, plus its virtio modules.
//! - [`initramfs`] (with [`cpio`]): the guest's whole root file system,
//!   built by ebb: busybox, an `/init`, modules, optional host binaries.
//! - [`accel`]: KVM when it really runs a guest, TCG otherwise.
//! - [`qmp`]: a small typed client for QEMU's control protocol.
//! - [`machine`]: one QEMU process; killed on drop.
//! - [`migrate`]: snapshot to a file, restore from it, live migration.
//! - [`sandbox`]: run one command in a fresh VM and return its exit status;
//!   [`rootfs`] puts a caller's root file system under it.
//! - [`provider`]: the `NodeProvider` for VM nodes; [`quota`] bounds each
//!   node's QEMU on the host to the vCPUs its guest has online.
//!
//! Every temp path a VM needs comes from [`SCRATCH`], so what a killed
//! `ebb` left is removed by the next one that starts a VM.

pub mod accel;
pub mod cpio;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod machine;
pub mod migrate;
pub mod provider;
mod provider_dir;
pub mod qmp;
pub mod quota;
pub mod rootfs;
pub mod sandbox;

pub use accel::Accel;
pub use machine::{Machine, MachineSpec};
pub use provider::VmProvider;
pub use sandbox::run_sandboxed;

use std::path::PathBuf;

/// Everything that can go wrong driving a VM, named so a caller can act.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("QEMU is not installed ({0}); install Debian's qemu-system-x86")]
    NoQemu(String),
    #[error("busybox-static is not installed (no {0}); install Debian's busybox-static")]
    NoBusybox(PathBuf),
    #[error("guest kernel unavailable: {0}")]
    Kernel(String),
    #[error("building the initramfs failed: {0}")]
    Initramfs(String),
    #[error("QEMU exited early ({status}); last console lines:\n{console}")]
    QemuExited { status: String, console: String },
    #[error("timed out after {ms} ms waiting for {what}; last console lines:\n{console}")]
    Timeout {
        what: &'static str,
        ms: u64,
        console: String,
    },
    /// The guest did not get to serving (or to running a sandboxed
    /// command) within its boot timeout, the one setting a user raises.
    #[error(
        "the guest was not {what} within boot_timeout_ms = {ms} ms; {}; last console lines:\n{console}",
        provider::BOOT_TIMEOUT_HINT
    )]
    BootTimeout {
        what: &'static str,
        ms: u64,
        console: String,
    },
    #[error("QMP: {0}")]
    Qmp(#[from] qmp::QmpError),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("bad snapshot: {0}")]
    Snapshot(String),
    /// The host cgroup that bounds a node's QEMU (root is needed).
    #[error("the VM's host cgroup: {0}")]
    Cgroup(String),
    /// The guest's console, which carries a resize into the guest.
    #[error("the guest's console: {0}")]
    Console(String),
    #[error("{0} is not supported for VM sandboxes")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Temp paths of VMs (`ebb-vm-<pid>-...`): QEMU's directory, a sandbox's
/// initramfs, a binary being stripped for the guest.
pub static SCRATCH: crate::scratch::Scratch = crate::scratch::Scratch::new("ebb-vm-");

/// The guest-side port a node listens on; the host reaches it through a
/// user-mode-network forward from a loopback port chosen per VM.
pub const GUEST_PORT: u16 = 7000;

/// The most vCPUs a VM is given (`-smp`), however far its node may scale
/// up: each is a QEMU thread and a slot in the guest's tables, even
/// offline.
pub const MAX_GUEST_VCPUS: u32 = 16;

/// Default guest memory when a caller sets no limit.
pub const DEFAULT_MEMORY_MB: u64 = 256;

/// Where the kernel and built images are cached between runs.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("EBB_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/ebb"))
}

/// The last `n` lines of a console log, for error messages.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
