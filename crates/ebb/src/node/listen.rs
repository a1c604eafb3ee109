//! Adopting a listening socket inherited from the parent process (socket
//! activation: how a process provider starts a node whose address it chose).

use super::NodeError;

/// Takes ownership of the inherited listening socket `fd`, after checking
/// that it is one: adopting a wrong descriptor would fail obscurely later.
pub fn inherited_listener(fd: i32) -> Result<std::net::TcpListener, NodeError> {
    use std::os::fd::FromRawFd;
    let refuse = |reason: &str| NodeError::ListenFd {
        fd,
        reason: reason.to_owned(),
    };
    if fd <= 2 {
        return Err(refuse(
            "descriptors 0, 1 and 2 are stdin, stdout and stderr; \
             pass the number of an inherited listening TCP socket (usually 3)",
        ));
    }
    // SAFETY: fcntl(F_GETFD) only inspects the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(refuse("no such open descriptor was inherited"));
    }
    let mut accepting: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the out-pointers point at live locals of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ACCEPTCONN,
            (&raw mut accepting).cast(),
            &mut len,
        )
    };
    if rc != 0 || accepting != 1 {
        return Err(refuse("the descriptor is not a listening socket"));
    }
    // SAFETY: the descriptor is open, is a listening socket, and nothing
    // else in this process owns it: it was inherited for us alone.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}
