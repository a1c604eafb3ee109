//! cgroups for one container: memory (with the OOM kill confined to it),
//! CPU quota and a pids limit, on cgroup v2 when its unified hierarchy has
//! those controllers and on v1 otherwise (hybrid hosts mount v2 with few
//! controllers and keep memory/cpu/pids on v1).
//!
//! Every container gets its cgroups even without limits: they are how ebb
//! finds and kills every process a crashed container left behind.

use super::error::{ContainerError, io_err};
use crate::sandbox::Limits;
use std::fs;
use std::path::{Path, PathBuf};

/// Parent directory ebb creates under each hierarchy's root.
const EBB_GROUP: &str = "ebb";
const CFS_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts.
const MIN_CFS_QUOTA_US: u64 = 1_000;
/// Attempts at removing a cgroup whose last processes are still exiting.
const RMDIR_ATTEMPTS: u32 = 100;
const RMDIR_PAUSE_MS: u64 = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    V2(PathBuf),
    V1 {
        memory: PathBuf,
        cpu: PathBuf,
        pids: PathBuf,
    },
}

/// Mount points of cgroup file systems, from `/proc/self/mountinfo`:
/// (fstype, mount point, super options).
fn cgroup_mounts(info: &str) -> Vec<(String, PathBuf, String)> {
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut r = right.split_whitespace();
            let fstype = r.next()?;
            let opts = r.nth(1).unwrap_or("");
            fstype.starts_with("cgroup").then(|| {
                (
                    fstype.to_string(),
                    PathBuf::from(mount_point),
                    opts.to_string(),
                )
            })
        })
        .collect()
}

/// v2 if a unified hierarchy offers memory, cpu and pids; else v1.
pub fn detect() -> Result<Hierarchy, ContainerError> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    choose(&info, |mp| {
        fs::read_to_string(mp.join("cgroup.controllers")).unwrap_or_default()
    })
}

/// The decision behind [`detect`], given mountinfo text and a reader of a
/// v2 mount's `cgroup.controllers`.
fn choose(info: &str, controllers: impl Fn(&Path) -> String) -> Result<Hierarchy, ContainerError> {
    let mounts = cgroup_mounts(info);
    for (fstype, mp, _) in &mounts {
        if fstype == "cgroup2" {
            let ctl = controllers(mp);
            let has = |c: &str| ctl.split_whitespace().any(|x| x == c);
            if has("memory") && has("cpu") && has("pids") {
                return Ok(Hierarchy::V2(mp.clone()));
            }
        }
    }
    let v1 = |ctl: &str| {
        mounts
            .iter()
            .find(|(t, _, o)| t == "cgroup" && o.split(',').any(|x| x == ctl))
            .map(|(_, mp, _)| mp.clone())
    };
    match (v1("memory"), v1("cpu"), v1("pids")) {
        (Some(memory), Some(cpu), Some(pids)) => Ok(Hierarchy::V1 { memory, cpu, pids }),
        _ => Err(ContainerError::NoCgroup(
            "neither a cgroup v2 hierarchy with memory, cpu and pids nor v1 mounts of all three"
                .into(),
        )),
    }
}

fn write(path: &Path, value: &str) -> Result<(), ContainerError> {
    fs::write(path, value).map_err(io_err(format!("writing {value:?} to {}", path.display())))
}

/// One container's cgroups; removed by [`Cgroup::remove`] or by the sweep.
#[derive(Debug)]
pub struct Cgroup {
    v2: bool,
    /// Every directory to join and remove (one on v2, three on v1).
    dirs: Vec<PathBuf>,
    memory: PathBuf,
    pids: PathBuf,
}

fn dirs_for(h: &Hierarchy, name: &str) -> Vec<PathBuf> {
    match h {
        Hierarchy::V2(root) => vec![root.join(EBB_GROUP).join(name)],
        Hierarchy::V1 { memory, cpu, pids } => [memory, cpu, pids]
            .iter()
            .map(|r| r.join(EBB_GROUP).join(name))
            .collect(),
    }
}

impl Cgroup {
    pub fn create(h: &Hierarchy, name: &str, limits: &Limits) -> Result<Self, ContainerError> {
        let dirs = dirs_for(h, name);
        if let Hierarchy::V2(root) = h {
            let parent = root.join(EBB_GROUP);
            fs::create_dir_all(&parent)
                .map_err(io_err(format!("creating {}", parent.display())))?;
            write(&root.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
            write(&parent.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
        }
        for d in &dirs {
            fs::create_dir_all(d).map_err(io_err(format!("creating cgroup {}", d.display())))?;
        }
        let v2 = matches!(h, Hierarchy::V2(_));
        let (memory, cpu, pids) = if v2 {
            (dirs[0].clone(), dirs[0].clone(), dirs[0].clone())
        } else {
            (dirs[0].clone(), dirs[1].clone(), dirs[2].clone())
        };
        let cg = Cgroup {
            v2,
            dirs,
            memory,
            pids,
        };
        if let Err(e) = cg.apply(limits, &cpu) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    fn apply(&self, limits: &Limits, cpu: &Path) -> Result<(), ContainerError> {
        if let Some(mb) = limits.memory_mb {
            let bytes = (mb.saturating_mul(1 << 20)).to_string();
            if self.v2 {
                write(&self.memory.join("memory.max"), &bytes)?;
                let swap = self.memory.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            } else {
                write(&self.memory.join("memory.limit_in_bytes"), &bytes)?;
                // Memory plus swap equal to memory: no swapping past the limit.
                let memsw = self.memory.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes)?;
                }
            }
        }
        if let Some(cpus) = limits.cpus {
            write_cpu_quota(self.v2, cpu, cpus)?;
        }
        if let Some(p) = limits.pids {
            write(&self.pids.join("pids.max"), &p.to_string())?;
        }
        Ok(())
    }

    pub fn add(&self, pid: i32) -> Result<(), ContainerError> {
        for d in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Processes the kernel's OOM killer ended in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = if self.v2 {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        counter(&self.memory.join(file), key)
    }

    /// Forks refused because the pids limit was reached.
    pub fn pids_refused(&self) -> u64 {
        counter(&self.pids.join("pids.events"), "max")
    }

    pub fn remove(&self) {
        for d in &self.dirs {
            remove_dir(d);
        }
    }
}

/// Writes a CPU quota of `cpus` cores into the cgroup directory `cpu`.
fn write_cpu_quota(v2: bool, cpu: &Path, cpus: f64) -> Result<(), ContainerError> {
    let quota = ((cpus * CFS_PERIOD_US as f64) as u64).max(MIN_CFS_QUOTA_US);
    if v2 {
        write(&cpu.join("cpu.max"), &format!("{quota} {CFS_PERIOD_US}"))
    } else {
        write(&cpu.join("cpu.cfs_period_us"), &CFS_PERIOD_US.to_string())?;
        write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())
    }
}

/// The directory of the cgroup whose CPU controller holds process `pid`,
/// from `/proc/PID/cgroup`: its v2 line (`0::/path`) or the v1 line whose
/// controllers include `cpu`, under that hierarchy's mount.
fn cpu_dir_of(h: &Hierarchy, pid: u32) -> Result<(bool, PathBuf), ContainerError> {
    let path = format!("/proc/{pid}/cgroup");
    let text = fs::read_to_string(&path).map_err(io_err(format!("reading {path}")))?;
    let (v2, root) = match h {
        Hierarchy::V2(root) => (true, root),
        Hierarchy::V1 { cpu, .. } => (false, cpu),
    };
    let found = text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, dir) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = if v2 {
            id == "0" && controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == "cpu")
        };
        ours.then(|| root.join(dir.trim_start_matches('/')))
    });
    match found {
        Some(dir) => Ok((v2, dir)),
        None => Err(ContainerError::NoCgroup(format!(
            "process {pid} is in no cgroup of the CPU controller ({path})"
        ))),
    }
}

/// Sets the CPU quota of the cgroup process `pid` is in (a container's
/// init) to `cpus` cores: a container node scaled up or down in place.
pub fn set_cpu_quota_of(pid: u32, cpus: f64) -> Result<(), ContainerError> {
    let (v2, dir) = cpu_dir_of(&detect()?, pid)?;
    write_cpu_quota(v2, &dir, cpus)
}

/// The CPU quota, in cores, of the cgroup process `pid` is in; `None`
/// when it has none.
pub fn cpu_quota_of(pid: u32) -> Result<Option<f64>, ContainerError> {
    let (v2, dir) = cpu_dir_of(&detect()?, pid)?;
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))
    };
    let (quota, period) = if v2 {
        let max = read("cpu.max")?;
        let mut parts = max.split_whitespace();
        (
            parts.next().unwrap_or("max").to_owned(),
            parts.next().unwrap_or("100000").to_owned(),
        )
    } else {
        (read("cpu.cfs_quota_us")?, read("cpu.cfs_period_us")?)
    };
    let (Ok(quota), Ok(period)) = (quota.trim().parse::<i64>(), period.trim().parse::<i64>())
    else {
        return Ok(None);
    };
    Ok((quota > 0 && period > 0).then(|| quota as f64 / period as f64))
}

/// Reads `key N` from a flat-keyed cgroup file; 0 when absent.
fn counter(path: &Path, key: &str) -> u64 {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// Kills whatever is left in the cgroup and removes it, retrying while the
/// killed processes finish exiting.
fn remove_dir(dir: &Path) {
    for _ in 0..RMDIR_ATTEMPTS {
        if !dir.exists() || fs::remove_dir(dir).is_ok() {
            return;
        }
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(RMDIR_PAUSE_MS));
    }
}

/// The names of the cgroups ebb made, as listed where the CPU controller
/// is (every cgroup ebb makes has a directory there).
pub fn names() -> Vec<String> {
    let Ok(h) = detect() else {
        return Vec::new();
    };
    let root = match h {
        Hierarchy::V2(root) => root,
        Hierarchy::V1 { cpu, .. } => cpu,
    };
    fs::read_dir(root.join(EBB_GROUP))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes a container's cgroups by name, in whichever hierarchy holds them.
pub fn remove_stale(name: &str) {
    if let Ok(h) = detect() {
        for d in dirs_for(&h, name) {
            remove_dir(&d);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// This machine's layout: v1 controllers plus a v2 mount with hugetlb.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE_V2: &str = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn hybrid_host_with_a_bare_v2_mount_uses_v1() {
        let h = choose(HYBRID, |_| "hugetlb\n".into()).unwrap();
        assert_eq!(
            h,
            Hierarchy::V1 {
                memory: "/sys/fs/cgroup/memory".into(),
                cpu: "/sys/fs/cgroup/cpu".into(),
                pids: "/sys/fs/cgroup/pids".into(),
            }
        );
    }

    #[test]
    fn v2_with_all_three_controllers_wins() {
        let h = choose(PURE_V2, |_| "cpuset cpu io memory pids\n".into()).unwrap();
        assert_eq!(h, Hierarchy::V2("/sys/fs/cgroup".into()));
        let h = choose(HYBRID, |_| "cpu memory pids".into()).unwrap();
        assert_eq!(h, Hierarchy::V2("/sys/fs/cgroup/unified".into()));
    }

    #[test]
    fn no_usable_hierarchy_is_an_error() {
        assert!(choose(PURE_V2, |_| "cpu io".into()).is_err());
    }

    #[test]
    fn flat_keyed_counters_parse() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-cg-test-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        let f = dir.join("memory.events");
        fs::write(&f, "low 0\nhigh 0\nmax 12\noom 1\noom_kill 3\n").unwrap();
        assert_eq!(counter(&f, "oom_kill"), 3);
        assert_eq!(counter(&f, "max"), 12);
        assert_eq!(counter(&f, "absent"), 0);
    }
}
