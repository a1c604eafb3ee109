//! A VM provider's own directory under the cache: the node initramfs it
//! composed (with any token and key files copied into it) and snapshots
//! of guest memory. It is private to root, since those hold secrets, and
//! a provider whose process was killed before its `Drop` ran leaves it
//! behind (tens of MB each), so the next provider removes those.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

const PREFIX: &str = "provider-";

/// Makes a fresh private (0700) directory for this process's provider
/// under `vm_dir`, after removing those of providers whose process is
/// gone.
pub fn create(vm_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(vm_dir)?;
    sweep(vm_dir);
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = vm_dir.join(format!("{PREFIX}{}-{n}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Removes `provider-PID-N` directories whose PID runs no process;
/// returns how many.
pub fn sweep(vm_dir: &Path) -> usize {
    crate::scratch::sweep(vm_dir, PREFIX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_dead_providers_directory_is_swept_and_a_new_one_is_private() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-provider-dir-test-")
            .tempdir()
            .unwrap();
        let vm = guard.path();
        // A pid that ran and ended: this test reaped it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let orphan = vm.join(format!("{PREFIX}{dead}-7"));
        std::fs::create_dir(&orphan).unwrap();
        std::fs::write(orphan.join("node.cpio"), b"secret").unwrap();
        let other = vm.join("base-1.cpio");
        std::fs::write(&other, b"kept").unwrap();

        let mine = create(vm).unwrap();
        assert!(!orphan.exists(), "the dead provider's directory was left");
        assert!(other.exists(), "a file that is no provider's was removed");
        let mode = std::fs::metadata(&mine).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{mine:?}");
        // A live provider's directory (this process's) is kept.
        assert_eq!(sweep(vm), 0);
        assert!(mine.exists());
    }
}
