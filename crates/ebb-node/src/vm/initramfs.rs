//! The guest's root file system, built by ebb as a cpio archive.
//!
//! A base archive (busybox, `/init`, kernel modules, chosen host binaries and
//! the shared libraries they link) is built once and cached. Each VM then
//! gets a small overlay archive concatenated after it: `/ebb/serve` for a
//! node or `/ebb/run` for a sandboxed command. The kernel unpacks
//! concatenated archives in order, so the overlay costs microseconds to
//! build and the base stays shared.

use super::cpio::CpioWriter;
use super::kernel::{GUEST_MODULES, Kernel, modules_with_deps};
use super::{VmError, cache_dir};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's busybox-static: no shared libraries needed in the guest.
pub const BUSYBOX: &str = "/bin/busybox";

/// Console line printed before a sandboxed command starts.
pub const BEGIN_MARKER: &str = "EBB-BEGIN";
/// Console line prefix carrying a sandboxed command's exit status.
pub const EXIT_MARKER: &str = "EBB-EXIT ";
/// Console line printed when the guest kernel's OOM killer ran.
pub const OOM_MARKER: &str = "EBB-OOM";
/// Console line printed once the node's server process was started.
pub const SERVING_MARKER: &str = "EBB-SERVING";
/// Console line prefix carrying how many vCPUs the guest has online, from
/// its own `/proc/cpuinfo`: printed when it serves and after each change.
pub const CPUS_MARKER: &str = "EBB-CPUS ";
/// The line a host writes to a node guest's console to have `N` vCPUs
/// online: `cpus N`.
pub const CPUS_COMMAND: &str = "cpus";

/// The guest's PID 1. Networking follows QEMU user-mode defaults
/// (guest 10.0.2.15, gateway 10.0.2.2). No tmpfs goes over `/tmp`: the
/// initramfs root is already writable RAM, and host binaries included from
/// `/tmp` must stay visible.
///
/// A node's init then reads its console for `cpus N` and brings vCPUs 1 to
/// N-1 online, the others offline (vCPU 0 always stays). The host's
/// provider, which is told every resize, writes the line: the node's own
/// server (ebb's or a user's) needs to know nothing of VMs or of sysfs, and
/// init is root anyway. The echo is off so the command does not read as
/// guest output in the log.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin:/usr/local/bin HOME=/root
for m in $(cat /ebb/modules); do insmod /lib/modules/$m.ko; done
ip link set lo up
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up
  ip addr add 10.0.2.15/24 dev eth0
  ip route add default via 10.0.2.2
fi
if [ -x /ebb/run ]; then
  echo EBB-BEGIN
  /ebb/run
  s=$?
  if dmesg | grep -q -e 'Out of memory' -e 'oom-kill'; then echo EBB-OOM; fi
  echo "EBB-EXIT $s"
  poweroff -f
fi
online_cpus() {
  for d in /sys/devices/system/cpu/cpu[0-9]*; do
    [ -e $d/online ] || continue
    k=${d##*/cpu}
    if [ $k -lt $1 ]; then v=1; else v=0; fi
    [ "$(cat $d/online)" = $v ] || echo $v > $d/online
  done
  echo "EBB-CPUS $(grep -c ^processor /proc/cpuinfo)"
}
if [ -x /ebb/serve ]; then
  stty -echo 2>/dev/null
  /ebb/serve </dev/null &
  echo EBB-SERVING
  echo "EBB-CPUS $(grep -c ^processor /proc/cpuinfo)"
  while read -r verb n; do
    case "$verb $n" in
      "cpus "[1-9]|"cpus "[1-9][0-9]) online_cpus $n ;;
    esac
  done
fi
while true; do sleep 3600; done
"#;

/// Builds (or reuses from the cache) the base archive for `kernel` carrying
/// `host_binaries` at their host paths.
pub fn base_image(kernel: &Kernel, host_binaries: &[PathBuf]) -> Result<PathBuf, VmError> {
    if !Path::new(BUSYBOX).exists() {
        return Err(VmError::NoBusybox(BUSYBOX.into()));
    }
    let key = cache_key(kernel, host_binaries);
    let dir = cache_dir().join("vm");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("base-{key:016x}.cpio"));
    if path.exists() {
        return Ok(path);
    }
    let bytes = build_base(kernel, host_binaries)?;
    // Write then rename so concurrent builders never see half a file.
    static TMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TMP.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!("base-{key:016x}.{}-{n}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, &path)?;
    prune_bases(&dir, &path);
    Ok(path)
}

/// Base images kept in the cache; each rebuild of an included binary makes
/// a new one, so older ones are deleted beyond this many.
pub const MAX_CACHED_BASES: usize = 4;

/// Best effort: a file another process still boots from stays readable
/// after unlinking.
fn prune_bases(dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut bases: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("base-") && n.ends_with(".cpio"))
        })
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    bases.sort();
    let excess = bases.len().saturating_sub(MAX_CACHED_BASES);
    for (_, p) in bases.into_iter().take(excess) {
        if p != keep {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn cache_key(kernel: &Kernel, host_binaries: &[PathBuf]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    INIT.hash(&mut h);
    kernel.release.hash(&mut h);
    for p in std::iter::once(Path::new(BUSYBOX)).chain(host_binaries.iter().map(PathBuf::as_path)) {
        p.hash(&mut h);
        if let Ok(m) = std::fs::metadata(p) {
            m.len().hash(&mut h);
            m.modified().ok().hash(&mut h);
        }
    }
    h.finish()
}

/// Writes files while creating each parent directory exactly once.
struct Tree<W: Write> {
    cpio: CpioWriter<W>,
    dirs: HashSet<String>,
}

impl<W: Write> Tree<W> {
    fn new(out: W) -> Self {
        Self {
            cpio: CpioWriter::new(out),
            dirs: HashSet::new(),
        }
    }

    fn dir(&mut self, path: &str) -> Result<(), VmError> {
        let path = path.trim_matches('/');
        if path.is_empty() || self.dirs.contains(path) {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.cpio.dir(path, 0o755)?;
        self.dirs.insert(path.to_owned());
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), VmError> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.cpio.file(path, mode, data)?;
        Ok(())
    }

    fn finish(self) -> Result<W, VmError> {
        Ok(self.cpio.finish()?)
    }
}

fn build_base(kernel: &Kernel, host_binaries: &[PathBuf]) -> Result<Vec<u8>, VmError> {
    let mut t = Tree::new(Vec::new());
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "root", "ebb",
    ] {
        t.dir(d)?;
    }
    t.file("init", 0o755, INIT.as_bytes())?;
    t.file("bin/busybox", 0o755, &std::fs::read(BUSYBOX)?)?;
    let modules = modules_with_deps(kernel, GUEST_MODULES)?;
    let mut names = String::new();
    for m in &modules {
        t.file(&format!("lib/modules/{}.ko", m.name), 0o644, &m.bytes)?;
        names.push_str(&m.name);
        names.push('\n');
    }
    t.file("ebb/modules", 0o644, names.as_bytes())?;
    let mut copied = HashSet::new();
    for bin in host_binaries {
        for file in std::iter::once(bin.clone()).chain(shared_libs(bin)?) {
            if copied.insert(file.clone()) {
                let data = guest_copy(&file)?;
                t.file(&file.to_string_lossy(), 0o755, &data)?;
            }
        }
    }
    t.finish()
}

/// `file`'s bytes for the guest, without debug sections when `strip` can
/// remove them: the guest unpacks the archive into RAM, where a debug build
/// of `ebb` (tens of MiB of DWARF) would crowd out the service.
fn guest_copy(file: &Path) -> Result<Vec<u8>, VmError> {
    let tmp = super::SCRATCH.path("strip", "");
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&tmp)
        .arg(file)
        .output()
        .is_ok_and(|o| o.status.success());
    let data = if stripped {
        std::fs::read(&tmp)
    } else {
        std::fs::read(file)
    };
    let _ = std::fs::remove_file(&tmp);
    data.map_err(|e| VmError::Initramfs(format!("cannot read {}: {e}", file.display())))
}

/// The shared libraries `bin` loads (including the dynamic loader), by the
/// paths the loader will look for them at.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>, VmError> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| VmError::Initramfs(format!("cannot run ldd on {}: {e}", bin.display())))?;
    // A static binary makes ldd exit non-zero: it simply needs nothing.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.trim(),
                None => l,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// A small archive with `/ebb/<name>` holding a shell script that `exec`s
/// `command` (each word quoted, so no word is re-split in the guest).
pub fn overlay_script(name: &str, command: &[String]) -> Result<Vec<u8>, VmError> {
    let words: Vec<String> = command.iter().map(|w| shell_quote(w)).collect();
    let script = format!("#!/bin/sh\nexec {}\n", words.join(" "));
    overlay_raw_script(name, &script)
}

/// Like [`overlay_script`] for a script body written as shell text.
pub fn overlay_raw_script(name: &str, script: &str) -> Result<Vec<u8>, VmError> {
    let mut w = CpioWriter::new(Vec::new());
    w.dir("ebb", 0o755)?;
    w.file(&format!("ebb/{name}"), 0o755, script.as_bytes())?;
    Ok(w.finish()?)
}

/// A small archive of host files at their paths inside (a node's token
/// and TLS files), readable by root only; appended after the base, it adds
/// them to the guest's root, or to the tree under `under` (a sandbox's
/// `/rootfs`, which its command sees as `/`) when that is not empty.
pub fn files_archive(files: &[crate::sandbox::FileIn], under: &str) -> Result<Vec<u8>, VmError> {
    let mut t = Tree::new(Vec::new());
    for f in files {
        let bytes = f.read().map_err(VmError::Initramfs)?;
        let inside = f.inside.to_string_lossy();
        let path = format!(
            "{}/{}",
            under.trim_matches('/'),
            inside.trim_start_matches('/')
        );
        t.file(&path, crate::sandbox::FILE_IN_MODE, &bytes)?;
    }
    t.finish()
}

/// Writes `base` followed by `overlay` to `out`, the file QEMU's `-initrd` loads.
pub fn compose(base: &Path, overlay: &[u8], out: &Path) -> Result<(), VmError> {
    let mut bytes = std::fs::read(base)?;
    bytes.extend_from_slice(overlay);
    std::fs::write(out, bytes)?;
    Ok(())
}

/// Single-quotes `word` for `/bin/sh`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overlay_script_quotes_every_word() {
        let o = overlay_script("run", &["sh".into(), "-c".into(), "echo 'hi' $X".into()]).unwrap();
        let text = String::from_utf8_lossy(&o);
        assert!(
            text.contains(r#"exec 'sh' '-c' 'echo '\''hi'\'' $X'"#),
            "{text}"
        );
    }

    #[test]
    fn files_land_at_their_inside_path_or_under_a_rootfs() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-files-archive-")
            .tempfile()
            .unwrap();
        let host = guard.path();
        std::fs::write(host, b"tok").unwrap();
        let f: crate::sandbox::FileIn = format!("{}:/etc/ebb/t", host.display()).parse().unwrap();
        let top = String::from_utf8_lossy(&files_archive(std::slice::from_ref(&f), "").unwrap())
            .into_owned();
        let under = String::from_utf8_lossy(&files_archive(&[f], "rootfs").unwrap()).into_owned();
        assert!(top.contains("etc/ebb/t\0"), "{top:?}");
        assert!(!top.contains("rootfs"), "{top:?}");
        assert!(under.contains("rootfs/etc/ebb/t\0"), "{under:?}");
        // Mode 0400 regular file: the new-ASCII cpio header carries 00008100.
        assert!(under.contains("00008100"), "{under:?}");
    }
}
