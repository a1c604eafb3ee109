//! A VM node's CPU on the host: its QEMU process in a cgroup of its own
//! whose quota is the guest's online vCPUs, in cores, as a container's is
//! its capacity × `cpus` (the same cgroup code, `container::cgroup`).
//!
//! Offline vCPUs already cost the host nothing (their QEMU threads sleep),
//! so the quota is not what keeps a small node small; it is what makes the
//! bound the host's to enforce rather than the guest's to honour, and it
//! covers QEMU's own threads (the emulated network) as a container's quota
//! covers every process inside.

use super::VmError;
use crate::container::cgroup::{self, Cgroup};
use crate::sandbox::Limits;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every VM cgroup is named `vm-<owner pid>-<n>`, so the next provider can
/// tell the ones a killed `ebb` left behind.
const PREFIX: &str = "vm-";
static NEXT: AtomicU64 = AtomicU64::new(0);
static SWEPT: Once = Once::new();
/// Why a VM node that may grow cannot start without root, and the way out.
const NEEDS_ROOT: &str = "a VM node that may scale up (pool.max_capacity_per_node above 1) \
     runs its QEMU in a host cgroup that bounds its CPU, which needs root; run as root, or \
     keep max_capacity_per_node at 1";

/// One QEMU's cgroup; removed (and anything left in it killed) on drop.
#[derive(Debug)]
pub struct HostQuota {
    cgroup: Cgroup,
}

impl HostQuota {
    /// A fresh cgroup with a quota of `cores`, holding QEMU process `pid`
    /// (every thread it has and will have).
    pub fn create(pid: u32, cores: u32) -> Result<Self, VmError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(VmError::Cgroup(NEEDS_ROOT.into()));
        }
        SWEPT.call_once(sweep);
        let fail = |e: crate::container::ContainerError| VmError::Cgroup(e.to_string());
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let limits = Limits {
            memory_mb: None,
            cpus: Some(f64::from(cores.max(1))),
            pids: None,
        };
        let hierarchy = cgroup::detect().map_err(fail)?;
        let quota = Self {
            cgroup: Cgroup::create(&hierarchy, &name, &limits).map_err(fail)?,
        };
        quota.add(pid)?;
        Ok(quota)
    }

    /// Moves QEMU process `pid` in (a migration target taking over).
    pub fn add(&self, pid: u32) -> Result<(), VmError> {
        let pid = i32::try_from(pid).map_err(|_| VmError::Cgroup(format!("pid {pid}")))?;
        self.cgroup
            .add(pid)
            .map_err(|e| VmError::Cgroup(e.to_string()))
    }
}

impl Drop for HostQuota {
    fn drop(&mut self) {
        self.cgroup.remove();
    }
}

/// Sets the quota of the cgroup QEMU process `pid` is in to `cores`.
pub fn set(pid: u32, cores: u32) -> Result<(), VmError> {
    cgroup::set_cpu_quota_of(pid, f64::from(cores.max(1)))
        .map_err(|e| VmError::Cgroup(e.to_string()))
}

/// The quota, in cores, of the cgroup QEMU process `pid` is in.
pub fn get(pid: u32) -> Result<Option<f64>, VmError> {
    cgroup::cpu_quota_of(pid).map_err(|e| VmError::Cgroup(e.to_string()))
}

/// Removes the VM cgroups whose owner process is gone (its QEMUs died
/// with it); a pid taken since by another process keeps its cgroups.
fn sweep() {
    for name in cgroup::names() {
        if owner(&name).is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
            cgroup::remove_stale(&name);
        }
    }
}

/// The owner pid in a VM cgroup's name.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_vm_cgroup_names_have_an_owner() {
        assert_eq!(owner("vm-1234-0"), Some(1234));
        assert_eq!(owner("vm-x-0"), None);
        assert_eq!(owner("ebb-3"), None);
    }
}
