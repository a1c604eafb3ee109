//! Choosing the accelerator: KVM when it really runs a guest, TCG otherwise.
//!
//! `/dev/kvm` existing is not enough: under some nested setups the device
//! opens but `KVM_RUN` never makes progress and the guest hangs forever. So
//! the probe boots a real guest under KVM with a deadline and accepts KVM
//! only if the guest reports back. The verdict is cached per host boot.

use super::initramfs::{EXIT_MARKER, compose, overlay_script};
use super::machine::{Machine, MachineSpec};
use super::{VmError, cache_dir};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// A working KVM boots the probe guest in well under a second.
pub const KVM_PROBE_TIMEOUT_MS: u64 = 8_000;
/// Memory for the probe guest.
const PROBE_MEMORY_MB: u64 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }

    /// Under TCG the guest's TSC calibration against emulated timers can
    /// take ages or hang; telling it the host's TSC rate skips calibration.
    pub fn tsc_khz_hint(self) -> Option<u64> {
        match self {
            Accel::Kvm => None,
            Accel::Tcg => host_tsc_khz(),
        }
    }
}

/// The host CPU's clock in kHz from `/proc/cpuinfo`'s first `cpu MHz`.
pub fn host_tsc_khz() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = info
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

static DETECTED: OnceLock<Accel> = OnceLock::new();

/// The accelerator to use: `EBB_VM_ACCEL` (`kvm`|`tcg`) if set, else the
/// cached probe verdict, else a fresh probe booting `vmlinuz` with `base`.
pub fn detect(vmlinuz: &Path, base: &Path) -> Accel {
    if let Some(a) = std::env::var("EBB_VM_ACCEL")
        .ok()
        .as_deref()
        .and_then(Accel::parse)
    {
        return a;
    }
    *DETECTED.get_or_init(|| {
        let boot_id =
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let cache = cache_dir().join("vm").join("kvm-probe");
        if let Some(a) = std::fs::read_to_string(&cache).ok().and_then(|c| {
            let (id, verdict) = c.split_once(' ')?;
            (id == boot_id.trim())
                .then(|| Accel::parse(verdict.trim()))
                .flatten()
        }) {
            return a;
        }
        let a = if kvm_runs_a_guest(vmlinuz, base).unwrap_or(false) {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        let _ = std::fs::write(&cache, format!("{} {}\n", boot_id.trim(), a.as_str()));
        a
    })
}

/// Boots a guest under KVM that exits at once, within a deadline.
pub fn kvm_runs_a_guest(vmlinuz: &Path, base: &Path) -> Result<bool, VmError> {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok(false);
    }
    let dir = cache_dir().join("vm");
    std::fs::create_dir_all(&dir)?;
    let initrd = dir.join(format!("kvm-probe-{}.cpio", std::process::id()));
    compose(base, &overlay_script("run", &["true".into()])?, &initrd)?;
    let spec = MachineSpec {
        vmlinuz: vmlinuz.to_owned(),
        initrd: initrd.clone(),
        accel: Accel::Kvm,
        memory_mb: PROBE_MEMORY_MB,
        cpus: 1,
        max_cpus: 1,
        forward_port: false,
        incoming: None,
    };
    let verdict = Machine::spawn(&spec)
        .and_then(|mut m| m.wait_console(EXIT_MARKER, Duration::from_millis(KVM_PROBE_TIMEOUT_MS)));
    let _ = std::fs::remove_file(&initrd);
    Ok(verdict.is_ok())
}
