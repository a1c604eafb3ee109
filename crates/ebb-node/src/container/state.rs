//! The on-disk record of running containers, so a runner killed with
//! `kill -9` leaves nothing behind for long: the next start sweeps it.
//!
//! Each container owns one slot file `/run/ebb/containers/c<index>` holding
//! its runner's pid and start time (so a reused pid is not mistaken for the
//! owner) and, on a second line, its base layer (so pruning spares it). The index names the container's cgroup and veth pair. Its
//! writable layer is not here: it lives on a tmpfs mounted inside the
//! container's own mount namespace (see `rootfs`), so it vanishes with the
//! container whatever way it ends.

use super::error::{ContainerError, io_err};
use super::{cgroup, net};
use std::fs;
use std::path::{Path, PathBuf};

pub const STATE_ROOT: &str = "/run/ebb/containers";
/// Slots, and so concurrent containers per machine; each gets a /30 of
/// 10.213.0.0/16, which holds 16384 of them.
pub const MAX_CONTAINERS: u32 = 16384;

#[derive(Debug)]
pub struct StateDir {
    pub index: u32,
    pub path: PathBuf,
}

impl StateDir {
    pub fn name(&self) -> String {
        name_of(self.index)
    }
}

pub fn name_of(index: u32) -> String {
    format!("c{index}")
}

/// "pid starttime" of a process, `None` once it is gone.
fn identity(pid: u32) -> Option<String> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime) counts from after the parenthesised command name.
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Claims a free slot, searching from `hint` so concurrent runners rarely
/// collide. The owner is written to a private file first and hard-linked
/// into place (link fails if the slot exists), so a slot is never seen
/// without its owner. `base` is the container's base layer; a slot that
/// holds a host address rather than a container has none.
pub fn claim(hint: u32, base: Option<&Path>) -> Result<StateDir, ContainerError> {
    fs::create_dir_all(STATE_ROOT).map_err(io_err(format!("creating {STATE_ROOT}")))?;
    let me = std::process::id();
    let owner = identity(me).unwrap_or_else(|| format!("{me} 0"));
    let tmp = Path::new(STATE_ROOT).join(format!("tmp-{me}"));
    let base = base.map(|b| b.display().to_string()).unwrap_or_default();
    let record = format!("{owner}\n{base}\n");
    fs::write(&tmp, record).map_err(io_err(format!("writing {}", tmp.display())))?;
    let claimed = (0..MAX_CONTAINERS).find_map(|i| {
        let index = hint.wrapping_add(i) % MAX_CONTAINERS;
        let path = Path::new(STATE_ROOT).join(name_of(index));
        if net::host_end_exists(index) {
            return None;
        }
        fs::hard_link(&tmp, &path)
            .ok()
            .map(|()| StateDir { index, path })
    });
    let _ = fs::remove_file(&tmp);
    claimed.ok_or(ContainerError::NoSlot(MAX_CONTAINERS))
}

/// Removes the slot, its cgroups and its host-side veth. Idempotent.
pub fn release(index: u32, path: &Path) {
    net::remove_stale(index);
    release_after_exit(index, path);
}

/// Releases the slot of a container whose processes have all exited. The
/// veth pair is left to the kernel, which deletes it when the container's
/// network namespace is torn down (asynchronously, and much faster than a
/// synchronous delete, which waits for RCU grace periods: about 20 ms
/// here). [`claim`] skips an index whose veth is still being torn down.
pub fn release_after_exit(index: u32, path: &Path) {
    cgroup::remove_stale(&name_of(index));
    if path.is_dir() {
        let _ = fs::remove_dir_all(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// Base layers named by slots (a slot's second line), so pruning spares
/// them.
pub fn bases_in_use() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(STATE_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .filter_map(|r| {
            r.lines()
                .nth(1)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
        })
        .collect()
}

/// Releases every slot whose owner is no longer running. Returns how many.
pub fn sweep() -> usize {
    let Ok(entries) = fs::read_dir(STATE_ROOT) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("tmp-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_file(&path);
                swept += 1;
            }
            continue;
        }
        let Some(index) = name.strip_prefix('c').and_then(|i| i.parse().ok()) else {
            continue;
        };
        let record = fs::read_to_string(&path).unwrap_or_default();
        let owner = record.lines().next().unwrap_or("");
        let pid: Option<u32> = owner.split_whitespace().next().and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| identity(p).as_deref() == Some(owner.trim())) {
            continue;
        }
        release(index, &path);
        swept += 1;
    }
    swept
}
