//! One HTTP/1.1 keep-alive connection as one task: it takes the next
//! waiting call from the queue, writes the run's request bytes, reads the
//! response to its end and reports the outcome, one request at a time
//! (no pipelining: at most one request in flight per connection, so a
//! response can only be that request's).
//!
//! While idle the task watches the socket beside the queue, so a
//! connection the server closed is seen at once and replaced before the
//! next call rather than failing it. A connection that broke, that the
//! response said to close, or whose request outlived its deadline (it
//! still carries that request) is dropped, and a new one is opened for the
//! next call and counted as a reconnect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Shared;
use super::queue::Queue;
use super::response::{Body, parse_head};
use crate::Outcome;
use crate::outcome::CONNECT_FAILED;

/// Where a connection's give-up timer first points, before its first
/// call moves it: far enough never to fire first.
const IDLE_TIMER_S: u64 = 24 * 3_600;
/// A connection's read buffer: a response head must fit in it whole, and
/// so must a chunk's size line.
pub(super) const READ_BUFFER_BYTES: usize = 16 * 1024;

/// An open connection and the bytes read from it and not yet used.
pub(super) struct Link {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet used.
    start: usize,
    end: usize,
}

/// What a read gave.
enum Fill {
    Read,
    Closed,
    /// The buffer is full of bytes the parser cannot use yet.
    Full,
    Failed,
}

impl Link {
    fn unread(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        debug_assert!(self.start <= self.end, "used more than was read");
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Reads more after what is unread, moving that to the front first.
    async fn fill(&mut self) -> Fill {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            return Fill::Full;
        }
        match self.stream.read(&mut self.buf[self.end..]).await {
            Ok(0) => Fill::Closed,
            Ok(n) => {
                self.end += n;
                Fill::Read
            }
            Err(_) => Fill::Failed,
        }
    }

    /// Resolves when an idle connection can no longer carry a request: the
    /// server closed it, it broke, or it sent bytes nobody asked for.
    ///
    /// Watching costs no system call per call: the read that ended the
    /// response returned less than the buffer, which tokio takes (on epoll)
    /// as the socket drained and clears its readiness, so `readable` waits
    /// on the event loop instead of probing with a read that would block.
    /// (`strace -c` of a run counts one `recvfrom` per answered call.)
    async fn unusable(&mut self) {
        loop {
            if self.stream.readable().await.is_err() {
                return;
            }
            let mut probe = [0u8; 1];
            match self.stream.try_read(&mut probe) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                _ => return,
            }
        }
    }
}

/// Opens a connection to `addr`.
pub(super) async fn open(addr: &str) -> Result<Link, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(Link {
        stream,
        buf: vec![0; READ_BUFFER_BYTES].into_boxed_slice(),
        start: 0,
        end: 0,
    })
}

/// The connection's task: calls from `queue` until it is closed and empty.
pub(super) async fn serve(shared: Arc<Shared>, queue: Arc<Queue>, mut link: Option<Link>) {
    // One give-up timer for all of the connection's calls, moved to each
    // call's time. A timer made per call would, after an idle spell with
    // none pending, wake the runtime's parked thread to say so (an eventfd
    // write and an extra `epoll_wait` per call); one that stays pending
    // and is only moved later does not.
    let give_up = tokio::time::sleep(Duration::from_secs(IDLE_TIMER_S));
    tokio::pin!(give_up);
    loop {
        let job = match link.as_mut() {
            Some(l) => tokio::select! {
                biased;
                () = l.unusable() => {
                    link = None;
                    continue;
                }
                job = queue.next() => job,
            },
            None => queue.next().await,
        };
        let Some(job) = job else {
            return;
        };
        give_up.as_mut().reset(job.give_up.into());
        let outcome = tokio::select! {
            biased;
            outcome = call(&shared, &mut link) => outcome,
            () = give_up.as_mut() => {
                // The connection still carries the unanswered request.
                link = None;
                Outcome::DeadlineExceeded
            }
        };
        job.reply.send(outcome);
    }
}

/// One request on `link` (opened first if there is none, and counted as
/// a reconnect); leaves `link` empty if the connection cannot carry
/// another.
async fn call(shared: &Shared, link: &mut Option<Link>) -> Outcome {
    if link.is_none() {
        shared.reconnects.fetch_add(1, Ordering::Relaxed);
        match open(&shared.addr).await {
            Ok(l) => *link = Some(l),
            Err(_) => return Outcome::Other(CONNECT_FAILED.into()),
        }
    }
    let Some(l) = link.as_mut() else {
        return Outcome::Other(CONNECT_FAILED.into());
    };
    let (outcome, reusable) = exchange(&shared.request, l).await;
    if !reusable {
        *link = None;
    }
    outcome
}

/// Writes `request` and reads its response; the flag says whether the
/// exchange left the connection fit for the next one.
async fn exchange(request: &[u8], l: &mut Link) -> (Outcome, bool) {
    // A failed write may have sent part or all of the request.
    if l.stream.write_all(request).await.is_err() {
        return (Outcome::OutcomeUnknown, false);
    }
    let head = loop {
        match parse_head(l.unread()) {
            Ok(Some((head, used))) => {
                l.consume(used);
                break head;
            }
            Ok(None) => {}
            // Written, and no response to tell what became of it.
            Err(_) => return (Outcome::OutcomeUnknown, false),
        }
        match l.fill().await {
            Fill::Read => {}
            Fill::Closed | Fill::Full | Fill::Failed => return (Outcome::OutcomeUnknown, false),
        }
    };
    let unreadable = || (Outcome::Other("response_unreadable".into()), false);
    let Ok(mut body) = Body::new(head.framing) else {
        return unreadable();
    };
    // Only an error body is looked at; a 200's is read and dropped.
    let keep = head.status != 200;
    let mut kept = Vec::new();
    let mut closed = false;
    loop {
        match body.feed(l.unread(), keep, &mut kept) {
            Ok(used) => l.consume(used),
            Err(_) => return unreadable(),
        }
        if body.is_done() {
            break;
        }
        match l.fill().await {
            Fill::Read => {}
            Fill::Closed => {
                if body.at_close().is_err() {
                    return unreadable();
                }
                closed = true;
                break;
            }
            Fill::Full | Fill::Failed => return unreadable(),
        }
    }
    // Bytes past the response answer no request of ours: not reused.
    let reusable = head.keep_alive && !closed && l.unread().is_empty();
    let outcome = if keep {
        Outcome::from_http(head.status, head.retry_after, &kept)
    } else {
        Outcome::Ok
    };
    (outcome, reusable)
}
