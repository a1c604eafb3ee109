//! What `ebb sandbox run` asks for, independent of the isolation kind.

use std::path::{Path, PathBuf};

/// Resource limits; `None` means "no limit of this kind".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    pub memory_mb: Option<u64>,
    /// CPU quota in cores (1.5 = one and a half cores).
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
}

/// One program to run isolated.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxSpec {
    pub limits: Limits,
    /// Root file system to use as the read-only base layer; `None` selects
    /// the base layer ebb builds itself.
    pub rootfs: Option<PathBuf>,
    /// Program and arguments, as seen inside the sandbox.
    pub command: Vec<String>,
}

/// How the sandboxed program ended, in terms a person can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    /// Killed because it hit a limit; the text names the limit and its value.
    LimitKilled(String),
}

impl Outcome {
    /// The exit status to pass through to the caller, shell-style.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Exited(c) => *c,
            Outcome::Signaled(s) => 128 + s,
            Outcome::LimitKilled(_) => 137,
        }
    }
}

/// A host file a node needs inside its container or VM (a bearer token
/// file, a TLS certificate and key), whose host path the node cannot see:
/// the provider copies it in before the node starts, readable by root
/// only, at `inside`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileIn {
    pub host: PathBuf,
    /// Absolute path inside the node's own root file system.
    pub inside: PathBuf,
}

/// Largest file a provider copies into a node: tokens and PEM files are a
/// few KiB; the bound keeps a wrong path (a disk image) out of a VM's
/// RAM-backed root.
pub const MAX_FILE_IN_BYTES: u64 = 1 << 20;

/// Mode of a copied file: the node reads it, no one else inside may.
pub const FILE_IN_MODE: u32 = 0o400;

impl FileIn {
    /// Reads the host file once, when the node is planned, so a missing or
    /// oversized file is an error naming it rather than a node that fails
    /// to start.
    pub fn read(&self) -> Result<Vec<u8>, String> {
        check_inside(&self.inside)?;
        let len = std::fs::metadata(&self.host)
            .map_err(|e| format!("cannot read {}: {e}", self.host.display()))?
            .len();
        if len > MAX_FILE_IN_BYTES {
            return Err(format!(
                "{} has {len} bytes; a file copied into a node has at most {MAX_FILE_IN_BYTES}",
                self.host.display()
            ));
        }
        std::fs::read(&self.host).map_err(|e| format!("cannot read {}: {e}", self.host.display()))
    }
}

impl std::str::FromStr for FileIn {
    type Err = String;

    /// `HOST:INSIDE`, split at the last colon.
    fn from_str(s: &str) -> Result<FileIn, String> {
        let (host, inside) = s
            .rsplit_once(':')
            .filter(|(h, i)| !h.is_empty() && i.starts_with('/'))
            .ok_or_else(|| {
                format!("{s:?}: expected HOST:INSIDE, e.g. node.token:/etc/ebb/node.token (INSIDE absolute)")
            })?;
        let inside = PathBuf::from(inside);
        check_inside(&inside).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(FileIn {
            host: PathBuf::from(host),
            inside,
        })
    }
}

/// An INSIDE path names a file within the node's root: absolute, not the
/// root itself, and with no `..` that would climb out of it (the copy is
/// made from outside the node, by root).
fn check_inside(inside: &Path) -> Result<(), String> {
    use std::path::Component;
    let shown = inside.display();
    if !inside.is_absolute() {
        return Err(format!("{shown}: the path inside must be absolute"));
    }
    if inside
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "{shown}: the path inside may not contain `..`; name the file directly, e.g. /etc/ebb/node.token"
        ));
    }
    if !inside
        .components()
        .any(|c| matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "{shown}: the path inside names the root directory, not a file"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_is_host_colon_absolute_inside() {
        let f: FileIn = "a:b/t:/etc/ebb/t".parse().expect("valid");
        assert_eq!(f.host, PathBuf::from("a:b/t"));
        assert_eq!(f.inside, PathBuf::from("/etc/ebb/t"));
        for bad in ["t", ":/etc/t", "t:etc/t", "t:"] {
            let e = bad.parse::<FileIn>().expect_err(bad);
            assert!(e.contains("HOST:INSIDE"), "{e}");
        }
        let e = "t:/etc/../../x".parse::<FileIn>().expect_err("climbs out");
        assert!(e.contains("`..`"), "{e}");
        let e = "t:/".parse::<FileIn>().expect_err("the root");
        assert!(e.contains("root directory"), "{e}");
    }
}
