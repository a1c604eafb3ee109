//! How many bytes a socket's kernel still holds unacknowledged by the peer.
//!
//! A client counts a request as delivered when the peer has acknowledged
//! it, not when `write` returned: the send buffer takes megabytes at once,
//! so over a slow link "written" runs seconds ahead of what the server
//! has. Subtracting this from the bytes written gives what the peer's
//! kernel received, which the server's reader takes as fast as it comes.

/// The socket whose queue [`unacknowledged`] reads: the raw descriptor of
/// a connection still open (its read half is held by the caller).
#[derive(Clone, Copy, Debug)]
pub struct SocketQueue {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
}

impl SocketQueue {
    pub fn of(stream: &tokio::net::TcpStream) -> SocketQueue {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            SocketQueue {
                fd: stream.as_raw_fd(),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = stream;
            SocketQueue {}
        }
    }

    /// Bytes written to the socket that the peer has not acknowledged yet
    /// (sent or not). 0 where it cannot be read: then written counts as
    /// delivered, as before.
    pub fn unacknowledged(self) -> u64 {
        #[cfg(target_os = "linux")]
        {
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ only reads the socket's send queue length
            // into the `c_int` it is given, a live local. The descriptor
            // is the connection's, open while its read half lives, which
            // the caller holds; on any error nothing is written and we
            // report 0.
            let rc = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &raw mut queued) };
            if rc == 0 {
                return u64::try_from(queued).unwrap_or(0);
            }
            0
        }
        #[cfg(not(target_os = "linux"))]
        {
            0
        }
    }
}
