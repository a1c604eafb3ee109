//! A small typed client for the QEMU Machine Protocol (QMP).
//!
//! QMP is line-delimited JSON over a unix socket: a greeting, then
//! `qmp_capabilities` to leave negotiation mode, then commands, each answered
//! by `{"return": …}` or `{"error": …}`. Asynchronous events (`{"event": …}`)
//! may arrive between them; every state we care about can be polled
//! (`query-status`, `query-migrate`), so we only note when each event last
//! happened (QEMU stamps them with the host's wall clock): a migration's
//! `STOP` is the moment the source guest stopped serving.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long one command may take to answer before we give up on QEMU.
pub const QMP_REPLY_TIMEOUT_MS: u64 = 30_000;
/// Bounds one reply line; QMP replies we use are far smaller.
const MAX_LINE_BYTES: usize = 1 << 20;
/// Bounds the events skipped while waiting for one reply.
const MAX_EVENTS_PER_REPLY: usize = 1024;
/// Bounds the event names whose last time is remembered (QEMU has a few
/// dozen); names beyond it are not remembered.
const MAX_EVENT_NAMES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP socket I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("QEMU closed the QMP connection")]
    Closed,
    #[error("unexpected QMP message: {0}")]
    Protocol(String),
    #[error("QEMU refused {command}: {class}: {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

/// QEMU's run state, from `query-status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunState {
    pub running: bool,
    /// `running`, `paused`, `inmigrate`, `postmigrate`, `shutdown`, …
    pub status: String,
}

/// Guest memory as QEMU sees it, from `query-memory-size-summary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemorySummary {
    pub base_memory_bytes: u64,
    pub plugged_memory_bytes: u64,
}

/// One virtual CPU, from `query-cpus-fast`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    pub cpu_index: u64,
    /// The host thread running this vCPU.
    pub thread_id: u64,
}

/// Progress of an outgoing or incoming migration, from `query-migrate`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationInfo {
    /// `none`, `setup`, `active`, `device`, `completed`, `failed`, …
    pub status: String,
    pub total_time_ms: Option<u64>,
    pub downtime_ms: Option<u64>,
    pub ram_transferred_bytes: Option<u64>,
    pub error: Option<String>,
    /// Where an incoming migration listens (`migrate-incoming` on port 0).
    pub listen_port: Option<u16>,
}

impl MigrationInfo {
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }
}

pub struct QmpClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// When each event name was last seen, by QEMU's timestamp.
    last_events: Vec<(String, SystemTime)>,
}

impl QmpClient {
    /// Connects, reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Self, QmpError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_millis(QMP_REPLY_TIMEOUT_MS)))?;
        let writer = stream.try_clone()?;
        let mut c = Self {
            reader: BufReader::new(stream),
            writer,
            last_events: Vec::new(),
        };
        let greeting = c.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected a greeting, got {greeting}"
            )));
        }
        c.execute("qmp_capabilities", None)?;
        Ok(c)
    }

    /// Runs one command and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        for _ in 0..MAX_EVENTS_PER_REPLY {
            let m = self.read_message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: field("class"),
                    desc: field("desc"),
                });
            }
            match m.get("event").and_then(Value::as_str) {
                Some(name) => self.note_event(name, &m),
                None => return Err(QmpError::Protocol(m.to_string())),
            }
        }
        Err(QmpError::Protocol(format!(
            "no reply to {command} among {MAX_EVENTS_PER_REPLY} events"
        )))
    }

    /// When QEMU last emitted event `name` (e.g. `STOP`), among those read
    /// so far while waiting for replies.
    pub fn last_event(&self, name: &str) -> Option<SystemTime> {
        self.last_events
            .iter()
            .find(|(n, _)| n == name)
            .map(|&(_, t)| t)
    }

    fn note_event(&mut self, name: &str, m: &Value) {
        let Some(ts) = m.get("timestamp") else {
            return;
        };
        let secs = u64_field(ts, "seconds").unwrap_or(0);
        let micros = u64_field(ts, "microseconds").unwrap_or(0);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
        if let Some(slot) = self.last_events.iter_mut().find(|(n, _)| n == name) {
            slot.1 = at;
        } else if self.last_events.len() < MAX_EVENT_NAMES {
            self.last_events.push((name.to_owned(), at));
        }
    }

    /// Runs a human-monitor (HMP) command, for the few operations QMP has
    /// no command for. HMP reports most failures as text, not as an error;
    /// `ok` decides from that text whether the command worked.
    pub fn hmp(
        &mut self,
        command_line: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, QmpError> {
        let r = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        let text = r.as_str().unwrap_or("").trim().to_owned();
        if ok(&text) {
            Ok(text)
        } else {
            Err(QmpError::Command {
                command: command_line.to_owned(),
                class: "HMP".into(),
                desc: text,
            })
        }
    }

    /// Adds a user-mode network forward (`tcp:HOST:PORT-:GUESTPORT`) on a
    /// running QEMU. QEMU answers nothing on success and a message on
    /// failure (e.g. the host port is taken).
    pub fn hostfwd_add(&mut self, netdev: &str, rule: &str) -> Result<(), QmpError> {
        self.hmp(&format!("hostfwd_add {netdev} {rule}"), str::is_empty)
            .map(drop)
    }

    /// Removes a forward (`tcp:HOST:PORT`), closing its listening socket;
    /// connections already accepted through it stay open.
    pub fn hostfwd_remove(&mut self, netdev: &str, host: &str) -> Result<(), QmpError> {
        self.hmp(&format!("hostfwd_remove {netdev} {host}"), |t| {
            t.ends_with("removed")
        })
        .map(drop)
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n =
            std::io::Read::take(&mut self.reader, MAX_LINE_BYTES as u64).read_line(&mut line)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        serde_json::from_str(&line).map_err(|e| QmpError::Protocol(format!("{e}: {line}")))
    }

    pub fn query_status(&mut self) -> Result<RunState, QmpError> {
        let r = self.execute("query-status", None)?;
        Ok(RunState {
            running: r.get("running").and_then(Value::as_bool).unwrap_or(false),
            status: str_field(&r, "status").unwrap_or_default(),
        })
    }

    /// Pauses the guest's vCPUs.
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).map(drop)
    }

    /// Resumes the guest's vCPUs.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }

    /// Asks QEMU to exit; the connection closes right after the reply.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        match self.execute("quit", None) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub fn query_memory_size_summary(&mut self) -> Result<MemorySummary, QmpError> {
        let r = self.execute("query-memory-size-summary", None)?;
        Ok(MemorySummary {
            base_memory_bytes: u64_field(&r, "base-memory").unwrap_or(0),
            plugged_memory_bytes: u64_field(&r, "plugged-memory").unwrap_or(0),
        })
    }

    pub fn query_cpus_fast(&mut self) -> Result<Vec<CpuInfo>, QmpError> {
        let r = self.execute("query-cpus-fast", None)?;
        let list = r
            .as_array()
            .ok_or_else(|| QmpError::Protocol(format!("cpus: {r}")))?;
        Ok(list
            .iter()
            .map(|c| CpuInfo {
                cpu_index: u64_field(c, "cpu-index").unwrap_or(0),
                thread_id: u64_field(c, "thread-id").unwrap_or(0),
            })
            .collect())
    }

    /// Starts sending the VM's state to `uri` (`tcp:HOST:PORT`, `exec:CMD`).
    pub fn migrate(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate", Some(json!({ "uri": uri })))
            .map(drop)
    }

    /// On a QEMU started with `-incoming defer`: starts listening on `uri`.
    pub fn migrate_incoming(&mut self, uri: &str) -> Result<(), QmpError> {
        self.execute("migrate-incoming", Some(json!({ "uri": uri })))
            .map(drop)
    }

    /// Lifts QEMU's default 32 MiB/s migration cap and sets the pause the
    /// final copy may take; both only matter for local migrations here.
    pub fn set_migration_limits(
        &mut self,
        max_bandwidth_bytes_per_s: u64,
        downtime_limit_ms: u64,
    ) -> Result<(), QmpError> {
        let args = json!({
            "max-bandwidth": max_bandwidth_bytes_per_s,
            "downtime-limit": downtime_limit_ms,
        });
        self.execute("migrate-set-parameters", Some(args)).map(drop)
    }

    pub fn query_migrate(&mut self) -> Result<MigrationInfo, QmpError> {
        let r = self.execute("query-migrate", None)?;
        let listen_port = r
            .get("socket-address")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|s| s.get("port"))
            .and_then(|p| {
                p.as_str()
                    .and_then(|s| s.parse().ok())
                    .or(p.as_u64().and_then(|n| u16::try_from(n).ok()))
            });
        Ok(MigrationInfo {
            status: str_field(&r, "status").unwrap_or_else(|| "none".into()),
            total_time_ms: u64_field(&r, "total-time"),
            downtime_ms: u64_field(&r, "downtime"),
            ram_transferred_bytes: r.get("ram").and_then(|ram| u64_field(ram, "transferred")),
            error: str_field(&r, "error-desc"),
            listen_port,
        })
    }
}

fn str_field(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn u64_field(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

#[cfg(test)]
mod tests;
