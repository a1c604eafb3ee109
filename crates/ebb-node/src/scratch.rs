//! Per-process scratch paths in the system temp directory: a QEMU's QMP
//! socket and console log, a sandbox's initramfs, the origin store of
//! `ebb demo`.
//!
//! Their owner removes them when it is done (`Drop`), which a process
//! killed with SIGKILL never gets to do; a sandbox's initramfs is tens of
//! MB. So every name starts `<prefix><owner pid>-`, and the first scratch
//! path a process asks for under a prefix first removes those whose owner
//! process is gone. A pid the kernel has since given to another process
//! keeps its files until that one ends too: the sweep errs on the side of
//! keeping.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

/// The scratch paths of one kind, `<prefix><pid>-...`.
pub struct Scratch {
    prefix: &'static str,
    swept: Once,
    next: AtomicU64,
}

impl Scratch {
    pub const fn new(prefix: &'static str) -> Self {
        Self {
            prefix,
            swept: Once::new(),
            next: AtomicU64::new(0),
        }
    }

    /// A fresh path `<prefix><pid>-<what>-<n><suffix>` in the temp
    /// directory (created by the caller), after sweeping dead owners'
    /// paths once per process.
    pub fn path(&self, what: &str, suffix: &str) -> PathBuf {
        let tmp = self.swept_temp_dir();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        tmp.join(format!(
            "{}{}-{what}-{n}{suffix}",
            self.prefix,
            std::process::id()
        ))
    }

    /// `<prefix><pid>-`, for a caller that makes the rest of the name
    /// itself (a `tempfile` directory), after the same sweep.
    pub fn owned_prefix(&self) -> String {
        self.swept_temp_dir();
        format!("{}{}-", self.prefix, std::process::id())
    }

    fn swept_temp_dir(&self) -> PathBuf {
        let tmp = std::env::temp_dir();
        self.swept.call_once(|| {
            sweep(&tmp, self.prefix);
        });
        tmp
    }
}

/// The pid in a scratch name under `prefix`, if `name` is one.
fn owner(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest.split(['-', '.']).next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes the paths in `dir` named `<prefix><pid>-...` whose owner runs
/// no process and that belong to this user; returns how many.
pub fn sweep(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let mut removed = 0;
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| owner(n, prefix)) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        // Not following a link: a link is removed itself, never its target.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.uid() != me {
            continue;
        }
        let gone = if meta.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if gone.is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn names_carry_their_owner() {
        const P: &str = "ebb-vm-";
        assert_eq!(owner("ebb-vm-123-m-4", P), Some(123));
        assert_eq!(owner("ebb-vm-123-initrd-0.cpio", P), Some(123));
        assert_eq!(owner("ebb-vm-7", P), Some(7));
        assert_eq!(owner("ebb-vm-rootfs-9", P), None);
        assert_eq!(owner("ebb-vm--1", P), None);
        assert_eq!(owner("ebb-demo-12", P), None);
        static TEST: Scratch = Scratch::new("ebb-scratch-naming-test-");
        let p = TEST.path("m", ".x");
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            owner(name, "ebb-scratch-naming-test-"),
            Some(std::process::id()),
            "{name}"
        );
    }

    #[test]
    fn a_dead_owners_paths_are_swept_and_a_live_ones_kept() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-scratch-test-")
            .tempdir()
            .unwrap();
        let tmp = guard.path();
        // A pid that ran and ended: this test reaped it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        const PREFIX: &str = "ebb-vm-";
        let dead_dir = tmp.join(format!("{PREFIX}{dead}-m-0"));
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("console.log"), b"boot").unwrap();
        let dead_file = tmp.join(format!("{PREFIX}{dead}-initrd-1.cpio"));
        std::fs::write(&dead_file, b"cpio").unwrap();
        let live = tmp.join(format!("{PREFIX}{}-m-0", std::process::id()));
        std::fs::create_dir(&live).unwrap();
        let other = tmp.join(format!("{PREFIX}rootfs-{dead}"));
        std::fs::create_dir(&other).unwrap();

        let other_kind = tmp.join(format!("ebb-demo-origin-{dead}-x"));
        std::fs::create_dir(&other_kind).unwrap();

        assert_eq!(sweep(tmp, PREFIX), 2);
        assert!(!dead_dir.exists(), "a dead owner's directory was left");
        assert!(!dead_file.exists(), "a dead owner's initramfs was left");
        assert!(live.exists(), "a live owner's directory was removed");
        assert!(other.exists(), "a path that is no scratch path was removed");
        assert!(other_kind.exists(), "another prefix's path was removed");
    }
}
