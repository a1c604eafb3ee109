//! What `ebb sandbox run` asks for, independent of the isolation kind.

use std::path::PathBuf;

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
