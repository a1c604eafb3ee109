//! Just enough rtnetlink to plug a container in: create a veth pair with
//! one end inside another network namespace, address the host end, add a
//! permanent neighbour, bring it up, delete it. Talking to the kernel
//! directly saves spawning `ip` (a few ms per container on a busy host).
//!
//! Messages are built by hand: a header, a fixed family struct, then
//! 4-byte-aligned attributes (nested ones carry their children).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NLMSG_HDR_BYTES: usize = 16;
const NLMSG_ERROR: u16 = 2;
/// Replies here are acks (an error code plus our header): small.
const RECV_BUF_BYTES: usize = 4096;
/// Attribute type of the peer inside veth's IFLA_INFO_DATA.
const VETH_INFO_PEER: u16 = 1;
const NUD_PERMANENT: u16 = 0x80;

/// One request under construction.
struct Msg {
    buf: Vec<u8>,
    /// Start offsets of the nested attributes still open.
    open: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        let flags = flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16;
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Msg {
            buf,
            open: Vec::new(),
        }
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// `struct ifinfomsg`.
    fn ifinfo(&mut self, index: i32, flags: u32, change: u32) -> &mut Self {
        self.bytes(&[libc::AF_UNSPEC as u8, 0, 0, 0])
            .bytes(&index.to_ne_bytes())
            .bytes(&flags.to_ne_bytes())
            .bytes(&change.to_ne_bytes())
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let len = (4 + payload.len()) as u16;
        self.bytes(&len.to_ne_bytes())
            .bytes(&kind.to_ne_bytes())
            .bytes(payload);
        self.pad();
        self
    }

    fn str_attr(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    fn begin(&mut self, kind: u16) -> &mut Self {
        self.open.push(self.buf.len());
        self.bytes(&0u16.to_ne_bytes()).bytes(&kind.to_ne_bytes())
    }

    fn end(&mut self) -> &mut Self {
        if let Some(start) = self.open.pop() {
            self.pad();
            let len = (self.buf.len() - start) as u16;
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self) -> &[u8] {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        &self.buf
    }
}

pub struct Netlink(OwnedFd);

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2) with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
        Ok(Netlink(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one request and waits for its ack.
    fn call(&self, msg: &mut Msg) -> io::Result<()> {
        let bytes = msg.finish();
        // SAFETY: sockaddr_nl is plain old data; all-zero addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `bytes` and `addr` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.0.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = [0u8; RECV_BUF_BYTES];
        // SAFETY: `reply` is valid for writes of its length.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let reply = &reply[..n as usize];
        if reply.len() < NLMSG_HDR_BYTES + 4 {
            return Err(io::Error::other("short netlink reply"));
        }
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        if kind != NLMSG_ERROR {
            return Err(io::Error::other(format!(
                "unexpected netlink reply type {kind}"
            )));
        }
        let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
        Ok(())
    }

    /// `ip link add HOST address MAC type veth peer name PEER address MAC netns NS`
    pub fn add_veth(
        &self,
        host: &str,
        host_mac: [u8; 6],
        peer: &str,
        peer_mac: [u8; 6],
        netns: &std::fs::File,
    ) -> io::Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWLINK, flags);
        m.ifinfo(0, 0, 0)
            .str_attr(libc::IFLA_IFNAME, host)
            .attr(libc::IFLA_ADDRESS, &host_mac)
            .begin(libc::IFLA_LINKINFO)
            .str_attr(libc::IFLA_INFO_KIND, "veth")
            .begin(libc::IFLA_INFO_DATA)
            .begin(VETH_INFO_PEER)
            .ifinfo(0, 0, 0)
            .str_attr(libc::IFLA_IFNAME, peer)
            .attr(libc::IFLA_ADDRESS, &peer_mac)
            .attr(
                libc::IFLA_NET_NS_FD,
                &(netns.as_raw_fd() as u32).to_ne_bytes(),
            )
            .end()
            .end()
            .end();
        self.call(&mut m)
    }

    /// `ip addr add IP/PREFIX dev INDEX`
    pub fn add_addr(&self, index: i32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
        let mut m = Msg::new(libc::RTM_NEWADDR, flags);
        m.bytes(&[libc::AF_INET as u8, prefix, 0, 0])
            .bytes(&index.to_ne_bytes())
            .attr(libc::IFA_LOCAL, &ip.octets())
            .attr(libc::IFA_ADDRESS, &ip.octets());
        self.call(&mut m)
    }

    /// `ip neigh replace IP lladdr MAC dev INDEX nud permanent`
    pub fn set_neighbour(&self, index: i32, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
        let flags = (libc::NLM_F_CREATE | libc::NLM_F_REPLACE) as u16;
        let mut m = Msg::new(libc::RTM_NEWNEIGH, flags);
        m.bytes(&[libc::AF_INET as u8, 0, 0, 0])
            .bytes(&index.to_ne_bytes())
            .bytes(&NUD_PERMANENT.to_ne_bytes())
            .bytes(&[0, 0])
            .attr(libc::NDA_DST, &ip.octets())
            .attr(libc::NDA_LLADDR, &mac);
        self.call(&mut m)
    }

    /// `ip link set INDEX up`
    pub fn set_up(&self, index: i32) -> io::Result<()> {
        let up = libc::IFF_UP as u32;
        let mut m = Msg::new(libc::RTM_NEWLINK, 0);
        m.ifinfo(index, up, up);
        self.call(&mut m)
    }

    /// `ip link del INDEX` (deletes the peer too).
    pub fn delete_link(&self, index: i32) -> io::Result<()> {
        let mut m = Msg::new(libc::RTM_DELLINK, 0);
        m.ifinfo(index, 0, 0);
        self.call(&mut m)
    }
}

/// The interface's index, `None` if there is no such interface.
pub fn index_of(name: &str) -> Option<i32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_carry_their_whole_length() {
        let mut m = Msg::new(libc::RTM_NEWLINK, 0);
        m.ifinfo(0, 0, 0).begin(1).str_attr(2, "ab").end();
        let b = m.finish().to_vec();
        assert_eq!(
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize,
            b.len()
        );
        let nested = NLMSG_HDR_BYTES + 16;
        // 4 (outer header) + 4 (inner header) + "ab\0" padded to 4.
        assert_eq!(u16::from_ne_bytes([b[nested], b[nested + 1]]), 12);
        assert_eq!(b.len() % 4, 0);
    }
}
