//! Container networking: every container has its own network namespace.
//! With [`NetMode::Veth`] a veth pair joins it to the host on a private
//! /30 of 10.213.0.0/16 chosen by the container's slot index, so a gateway
//! on the host can reach a node's port (and, given a host route, a
//! [`super::HostAddr`] on the host); with [`NetMode::None`] it has
//! loopback only.
//!
//! The host side is set up over rtnetlink by the runner; the container side
//! with ioctls from inside the namespace. Neither spawns a process.
//! When the namespace dies the kernel deletes the pair, so a crashed
//! container leaks no interface; the sweep removes a host end regardless.

use super::error::ContainerError;
use super::netlink::{Netlink, index_of};
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NetMode {
    /// Loopback only.
    None,
    /// Loopback plus a veth pair to the host.
    #[default]
    Veth,
}

/// The two ends of a container's /30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addrs {
    pub host: Ipv4Addr,
    pub container: Ipv4Addr,
}

pub const PREFIX_LEN: u8 = 30;

pub fn addrs(index: u32) -> Addrs {
    let base = u32::from(Ipv4Addr::new(10, 213, 0, 0)) + (index % (1 << 14)) * 4;
    Addrs {
        host: Ipv4Addr::from(base + 1),
        container: Ipv4Addr::from(base + 2),
    }
}

/// Fixed MAC addresses (locally administered) for the two ends, so each
/// side can hold a permanent neighbour entry for the other: no ARP
/// exchange, hence no one-second ARP retry if the first request is lost
/// while the link is still coming up.
pub fn mac(index: u32, host_side: bool) -> [u8; 6] {
    let i = index.to_be_bytes();
    [0x02, 0xeb, i[2], i[3], 0, if host_side { 1 } else { 2 }]
}

pub fn host_if(index: u32) -> String {
    format!("eb{index}h")
}

pub fn container_if(index: u32) -> String {
    format!("eb{index}c")
}

/// Creates an empty network namespace and returns a handle to it, leaving
/// the caller in its own. Made by the runner before it forks, so the veth
/// can be plugged in while the child is already setting up (no round trip).
pub fn new_netns() -> Result<std::fs::File, ContainerError> {
    use nix::sched::{CloneFlags, setns, unshare};
    let open = |p: &str| {
        std::fs::File::open(p).map_err(|e| ContainerError::Net(format!("opening {p}: {e}")))
    };
    let own = open("/proc/self/ns/net")?;
    unshare(CloneFlags::CLONE_NEWNET)
        .map_err(|e| ContainerError::Net(format!("unshare(CLONE_NEWNET): {e}")))?;
    let new = open("/proc/self/ns/net");
    setns(&own, CloneFlags::CLONE_NEWNET)
        .map_err(|e| ContainerError::Net(format!("returning to the host netns: {e}")))?;
    new
}

/// Creates the pair with its container end already inside `netns`,
/// addresses the host end, and brings it up.
pub fn setup_host(index: u32, netns: &std::fs::File) -> Result<Addrs, ContainerError> {
    let a = addrs(index);
    let (h, c) = (host_if(index), container_if(index));
    let fail = |what: &str, e: std::io::Error| ContainerError::Net(format!("{what} {h}: {e}"));
    let nl = Netlink::open().map_err(|e| fail("opening rtnetlink for", e))?;
    nl.add_veth(&h, mac(index, true), &c, mac(index, false), netns)
        .map_err(|e| fail("creating veth", e))?;
    let i =
        index_of(&h).ok_or_else(|| ContainerError::Net(format!("{h} vanished after creation")))?;
    nl.add_addr(i, a.host, PREFIX_LEN)
        .map_err(|e| fail("addressing", e))?;
    nl.set_neighbour(i, a.container, mac(index, false))
        .map_err(|e| fail("adding the neighbour on", e))?;
    nl.set_up(i).map_err(|e| fail("bringing up", e))?;
    Ok(a)
}

/// A pair with both ends on the host, for a [`super::HostAddr`]: the host
/// end holds the slot's host address as a /32 (no connected route), both
/// ends up (an address is local only while its link is up).
pub fn setup_host_only(index: u32, own_netns: &std::fs::File) -> Result<(), ContainerError> {
    let a = addrs(index);
    let (h, c) = (host_if(index), container_if(index));
    let fail = |what: &str, e: std::io::Error| ContainerError::Net(format!("{what} {h}: {e}"));
    let nl = Netlink::open().map_err(|e| fail("opening rtnetlink for", e))?;
    nl.add_veth(&h, mac(index, true), &c, mac(index, false), own_netns)
        .map_err(|e| fail("creating veth", e))?;
    let index_of_end = |name: &str| {
        index_of(name).ok_or_else(|| ContainerError::Net(format!("{name} vanished after creation")))
    };
    let (hi, ci) = (index_of_end(&h)?, index_of_end(&c)?);
    nl.add_addr(hi, a.host, HOST_ADDR_PREFIX_LEN)
        .map_err(|e| fail("addressing", e))?;
    nl.set_up(ci)
        .map_err(|e| fail("bringing up the peer of", e))?;
    nl.set_up(hi).map_err(|e| fail("bringing up", e))?;
    Ok(())
}

/// A host address alone on its link: no route to a subnet behind it.
const HOST_ADDR_PREFIX_LEN: u8 = 32;

pub fn host_end_exists(index: u32) -> bool {
    std::path::Path::new("/sys/class/net")
        .join(host_if(index))
        .exists()
}

/// Deletes a host end left by a container that did not clean up.
pub fn remove_stale(index: u32) {
    if let (Some(i), Ok(nl)) = (index_of(&host_if(index)), Netlink::open()) {
        let _ = nl.delete_link(i);
    }
}

/// Inside the namespace: loopback up, the veth end addressed and up, and a
/// host route to `reach` (a [`super::HostAddr`]) through the veth's host end.
pub fn setup_inside(veth_index: Option<u32>, reach: Option<Ipv4Addr>) -> Result<(), String> {
    let sock = Socket::new()?;
    sock.up("lo")?;
    if let Some(index) = veth_index {
        let name = container_if(index);
        let a = addrs(index);
        sock.set_addr(&name, libc::SIOCSIFADDR, a.container)?;
        let mask = Ipv4Addr::from(u32::MAX << (32 - PREFIX_LEN));
        sock.set_addr(&name, libc::SIOCSIFNETMASK, mask)?;
        sock.up(&name)?;
        sock.set_neighbour(&name, a.host, mac(index, true))?;
        if let Some(dst) = reach {
            sock.add_host_route(&name, dst, a.host)?;
        }
    }
    Ok(())
}

struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn new() -> Result<Self, String> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        Ok(Socket(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }

    fn ifreq(name: &str) -> Result<libc::ifreq, String> {
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            return Err(format!("interface name {name:?} is too long"));
        }
        for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        Ok(req)
    }

    fn ioctl(&self, op: libc::Ioctl, req: &mut libc::ifreq, what: &str) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        // SAFETY: `req` is a valid ifreq that outlives the call; every op used
        // here reads or writes only an ifreq.
        let rc = unsafe { libc::ioctl(self.0.as_raw_fd(), op, req as *mut libc::ifreq) };
        if rc < 0 {
            return Err(format!("{what}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn up(&self, name: &str) -> Result<(), String> {
        let mut req = Self::ifreq(name)?;
        self.ioctl(
            libc::SIOCGIFFLAGS,
            &mut req,
            &format!("reading flags of {name}"),
        )?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        self.ioctl(libc::SIOCSIFFLAGS, &mut req, &format!("bringing {name} up"))
    }

    /// A permanent ARP entry (SIOCSARP).
    fn set_neighbour(&self, name: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        // SAFETY: arpreq is plain old data; all-zero is a valid value.
        let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
        let sin = sockaddr_in(ip);
        // SAFETY: sockaddr_in fits in arp_pa (a 16-byte sockaddr), which is
        // how the kernel reads it for AF_INET.
        unsafe {
            std::ptr::write(
                std::ptr::addr_of_mut!(req.arp_pa).cast::<libc::sockaddr_in>(),
                sin,
            )
        };
        req.arp_ha.sa_family = libc::ARPHRD_ETHER;
        for (d, s) in req.arp_ha.sa_data.iter_mut().zip(mac) {
            *d = s as libc::c_char;
        }
        req.arp_flags = libc::ATF_COM | libc::ATF_PERM;
        for (d, s) in req.arp_dev.iter_mut().zip(name.as_bytes()) {
            *d = *s as libc::c_char;
        }
        // SAFETY: `req` is a valid arpreq that outlives the call.
        let rc = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCSARP,
                &mut req as *mut libc::arpreq,
            )
        };
        if rc < 0 {
            return Err(format!(
                "adding the neighbour {ip} on {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// `ip route add DST/32 via VIA dev NAME` (SIOCADDRT).
    fn add_host_route(&self, name: &str, dst: Ipv4Addr, via: Ipv4Addr) -> Result<(), String> {
        use std::os::fd::AsRawFd;
        let dev = std::ffi::CString::new(name)
            .map_err(|_| format!("interface name {name:?} contains a NUL byte"))?;
        // SAFETY: rtentry is plain old data (its one pointer may be null);
        // all-zero is a valid value.
        let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
        let put = |at: &mut libc::sockaddr, ip: Ipv4Addr| {
            // SAFETY: sockaddr_in fits in a sockaddr (both 16 bytes), which
            // is how the kernel reads it for AF_INET.
            unsafe { std::ptr::write((at as *mut libc::sockaddr).cast(), sockaddr_in(ip)) }
        };
        put(&mut rt.rt_dst, dst);
        put(&mut rt.rt_gateway, via);
        put(&mut rt.rt_genmask, Ipv4Addr::BROADCAST);
        rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY | libc::RTF_HOST;
        rt.rt_dev = dev.as_ptr().cast_mut();
        // SAFETY: `rt` is a valid rtentry and `dev` (which it points to)
        // outlives the call; SIOCADDRT only reads them.
        let rc = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SIOCADDRT,
                &mut rt as *mut libc::rtentry,
            )
        };
        if rc < 0 {
            return Err(format!(
                "adding a route to {dst} via {via} on {name}: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    fn set_addr(&self, name: &str, op: libc::Ioctl, ip: Ipv4Addr) -> Result<(), String> {
        let mut req = Self::ifreq(name)?;
        let sin = sockaddr_in(ip);
        // SAFETY: sockaddr_in fits in the sockaddr member (both 16 bytes),
        // which is how the kernel reads it for AF_INET.
        unsafe {
            std::ptr::write(
                std::ptr::addr_of_mut!(req.ifr_ifru.ifru_addr).cast::<libc::sockaddr_in>(),
                sin,
            )
        };
        self.ioctl(op, &mut req, &format!("setting {ip} on {name}"))
    }
}

fn sockaddr_in(ip: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_get_disjoint_slash30s() {
        let a = addrs(0);
        assert_eq!(a.host, Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(a.container, Ipv4Addr::new(10, 213, 0, 2));
        let b = addrs(64);
        assert_eq!(b.host, Ipv4Addr::new(10, 213, 1, 1));
        assert!(host_if(16383).len() < 16, "interface names fit IFNAMSIZ");
    }
}
