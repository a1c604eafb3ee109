//! The child processes a provider starts (process nodes, container
//! runners): they die with their owner, and stopping them is polite
//! first, then sure.

use std::process::Child;
use std::time::{Duration, Instant};

/// How long a provider being dropped waits for its nodes to stop on
/// SIGTERM before it kills them: a server that ignores SIGTERM must not
/// hang the caller.
pub const STOP_GRACE_MS: u64 = 2_000;
const STOP_POLL_MS: u64 = 1;

/// Asks `child` to stop (SIGTERM); whether it did shows in `try_wait`.
pub fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

/// SIGTERMs every child, waits up to [`STOP_GRACE_MS`] in all for them to
/// exit, SIGKILLs those still running, and reaps them all, so none
/// outlives the caller.
pub fn stop_all<'a>(children: impl IntoIterator<Item = &'a mut Child>) {
    let mut children: Vec<&mut Child> = children.into_iter().collect();
    for c in &children {
        terminate(c);
    }
    let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
    for c in &mut children {
        while Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(STOP_POLL_MS));
        }
        if matches!(c.try_wait(), Ok(None)) {
            let _ = c.kill();
        }
        let _ = c.wait();
    }
}

/// Makes the program `cmd` starts get SIGTERM when its owner dies, even
/// by SIGKILL, so a node (a process node, a container runner, which
/// forwards the SIGTERM to its server and then removes its links and
/// slot) never outlives the gateway that started it.
///
/// The kernel sends the signal when the *thread* that spawned the child
/// ends (prctl(2), PR_SET_PDEATHSIG), not only the process: spawn from a
/// thread that lives as long as the nodes do (the pool's manager thread,
/// a main thread). The setting survives exec of a program that is not
/// set-user-ID, and is not inherited by the child's own children.
pub fn die_with_owner(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let owner = std::process::id();
    // SAFETY: between fork and exec only async-signal-safe calls run:
    // prctl(2) and getppid(2), each a bare system call.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)?;
            // The owner may have died between fork and prctl, before the
            // setting could take effect; the child was then reparented.
            if nix::unistd::getppid().as_raw() as u32 != owner {
                return Err(std::io::Error::other(
                    "the process starting this node has exited",
                ));
            }
            Ok(())
        });
    }
}

/// Starts `cmd` tied to this process rather than to the calling thread:
/// [`die_with_owner`], then spawned from one thread that lives as long as
/// the process. A child started from a short-lived worker thread (a VM
/// migration target, a snapshot template) then dies with the process,
/// and only with it: tied to its worker thread, it would die when that
/// thread ends; left untied, it would outlive a SIGKILLed owner.
pub fn spawn_tied_to_process(
    mut cmd: std::process::Command,
) -> std::io::Result<std::process::Child> {
    use std::sync::OnceLock;
    use std::sync::mpsc;
    type Request = (
        std::process::Command,
        mpsc::SyncSender<std::io::Result<std::process::Child>>,
    );
    static SPAWNER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();
    die_with_owner(&mut cmd);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("ebb-spawner".into())
            .spawn(move || {
                // Never ends while the process runs: every sender is the
                // static one.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .ok()
            .map(|_| tx)
    });
    let Some(spawner) = spawner else {
        return Err(std::io::Error::other(
            "the thread that starts children tied to this process could not start",
        ));
    };
    let (reply_tx, reply_rx) = mpsc::sync_channel(1);
    spawner
        .send((cmd, reply_tx))
        .map_err(|_| std::io::Error::other("the thread that starts children has ended"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the thread that starts children has ended"))?
}

/// Bound on the output kept of a node's stdout: enough for the last few
/// lines of a failing node, read back into its `Gone` reason.
pub const MAX_OUTPUT_TAIL_BYTES: usize = 16 * 1024;
/// Lines of a node's last output a `Gone` reason quotes.
pub const GONE_REASON_LINES: usize = 3;

/// A child's stdout, captured without blocking: drained on every poll so a
/// chatty node never blocks on a full pipe, and its last
/// [`MAX_OUTPUT_TAIL_BYTES`] kept to explain its end.
pub struct OutputTail {
    out: std::process::ChildStdout,
    tail: Vec<u8>,
    /// The node was asked to stop: its end is no failure to explain.
    stopping: bool,
}

impl OutputTail {
    /// Takes `out` over, making it non-blocking.
    pub fn new(out: std::process::ChildStdout) -> std::io::Result<OutputTail> {
        use std::os::fd::AsRawFd;
        let fd = out.as_raw_fd();
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        Ok(OutputTail {
            out,
            tail: Vec::new(),
            stopping: false,
        })
    }

    /// Reads what has arrived; `Ok(false)` once the child closed it.
    pub fn drain(&mut self) -> std::io::Result<bool> {
        use std::io::Read;
        let mut buf = [0u8; 1024];
        loop {
            match self.out.read(&mut buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.tail.extend_from_slice(&buf[..n]);
                    if self.tail.len() > MAX_OUTPUT_TAIL_BYTES {
                        let cut = self.tail.len() - MAX_OUTPUT_TAIL_BYTES;
                        self.tail.drain(..cut);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The output kept, as text.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.tail)
    }

    /// Forgets the output kept so far.
    pub fn clear(&mut self) {
        self.tail.clear();
    }

    /// The node was asked to stop: [`OutputTail::explain`] quotes nothing
    /// from here on, since an end on request needs no explaining (and
    /// quiet is what a stopped node's output should be).
    pub fn stopping(&mut self) {
        self.stopping = true;
    }

    /// `why`, followed by the last [`GONE_REASON_LINES`] non-empty lines
    /// of the output kept, if any, unless the node was asked to stop: a
    /// failed node's own last words beside how it ended.
    pub fn explain(&self, why: String) -> String {
        if self.stopping {
            return why;
        }
        let text = self.text();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = &lines[lines.len().saturating_sub(GONE_REASON_LINES)..];
        if last.is_empty() {
            return why;
        }
        format!("{why}; its last output: {}", last.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child started from a thread that then ends keeps running (it is
    /// tied to the process, not to that thread) and leads its own group.
    #[test]
    fn a_child_tied_to_the_process_outlives_the_thread_that_started_it() {
        use std::os::unix::process::CommandExt;
        let (mut child, tid) = std::thread::spawn(|| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("60").process_group(0);
            let child = spawn_tied_to_process(cmd).expect("sleep starts");
            (child, nix::unistd::gettid())
        })
        .join()
        .expect("the starting thread ends");
        // `join` returns before the kernel is done with the thread; once
        // its task is gone from /proc, the parent-death signals of its
        // children have been sent.
        let task = format!("/proc/self/task/{tid}");
        for _ in 0..1_000_000 {
            if !std::path::Path::new(&task).exists() {
                break;
            }
            std::thread::yield_now();
        }
        assert!(!std::path::Path::new(&task).exists(), "{task} still there");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        // A child tied to the starting thread would now have SIGTERM on
        // its way or be dead of it. This one is tied to the spawner
        // thread, which lives as long as the test process.
        assert!(matches!(child.try_wait(), Ok(None)), "still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        let pending = status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("?"))
            .collect::<Vec<_>>();
        assert_eq!(pending, ["0000000000000000"; 2], "no signal on its way");
        assert_eq!(nix::unistd::getpgid(Some(pid)).expect("its group"), pid);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The tail of everything `script` printed, read after it ended.
    fn tail_of(script: &str) -> OutputTail {
        let mut child = std::process::Command::new("sh")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut tail = OutputTail::new(child.stdout.take().expect("piped")).expect("non-blocking");
        child.wait().expect("sh ends");
        // The writer has exited: everything it wrote is in the pipe.
        while tail.drain().expect("readable") {}
        tail
    }

    #[test]
    fn a_tail_keeps_the_last_output_and_quotes_its_last_lines() {
        let mut tail = tail_of("for i in 1 2 3 4 5; do echo line $i; done; echo");
        assert_eq!(
            tail.explain("ended: exit status: 0".into()),
            "ended: exit status: 0; its last output: line 3 | line 4 | line 5"
        );
        tail.clear();
        assert_eq!(tail.explain("ended".into()), "ended");
        // A node asked to stop ends quietly, whatever it printed.
        let mut tail = tail_of("echo bye");
        tail.stopping();
        assert_eq!(tail.explain("stopped".into()), "stopped");
    }
}
