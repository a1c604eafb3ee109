//! The on-disk record of running containers, so a runner killed with
//! `kill -9` leaves nothing behind for long: the next start sweeps it.
//!
//! Each container owns `/run/ebb/containers/c<index>/` holding `owner`
//! (the runner's pid and its start time, so a reused pid is not mistaken for
//! the owner), `upper/` and `work/` (the overlay's writable layer) and
//! `root/` (the mount point, mounted only inside the container's own mount
//! namespace). The index also names the cgroup and the veth pair.

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
    pub fn upper(&self) -> PathBuf {
        self.path.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.path.join("work")
    }
    pub fn root(&self) -> PathBuf {
        self.path.join("root")
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
/// collide. The slot is created under a temporary name with its owner file
/// already inside and renamed into place, so a sweeper never sees a slot
/// without an owner.
pub fn claim(hint: u32) -> Result<StateDir, ContainerError> {
    fs::create_dir_all(STATE_ROOT).map_err(io_err(format!("creating {STATE_ROOT}")))?;
    let me = std::process::id();
    let owner = identity(me).unwrap_or_else(|| format!("{me} 0"));
    let tmp = Path::new(STATE_ROOT).join(format!("tmp-{me}"));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
    fs::write(tmp.join("owner"), &owner).map_err(io_err("writing the owner file"))?;
    for sub in ["upper", "work", "root"] {
        fs::create_dir(tmp.join(sub)).map_err(io_err(format!("creating {sub}")))?;
    }
    for i in 0..MAX_CONTAINERS {
        let index = (hint.wrapping_add(i)) % MAX_CONTAINERS;
        let path = Path::new(STATE_ROOT).join(name_of(index));
        if path.exists() {
            continue;
        }
        if fs::rename(&tmp, &path).is_ok() {
            return Ok(StateDir { index, path });
        }
    }
    let _ = fs::remove_dir_all(&tmp);
    Err(ContainerError::NoSlot(MAX_CONTAINERS))
}

/// Removes the slot's files, cgroup and host-side veth. Idempotent.
pub fn release(index: u32, path: &Path) {
    cgroup::remove_stale(&name_of(index));
    net::remove_stale(index);
    let _ = fs::remove_dir_all(path);
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
            // A slot being claimed: its owner file may not be written yet.
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(&path);
                swept += 1;
            }
            continue;
        }
        let owner = fs::read_to_string(path.join("owner")).unwrap_or_default();
        let pid: Option<u32> = owner.split_whitespace().next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| identity(p).as_deref() == Some(owner.trim()));
        if alive {
            continue;
        }
        if let Some(index) = name.strip_prefix('c').and_then(|i| i.parse().ok()) {
            release(index, &path);
        } else {
            continue;
        }
        swept += 1;
    }
    swept
}
