//! The guest kernel: Debian's `linux-image-cloud-amd64`, unpacked (never
//! installed) into the cache, and the modules the guest needs from it.
//!
//! The cloud kernel builds virtio-mmio and virtio-net as modules, so the
//! initramfs must carry them and load them in dependency order. The package
//! ships no `modules.dep` (depmod runs at install time), so dependencies are
//! read from each module's own `.modinfo` (`depends=`).

use super::{VmError, cache_dir};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The metapackage that names the current cloud kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// Modules the guest loads, by name; dependencies are added automatically.
pub const GUEST_MODULES: &[&str] = &["virtio_mmio", "virtio_net"];

/// A kernel image ready to boot and the tree of its modules.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` inside the unpacked package.
    pub modules_dir: PathBuf,
    pub release: String,
}

/// `<cache>/kernel/root`, where the package is unpacked.
fn unpack_root() -> PathBuf {
    cache_dir().join("kernel").join("root")
}

/// Finds the cached kernel, fetching it with apt-get when missing (which
/// needs root and a reachable Debian mirror; the error says which failed).
pub fn locate_or_fetch() -> Result<Kernel, VmError> {
    if let Some(k) = locate(&unpack_root())? {
        return Ok(k);
    }
    // One fetch at a time within this process (tests start VMs in parallel).
    static FETCH: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = FETCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(k) = locate(&unpack_root())? {
        return Ok(k);
    }
    fetch().map_err(|e| match e {
        VmError::Io(io) => VmError::Kernel(format!(
            "cannot fetch {KERNEL_METAPACKAGE} into {}: {io} (run as root or set EBB_VM_CACHE)",
            cache_dir().display()
        )),
        other => other,
    })?;
    locate(&unpack_root())?.ok_or_else(|| {
        VmError::Kernel(format!(
            "{KERNEL_METAPACKAGE} was unpacked into {} but no vmlinuz was found there",
            unpack_root().display()
        ))
    })
}

/// Looks for `boot/vmlinuz-*` under `root`.
pub fn locate(root: &Path) -> Result<Option<Kernel>, VmError> {
    let boot = root.join("boot");
    let Ok(entries) = std::fs::read_dir(&boot) else {
        return Ok(None);
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|n| n.strip_prefix("vmlinuz-").map(str::to_owned))
        .collect();
    found.sort();
    let Some(release) = found.pop() else {
        return Ok(None);
    };
    let modules_dir = root.join("lib").join("modules").join(&release);
    if !modules_dir.is_dir() {
        return Ok(None);
    }
    Ok(Some(Kernel {
        vmlinuz: boot.join(format!("vmlinuz-{release}")),
        modules_dir,
        release,
    }))
}

/// Downloads the cloud kernel package and unpacks it into the cache.
pub fn fetch() -> Result<(), VmError> {
    let fail = |m: String| VmError::Kernel(m);
    let dl = cache_dir().join("kernel").join("dl");
    std::fs::create_dir_all(&dl)?;
    let deps =
        run(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE])).map_err(|e| {
            fail(format!(
                "cannot ask apt-cache about {KERNEL_METAPACKAGE}: {e}"
            ))
        })?;
    let package = deps
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .ok_or_else(|| {
            fail(format!(
                "apt-cache knows no kernel behind {KERNEL_METAPACKAGE} (run apt-get update)"
            ))
        })?
        .to_owned();
    run(Command::new("apt-get")
        .args(["download", &package])
        .current_dir(&dl))
    .map_err(|e| fail(format!("apt-get download {package} failed: {e}")))?;
    let deb = std::fs::read_dir(&dl)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
        })
        .ok_or_else(|| {
            fail(format!(
                "apt-get download left no {package}_*.deb in {}",
                dl.display()
            ))
        })?;
    let root = unpack_root();
    std::fs::create_dir_all(&root)?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
        .map_err(|e| fail(format!("dpkg -x {} failed: {e}", deb.display())))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A module file to put in the initramfs, already decompressed.
#[derive(Clone, Debug)]
pub struct Module {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The modules `wanted` and everything they depend on, in load order.
pub fn modules_with_deps(kernel: &Kernel, wanted: &[&str]) -> Result<Vec<Module>, VmError> {
    let mut index = HashMap::new();
    index_modules(&kernel.modules_dir.join("kernel"), &mut index)?;
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(name, &index, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

/// Bounds the dependency walk; real chains are a handful deep.
const MAX_MODULE_DEPTH: usize = 32;

fn visit(
    name: &str,
    index: &HashMap<String, PathBuf>,
    seen: &mut HashSet<String>,
    order: &mut Vec<Module>,
    depth: usize,
) -> Result<(), VmError> {
    if depth > MAX_MODULE_DEPTH {
        return Err(VmError::Kernel(format!(
            "module dependencies of {name} nest too deep"
        )));
    }
    if !seen.insert(name.to_owned()) {
        return Ok(());
    }
    let path = index
        .get(name)
        .ok_or_else(|| VmError::Kernel(format!("module {name} is not in the kernel package")))?;
    let bytes = read_module(path)?;
    for dep in depends(&bytes) {
        visit(&dep, index, seen, order, depth + 1)?;
    }
    order.push(Module {
        name: name.to_owned(),
        bytes,
    });
    Ok(())
}

fn index_modules(dir: &Path, index: &mut HashMap<String, PathBuf>) -> Result<(), VmError> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            index_modules(&path, index)?;
        } else if let Some(file) = path.file_name().and_then(|n| n.to_str()) {
            if let Some(stem) = [".ko", ".ko.xz", ".ko.zst"]
                .iter()
                .find_map(|s| file.strip_suffix(s))
            {
                index.insert(stem.replace('-', "_"), path.clone());
            }
        }
    }
    Ok(())
}

/// Reads a module, decompressing `.ko.xz`/`.ko.zst` with the host's tools
/// because busybox `insmod` only takes plain ELF.
fn read_module(path: &Path) -> Result<Vec<u8>, VmError> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else {
        return Ok(std::fs::read(path)?);
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| VmError::Kernel(format!("cannot run {tool} to decompress {name}: {e}")))?;
    if !out.status.success() {
        return Err(VmError::Kernel(format!(
            "{tool} -dc {name} failed: {}",
            out.status
        )));
    }
    Ok(out.stdout)
}

/// The `depends=` list from a module's `.modinfo` strings.
fn depends(ko: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(at) = ko.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let rest = &ko[at + KEY.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depends_reads_the_modinfo_list() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=virtio_ring,virtio\0name=virtio_mmio\0";
        assert_eq!(depends(ko), vec!["virtio_ring", "virtio"]);
        assert!(depends(b"\0depends=\0").is_empty());
        assert!(depends(b"no modinfo").is_empty());
    }
}
