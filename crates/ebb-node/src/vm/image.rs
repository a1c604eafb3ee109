//! What every VM on this host boots from: kernel, base initramfs and the
//! accelerator, prepared once.

use super::VmError;
use super::accel::{Accel, detect};
use super::initramfs::base_image;
use super::kernel::{Kernel, locate_or_fetch};
use super::machine::QEMU;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Clone, Debug)]
pub struct VmImage {
    pub kernel: Kernel,
    /// The cached base initramfs.
    pub base: PathBuf,
    pub accel: Accel,
}

impl VmImage {
    /// Checks QEMU, fetches the kernel if needed, builds the base initramfs
    /// with `host_binaries` in it, and picks the accelerator.
    pub fn prepare(host_binaries: &[PathBuf]) -> Result<Self, VmError> {
        qemu_available()?;
        let kernel = locate_or_fetch()?;
        let base = base_image(&kernel, host_binaries)?;
        let accel = detect(&kernel.vmlinuz, &base);
        Ok(Self {
            kernel,
            base,
            accel,
        })
    }
}

/// Fails with [`VmError::NoQemu`] unless `qemu-system-x86_64` runs.
pub fn qemu_available() -> Result<(), VmError> {
    let status = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| VmError::NoQemu(format!("{QEMU}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(VmError::NoQemu(format!("{QEMU} --version: {status}")))
    }
}
