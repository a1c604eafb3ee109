//! Every way starting or running a container can fail, typed so callers can
//! tell "this machine cannot run containers" from "this container broke".

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("containers need root; this process runs as uid {0}")]
    NotRoot(u32),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::Error,
    },
    #[error("no usable cgroup hierarchy: {0}")]
    NoCgroup(String),
    #[error("building the base layer failed: {0}")]
    Base(String),
    #[error("network setup failed: {0}")]
    Net(String),
    #[error("container setup failed inside the namespaces: {0}")]
    Setup(String),
    #[error("all {0} container slots are taken")]
    NoSlot(u32),
}

/// Wraps an `io::Error` with what was being done.
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Io { what, source }
}

/// Wraps a `nix::Error` with what was being done.
pub(crate) fn sys_err(what: impl Into<String>) -> impl FnOnce(nix::Error) -> ContainerError {
    let what = what.into();
    move |source| ContainerError::Sys { what, source }
}
