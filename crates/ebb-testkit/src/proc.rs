//! Child processes for real-process tests: start a program, read the
//! address it prints, kill it when the test ends (even on panic).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Lines of output read while looking for the bound address.
const MAX_STARTUP_LINES: usize = 50;
/// A bound on startup, so a child that hangs fails the test instead of
/// hanging it. Generous: a loaded CI machine may be slow to start processes.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running child that announced `listening on ADDR`, killed on drop.
pub struct Proc {
    child: Child,
    /// The first address printed.
    pub addr: String,
    /// Every address printed, in order (a node with `--http` prints two).
    pub addrs: Vec<String>,
}

impl Proc {
    /// Runs `program ARGS` and waits for the line ending in
    /// `listening on ADDR`. Panics (naming the command) if the child exits
    /// or stays silent past the startup bound.
    pub fn start(program: impl AsRef<Path>, args: &[&str]) -> Proc {
        Proc::start_listening(program, args, 1)
    }

    /// Runs `program ARGS` and waits for `count` lines ending in
    /// `listening on ADDR`.
    pub fn start_listening(program: impl AsRef<Path>, args: &[&str], count: usize) -> Proc {
        Proc::start_with_env(program, args, &[], count)
    }

    /// [`Proc::start_listening`] with `env` added to the child's
    /// environment.
    pub fn start_with_env(
        program: impl AsRef<Path>,
        args: &[&str],
        env: &[(&str, &str)],
        count: usize,
    ) -> Proc {
        assert!(count > 0, "wait for at least one address");
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining stdout so the child never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut found = 0;
            for _ in 0..MAX_STARTUP_LINES {
                match lines.next() {
                    Some(Ok(line)) => {
                        if let Some((_, a)) = line.rsplit_once("listening on ") {
                            let _ = tx.send(a.trim().to_owned());
                            found += 1;
                            if found == count {
                                break;
                            }
                        }
                    }
                    _ => break,
                }
            }
            drop(tx);
            for _ in lines {}
        });
        let mut proc = Proc {
            child,
            addr: String::new(),
            addrs: Vec::new(),
        };
        for _ in 0..count {
            match rx.recv_timeout(STARTUP_TIMEOUT) {
                Ok(a) => proc.addrs.push(a),
                Err(_) => panic!(
                    "{} {args:?} exited or printed fewer than {count} 'listening on ADDR' lines",
                    program.display()
                ),
            }
        }
        proc.addr = proc.addrs[0].clone();
        proc
    }

    /// The child's process id (to signal it, or read its threads under
    /// `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}
