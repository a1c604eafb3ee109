//! The origin of `ebb up`'s pool: started as an `ebb origin` child when the
//! config names a data directory, and the arguments that point nodes at it.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};
use ebb_policy::lease::LeaseTerm;

use super::config::OriginPlan;

/// How long a started origin may take to open its store and listen. Opening
/// checks every record's checksum, so a large store takes a while.
const ORIGIN_START_TIMEOUT_MS: u64 = 60_000;

/// A term as `ebb origin` and `ebb node` take it.
fn term_arg(term: LeaseTerm) -> String {
    if term.is_callback() {
        "inf".to_owned()
    } else {
        term.span().as_millis().to_string()
    }
}

/// What `ebb node` needs to serve the demo's data from `addr`.
pub fn node_args(plan: &OriginPlan, addr: &str) -> Vec<String> {
    vec![
        "--origin".to_owned(),
        addr.to_owned(),
        "--lease-term-ms".to_owned(),
        term_arg(plan.term),
        "--epsilon-ms".to_owned(),
        plan.epsilon_ms.to_string(),
    ]
}

/// An `ebb origin` child; killed (and reaped) when dropped, and when `ebb
/// up` itself dies (its puts are durable when acknowledged, so a kill loses
/// nothing acknowledged).
#[derive(Debug)]
pub struct StartedOrigin {
    child: Child,
    pub addr: String,
}

impl StartedOrigin {
    pub fn start(
        ebb_exe: &Path,
        plan: &OriginPlan,
        data: &Path,
        listen: &str,
    ) -> anyhow::Result<StartedOrigin> {
        let mut cmd = Command::new(ebb_exe);
        cmd.arg("origin")
            .arg("--listen")
            .arg(listen)
            .arg("--data")
            .arg(data)
            .arg("--max-term-ms")
            .arg(term_arg(plan.term))
            .arg("--epsilon-ms")
            .arg(plan.epsilon_ms.to_string())
            .arg("--holder-timeout-ms")
            .arg(plan.holder_timeout_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, as the nodes have: a Ctrl-C at the
            // terminal must not end the store while the nodes drain their
            // calls into it. PR_SET_PDEATHSIG still ends it with `ebb up`.
            .process_group(0);
        // SAFETY: between fork and exec only prctl runs, which is
        // async-signal-safe and touches no memory of this process.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "origin.data = {:?}: starting `{} origin`",
                data,
                ebb_exe.display()
            )
        })?;
        let stdout = child
            .stdout
            .take()
            .context("the origin's stdout is piped")?;
        let (tx, rx) = mpsc::channel();
        // Reads the address, then keeps draining so the child never blocks
        // on a full pipe.
        std::thread::Builder::new()
            .name("origin-stdout".into())
            .spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !sent {
                        if let Some(a) = line.strip_prefix("origin listening on ") {
                            let _ = tx.send(a.trim().to_owned());
                            sent = true;
                        }
                    }
                }
            })
            .context("starting the origin's output reader")?;
        let mut started = StartedOrigin {
            child,
            addr: String::new(),
        };
        match rx.recv_timeout(Duration::from_millis(ORIGIN_START_TIMEOUT_MS)) {
            Ok(addr) => started.addr = addr,
            Err(_) => {
                let status = started.child.try_wait().ok().flatten();
                bail!(
                    "origin.data = {data:?}: the origin did not start listening within {ORIGIN_START_TIMEOUT_MS} ms ({}); its error is printed above",
                    status.map_or("still running".to_owned(), |s| s.to_string())
                );
            }
        }
        Ok(started)
    }
}

impl Drop for StartedOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
