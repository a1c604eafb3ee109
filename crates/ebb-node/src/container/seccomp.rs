//! What a container's processes may not do: a seccomp denylist and a reduced
//! capability set, both installed after the container's own setup (which
//! needs mount and pivot_root) and before the command runs.
//!
//! A denylist, not an allowlist: it refuses the calls that reach past the
//! container (kernel modules, kexec, reboot, swap, mounts, namespace
//! changes, tracing, BPF, perf, the kernel keyring, file handles that escape
//! a mount) with EPERM and leaves the rest to the dropped capabilities.
//! `no_new_privs` stops setuid binaries from regaining anything.
//!
//! Two more filters close the other doors to new namespaces: `clone` with
//! any `CLONE_NEW*` flag gets EPERM, and `clone3` (whose flags live in
//! memory a filter cannot read) gets ENOSYS, which makes glibc fall back to
//! plain `clone`.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// Refused with EPERM inside every container.
pub const DENIED: &[(&str, libc::c_long)] = &[
    ("add_key", libc::SYS_add_key),
    ("bpf", libc::SYS_bpf),
    ("delete_module", libc::SYS_delete_module),
    ("finit_module", libc::SYS_finit_module),
    ("init_module", libc::SYS_init_module),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("kexec_load", libc::SYS_kexec_load),
    ("keyctl", libc::SYS_keyctl),
    ("mount", libc::SYS_mount),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("pivot_root", libc::SYS_pivot_root),
    ("ptrace", libc::SYS_ptrace),
    ("reboot", libc::SYS_reboot),
    ("request_key", libc::SYS_request_key),
    ("setns", libc::SYS_setns),
    ("swapoff", libc::SYS_swapoff),
    ("swapon", libc::SYS_swapon),
    ("umount2", libc::SYS_umount2),
    ("unshare", libc::SYS_unshare),
];

/// Capabilities a container's root keeps: enough to own and chmod files,
/// switch users, signal its own processes and bind low ports.
pub const KEPT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    10, // CAP_NET_BIND_SERVICE
];
/// Highest capability number this code knows to drop; the kernel's
/// `cap_last_cap` bounds it further.
const MAX_CAP: u32 = 63;

/// `clone` flags that create a namespace.
const CLONE_NEW_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWUTS,
];

/// The filters to install, in order; the kernel applies the strictest
/// answer among them.
pub type Filters = Vec<BpfProgram>;

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    BpfProgram::try_from(f).map_err(|e| e.to_string())
}

pub fn filter() -> Result<Filters, String> {
    let denied = DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let mut clone_rules = Vec::new();
    for flag in CLONE_NEW_FLAGS {
        let bit = *flag as u64;
        let cond =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(bit), bit)
                .map_err(|e| e.to_string())?;
        clone_rules.push(SeccompRule::new(vec![cond]).map_err(|e| e.to_string())?);
    }
    Ok(vec![
        compile(denied, libc::EPERM)?,
        compile(
            BTreeMap::from([(libc::SYS_clone, clone_rules)]),
            libc::EPERM,
        )?,
        compile(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            libc::ENOSYS,
        )?,
    ])
}

/// Drops every capability outside [`KEPT_CAPS`] from the bounding set (so
/// no later exec regains it), sets `no_new_privs`, and installs the filter.
pub fn confine(filters: &Filters) -> Result<(), String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(MAX_CAP)
        .min(MAX_CAP);
    for cap in (0..=last).filter(|c| !KEPT_CAPS.contains(c)) {
        // SAFETY: prctl(PR_CAPBSET_DROP) takes an integer and touches no memory.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(format!(
                "dropping capability {cap}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS) takes integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(format!(
            "setting no_new_privs: {}",
            std::io::Error::last_os_error()
        ));
    }
    for prog in filters {
        seccompiler::apply_filter(prog).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn filter_compiles_for_this_arch() {
        assert!(super::filter().is_ok());
    }
}
