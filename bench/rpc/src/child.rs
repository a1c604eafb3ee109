//! Starting a server process (`rpc-bench serve`) and reading its CPU time
//! and allocations over the stats protocol described in `serve.rs`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::certs::TlsFiles;
use crate::flavour::Flavour;
use crate::system::System;

/// A server process's counters at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub cpu: Duration,
    pub allocations: u64,
}

/// A running server process; dropping it closes its input, which ends it.
pub struct ServerProcess {
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

/// How to start a server process.
pub struct Launch<'a> {
    pub system: System,
    pub flavour: Flavour,
    pub tls: Option<&'a TlsFiles>,
    pub pin_cpu: Option<usize>,
    /// A command to run the server under (e.g. valgrind and its options).
    pub wrapper: &'a [String],
}

impl ServerProcess {
    pub fn start(l: &Launch<'_>) -> anyhow::Result<ServerProcess> {
        let exe = std::env::current_exe().context("finding the rpc-bench executable")?;
        let mut cmd = match l.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.arg("serve")
            .arg("--system")
            .arg(l.system.name())
            .arg("--flavour")
            .arg(l.flavour.arg());
        if let Some(tls) = l.tls {
            cmd.arg("--tls-dir").arg(&tls.dir);
        }
        if let Some(cpu) = l.pin_cpu {
            cmd.arg("--pin-cpu").arg(cpu.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let stdin = child.stdin.take().context("server stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("server stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            bail!("{} server did not start (said {line:?})", l.system.name());
        };
        let addr = addr
            .parse()
            .with_context(|| format!("server address {addr:?}"))?;
        Ok(ServerProcess {
            addr,
            child,
            stdin: Some(stdin),
            stdout,
        })
    }

    pub fn counters(&mut self) -> anyhow::Result<Counters> {
        let stdin = self.stdin.as_mut().context("server already stopped")?;
        stdin.write_all(b"stats\n")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut f = line.split_whitespace().map(str::parse::<u64>);
        match (f.next(), f.next()) {
            (Some(Ok(cpu)), Some(Ok(allocations))) => Ok(Counters {
                cpu: Duration::from_nanos(cpu),
                allocations,
            }),
            _ => bail!("server stats line {line:?}"),
        }
    }

    /// Closes the server's input and waits for it to exit.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stdin = None;
        self.child.wait().context("waiting for the server")?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.wait();
    }
}
