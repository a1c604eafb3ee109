//! A caller's root file system in a VM sandbox (`SandboxSpec::rootfs`).
//!
//! The directory tree is appended to the initramfs under `/rootfs` and the
//! command runs `chroot`ed there, with `/proc`, `/sys` and `/dev` mounted.
//! The tree lives in guest RAM, so its size is bounded by the guest's memory.

use super::VmError;
use super::cpio::CpioWriter;
use super::initramfs::shell_quote;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Where the tree appears in the guest.
pub const GUEST_ROOTFS: &str = "rootfs";
/// Deeper trees are refused (they are loops or mistakes).
const MAX_TREE_DEPTH: usize = 64;

/// Appends `dir` as one cpio archive under `/rootfs`; refuses trees whose
/// file contents exceed `max_bytes`. Devices, sockets and FIFOs are
/// skipped: the guest's `/dev` comes from its own kernel.
pub fn append_tree(out: &mut impl Write, dir: &Path, max_bytes: u64) -> Result<u64, VmError> {
    if !dir.is_dir() {
        return Err(VmError::Unsupported(format!(
            "rootfs {} (not a directory)",
            dir.display()
        )));
    }
    let mut w = CpioWriter::new(out);
    w.dir(GUEST_ROOTFS, 0o755)?;
    let mut total = 0u64;
    walk(&mut w, dir, GUEST_ROOTFS, 0, &mut total, max_bytes, dir)?;
    w.finish()?;
    Ok(total)
}

fn walk<W: Write>(
    w: &mut CpioWriter<W>,
    host: &Path,
    guest: &str,
    depth: usize,
    total: &mut u64,
    max_bytes: u64,
    root: &Path,
) -> Result<(), VmError> {
    if depth > MAX_TREE_DEPTH {
        return Err(VmError::Unsupported(format!(
            "rootfs {} nested deeper than {MAX_TREE_DEPTH} directories",
            root.display()
        )));
    }
    let mut entries: Vec<_> = std::fs::read_dir(host)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let Some(name) = e.file_name().to_str().map(str::to_owned) else {
            continue; // not representable in the archive's names
        };
        let path = e.path();
        let gpath = format!("{guest}/{name}");
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode();
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = std::fs::read_link(&path)?;
            w.symlink(&gpath, &target.to_string_lossy())?;
        } else if ft.is_dir() {
            w.dir(&gpath, mode)?;
            walk(w, &path, &gpath, depth + 1, total, max_bytes, root)?;
        } else if ft.is_file() {
            *total += meta.len();
            if *total > max_bytes {
                return Err(VmError::Unsupported(format!(
                    "rootfs {} larger than {} MiB (it lives in guest RAM; raise memory_mb)",
                    root.display(),
                    max_bytes >> 20
                )));
            }
            w.file(&gpath, mode, &std::fs::read(&path)?)?;
        }
    }
    Ok(())
}

/// The `/ebb/run` body that runs `command` inside `/rootfs`.
pub fn chroot_script(command: &[String]) -> String {
    let words: Vec<String> = command.iter().map(|w| shell_quote(w)).collect();
    format!(
        "#!/bin/sh\nr=/{GUEST_ROOTFS}\nmkdir -p $r/proc $r/sys $r/dev\n\
         mount -t proc proc $r/proc\nmount -t sysfs sys $r/sys\nmount -t devtmpfs dev $r/dev\n\
         exec chroot $r {}\n",
        words.join(" ")
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tree_is_archived_under_rootfs_with_links_and_a_size_bound() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-rootfs-test-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/marker"), b"inside").unwrap();
        std::os::unix::fs::symlink("marker", dir.join("etc/link")).unwrap();
        let mut out = Vec::new();
        assert_eq!(append_tree(&mut out, dir, 1 << 20).unwrap(), 6);
        let text = String::from_utf8_lossy(&out);
        for name in [
            "rootfs/etc\0",
            "rootfs/etc/marker\0",
            "rootfs/etc/link\0",
            "inside",
        ] {
            assert!(text.contains(name), "{name:?} missing");
        }
        let err = append_tree(&mut Vec::new(), dir, 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("raise memory_mb"), "{err}");
    }

    #[test]
    fn chroot_script_quotes_the_command() {
        let s = chroot_script(&["/bin/echo".into(), "a b".into()]);
        assert!(s.contains("exec chroot $r '/bin/echo' 'a b'"), "{s}");
    }
}
