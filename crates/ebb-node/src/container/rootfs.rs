//! The container's file system: a shared read-only base layer under a
//! per-container overlay upper layer, pivoted into, with its own /proc, a
//! minimal /dev and a /tmp tmpfs.
//!
//! The default base layer is one ebb builds itself and caches per ebb
//! binary: the `ebb` binary, the shared libraries it links (from `ldd`), and
//! a static busybox with its applet links. Every mount is made inside the
//! container's own mount namespace, so all of them vanish with it.

use super::error::ContainerError;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BASE_ROOT: &str = "/var/lib/ebb";
/// Base layers kept (the current one included), most recently used first.
pub const MAX_BASE_LAYERS: usize = 4;
/// Where Debian's `busybox-static` installs it.
pub const BUSYBOX: &str = "/bin/busybox";
/// Where each container mounts its private scratch tmpfs.
pub const SCRATCH: &str = "/run/ebb/scratch";
/// Size bound of each container's writable layer (it counts against its
/// memory limit).
pub const UPPER_SIZE_MB: u64 = 512;
/// Size bound of each container's /tmp (it counts against its memory limit).
pub const TMP_SIZE_MB: u64 = 64;
/// Device nodes bound from the host into the container's /dev.
/// Character devices made in the container's /dev: (name, major, minor).
/// Made with mknod rather than bind-mounted from the host: six fewer mounts
/// to make and to tear down per container.
const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];
const COMPLETE_MARK: &str = ".ebb-base-complete";

fn base_err(what: &str, e: impl std::fmt::Display) -> ContainerError {
    ContainerError::Base(format!("{what}: {e}"))
}

/// Returns the cached base layer for the running ebb binary, building it the
/// first time. Concurrent builders each build privately and the first rename
/// wins.
pub fn base_layer() -> Result<PathBuf, ContainerError> {
    let exe = std::env::current_exe().map_err(|e| base_err("locating the ebb binary", e))?;
    let meta = fs::metadata(&exe).map_err(|e| base_err("reading the ebb binary", e))?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    exe.hash(&mut h);
    meta.len().hash(&mut h);
    meta.modified().ok().hash(&mut h);
    let dir = Path::new(BASE_ROOT).join(format!("base-{:016x}", h.finish()));
    // Touched on every use: pruning keeps the most recently used layers.
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.set_modified(std::time::SystemTime::now());
    }
    if dir.join(COMPLETE_MARK).exists() {
        return Ok(dir);
    }
    let tmp = Path::new(BASE_ROOT).join(format!(".building-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let built = build_base(&exe, &tmp);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if fs::rename(&tmp, &dir).is_err() {
        // Another runner finished first; use its layer.
        let _ = fs::remove_dir_all(&tmp);
    } else {
        prune(&dir, &super::state::bases_in_use());
    }
    if dir.join(COMPLETE_MARK).exists() {
        Ok(dir)
    } else {
        Err(ContainerError::Base(format!(
            "{} is incomplete",
            dir.display()
        )))
    }
}

/// Removes base layers of other ebb builds beyond the
/// [`MAX_BASE_LAYERS`] most recently used, except those a running container
/// uses. Each layer holds a copy of an ebb binary (tens of MB), and every
/// rebuild of ebb makes a new one.
fn prune(current: &Path, in_use: &[PathBuf]) {
    let Ok(entries) = fs::read_dir(BASE_ROOT) else {
        return;
    };
    let mut layers: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("base-"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .filter(|(_, p)| p != current && !in_use.contains(p))
        .collect();
    layers.sort_by_key(|l| std::cmp::Reverse(l.0));
    for (_, old) in layers.into_iter().skip(MAX_BASE_LAYERS.saturating_sub(1)) {
        let _ = fs::remove_dir_all(old);
    }
}

/// Copies `src` to the same absolute path under `root`.
fn copy_in(root: &Path, src: &Path) -> Result<(), ContainerError> {
    let rel = src.strip_prefix("/").unwrap_or(src);
    let dst = root.join(rel);
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| base_err("creating a directory", e))?;
    }
    fs::copy(src, &dst).map_err(|e| base_err(&format!("copying {}", src.display()), e))?;
    Ok(())
}

/// Absolute library paths from `ldd` output (`name => /path (addr)` or
/// `/path (addr)`).
pub fn parse_ldd(out: &str) -> Vec<PathBuf> {
    out.lines()
        .filter_map(|l| {
            let l = l.split_once("=>").map_or(l, |(_, r)| r).trim();
            let p = l.split_whitespace().next()?;
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

fn build_base(exe: &Path, root: &Path) -> Result<(), ContainerError> {
    for d in ["bin", "proc", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(root.join(d)).map_err(|e| base_err("creating a directory", e))?;
    }
    fs::copy(exe, root.join("bin/ebb")).map_err(|e| base_err("copying the ebb binary", e))?;
    let ldd = Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(|e| base_err("running ldd", e))?;
    for lib in parse_ldd(&String::from_utf8_lossy(&ldd.stdout)) {
        copy_in(root, &lib)?;
    }
    if !Path::new(BUSYBOX).exists() {
        return Err(ContainerError::Base(format!(
            "{BUSYBOX} is missing; install Debian's busybox-static"
        )));
    }
    fs::copy(BUSYBOX, root.join("bin/busybox")).map_err(|e| base_err("copying busybox", e))?;
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .map_err(|e| base_err("listing busybox applets", e))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet.contains('/') || applet == "busybox" {
            continue;
        }
        let _ = symlink("busybox", root.join("bin").join(applet));
    }
    let _ = symlink("bin", root.join("sbin"));
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")
        .map_err(|e| base_err("writing /etc/passwd", e))?;
    fs::write(root.join("etc/group"), "root:x:0:\n")
        .map_err(|e| base_err("writing /etc/group", e))?;
    fs::write(root.join(COMPLETE_MARK), "").map_err(|e| base_err("marking complete", e))
}

/// Inside the new mount namespace: mounts a private tmpfs on `scratch`
/// (a directory shared by all containers; each sees only its own mount),
/// builds the overlay root in it with the upper and work directories on
/// that tmpfs, and pivots into it. The writable layer thus costs no disk
/// I/O, counts against the container's memory limit, and disappears with
/// the mount namespace. `files` (path inside, contents) are written into
/// the writable layer, readable by root only. Errors are strings: they
/// travel back over a pipe.
pub fn enter(scratch: &Path, base: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<(), String> {
    let m = |src: Option<&str>, target: &Path, fstype: Option<&str>, flags, data: Option<&str>| {
        mount(src, target, fstype, flags, data).map_err(|e| {
            format!(
                "mounting {} at {}: {e}",
                fstype.unwrap_or("bind"),
                target.display()
            )
        })
    };
    // Nothing mounted from here on propagates back to the host.
    m(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let scratch_opts = format!("mode=700,size={UPPER_SIZE_MB}m");
    m(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(&scratch_opts),
    )?;
    let (upper, work, root) = (
        scratch.join("upper"),
        scratch.join("work"),
        scratch.join("root"),
    );
    for d in [&upper, &work, &root] {
        fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    }
    let root = root.as_path();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        base.display(),
        upper.display(),
        work.display()
    );
    m(
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&opts),
    )?;
    for d in ["proc", "dev", "tmp"] {
        fs::create_dir_all(root.join(d)).map_err(|e| format!("creating /{d}: {e}"))?;
    }
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    m(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        nosuid | MsFlags::MS_NOEXEC,
        None,
    )?;
    m(
        Some("tmpfs"),
        &root.join("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755,size=64k"),
    )?;
    for (dev, major, minor) in DEVICES {
        let target = root.join("dev").join(dev);
        let mode = nix::sys::stat::Mode::from_bits_truncate(0o666);
        let kind = nix::sys::stat::SFlag::S_IFCHR;
        let id = nix::sys::stat::makedev(*major, *minor);
        nix::sys::stat::mknod(&target, kind, mode, id)
            .map_err(|e| format!("creating /dev/{dev}: {e}"))?;
        // mknod applied the umask; every user may use these.
        fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .map_err(|e| format!("opening up /dev/{dev}: {e}"))?;
    }
    for (name, to) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let _ = symlink(to, root.join("dev").join(name));
    }
    let tmp_opts = format!("mode=1777,size={TMP_SIZE_MB}m");
    m(
        Some("tmpfs"),
        &root.join("tmp"),
        Some("tmpfs"),
        nosuid,
        Some(&tmp_opts),
    )?;
    for (inside, bytes) in files {
        write_in(root, inside, bytes)?;
    }
    nix::unistd::chdir(root).map_err(|e| format!("chdir to the new root: {e}"))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching
    // it leaves the container with only its own tree.
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Writes `bytes` at `inside` under `root`, creating its directories;
/// the file is made with its final mode, so it is never readable by others.
fn write_in(root: &Path, inside: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dst = root.join(inside.strip_prefix("/").unwrap_or(inside));
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    let _ = fs::remove_file(&dst);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(crate::sandbox::FILE_IN_MODE)
        .open(&dst)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("copying a file to {} inside: {e}", inside.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_yields_absolute_paths_only() {
        let out = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
                   \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(out),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
