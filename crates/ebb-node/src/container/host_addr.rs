//! [`HostAddr`]: an address on the host that containers are routed to, for
//! a service they share (the origin store of `ebb demo` and `ebb up`).
//!
//! A container's network namespace has no route to the host's loopback,
//! so a service there is out of its reach. The host address lives on a
//! veth pair of its own, both ends on the host (this kernel may lack the
//! `dummy` link type; veth is needed anyway), named and addressed like a
//! container's from a claimed container slot: the slot's host address,
//! as a /32. A service binds to it; a container started with
//! [`super::ContainerConfig::reach`] set to it gets a host route to it
//! through its own veth's host end, and the host, owning the address,
//! answers.
//!
//! Decision: one /32 per owner and a host route per container, not a
//! default route, so a container reaches this service and its own veth's
//! host end, nothing more.
//!
//! Cleanup: dropping a `HostAddr` deletes the pair and releases the slot;
//! if its owner dies first, the next container start (or `ebb sandbox
//! sweep`) finds the slot's owner gone and deletes the pair as it does a
//! dead container's.

use super::error::{ContainerError, io_err};
use super::{net, state};
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// A claimed host address; released when dropped.
#[derive(Debug)]
pub struct HostAddr {
    ip: Ipv4Addr,
    index: u32,
    path: PathBuf,
}

impl HostAddr {
    /// Claims a slot and puts its host address on a veth pair of its own.
    /// Needs root (rtnetlink); callable from a multithreaded process (no
    /// fork).
    pub fn claim() -> Result<HostAddr, ContainerError> {
        let uid = nix::unistd::geteuid();
        if !uid.is_root() {
            return Err(ContainerError::NotRoot(uid.as_raw()));
        }
        state::sweep();
        let st = state::claim(std::process::id(), None)?;
        // From here on, dropping `held` releases the slot and the pair.
        let held = HostAddr {
            ip: net::addrs(st.index).host,
            index: st.index,
            path: st.path,
        };
        let own = std::fs::File::open("/proc/self/ns/net")
            .map_err(io_err("opening /proc/self/ns/net"))?;
        net::setup_host_only(held.index, &own)?;
        Ok(held)
    }

    /// The address a service binds to and containers are routed to.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        state::release(self.index, &self.path);
    }
}
