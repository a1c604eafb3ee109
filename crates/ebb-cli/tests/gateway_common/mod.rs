//! `ebb up` as a child process for gateway tests: start it from a config,
//! read the addresses it prints, talk HTTP to it, find its node processes,
//! stop it and check that nothing is left.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::Value;

/// Bound on startup: a loaded CI machine may be slow to start processes.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Status polls while waiting for a condition, and the pause between them.
pub const MAX_POLLS: u32 = 3_000;
pub const POLL_PAUSE: Duration = Duration::from_millis(10);
/// A VM pool's drain bound (`pool.shutdown_grace_ms`) in these tests.
/// Generous on purpose: a TCG guest on a loaded machine took longer than
/// the default 10 s to finish a 2 s call after Ctrl-C; the bound only
/// caps a hang, and a drain that works ends as soon as its calls do.
pub const VM_SHUTDOWN_GRACE_MS: u64 = 120_000;
/// Bound on a clean shutdown after SIGINT or SIGTERM, in polls of at
/// least [`POLL_PAUSE`]: 30 s past the longest drain bound a test sets.
const SHUTDOWN_POLLS: u32 = (VM_SHUTDOWN_GRACE_MS / 10 + 3_000) as u32;

/// `ebb up --check CONFIG`, run to its end.
pub fn up_check(config: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["up", "--check"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// How long a pool may take to be ready: a VM boots (TCG without KVM) far
/// slower than a process starts.
pub const BOOT_WAIT: Duration = Duration::from_secs(600);
const BOOT_POLL: Duration = Duration::from_millis(100);

/// Extra `[pool]` keys a pool of `kind` needs: a VM's memory, and a boot
/// timeout and a drain bound ([`VM_SHUTDOWN_GRACE_MS`]) a TCG guest meets.
pub fn pool_extra(kind: &str) -> &'static str {
    match kind {
        "vm" => "memory_mb = 256\nboot_timeout_ms = 300000\nshutdown_grace_ms = 120000\n",
        _ => "",
    }
}

pub struct Up {
    child: Child,
    pub rpc: SocketAddr,
    pub http: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
    config: std::path::PathBuf,
}

fn addr_after(line: &str, prefix: &str) -> Option<SocketAddr> {
    line.strip_prefix(prefix)?.trim().parse().ok()
}

impl Up {
    /// Writes `config` to a file and runs `ebb up` on it.
    pub fn start(name: &str, config: &str) -> Up {
        Up::spawn(name, config, false)
    }

    /// [`Up::start`] in a process group of its own, as a shell with job
    /// control runs a foreground command: [`Up::interrupt_group`] then
    /// stands for a Ctrl-C at the terminal, which reaches every process of
    /// the group.
    pub fn start_as_terminal_job(name: &str, config: &str) -> Up {
        Up::spawn(name, config, true)
    }

    fn spawn(name: &str, config: &str, own_group: bool) -> Up {
        use std::os::unix::process::CommandExt;
        let path = std::env::temp_dir().join(format!("ebb-up-{name}-{}.toml", std::process::id()));
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ebb"));
        cmd.arg("up")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if own_group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .expect("the ebb binary was built by cargo for this test");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                let (mut rpc, mut http, mut sent) = (None, None, false);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    rpc = rpc.or(addr_after(&line, "gateway listening on "));
                    http = http.or(addr_after(&line, "http listening on "));
                    lines.lock().unwrap().push(line);
                    if let (Some(r), Some(h), false) = (rpc, http, sent) {
                        let _ = tx.send((r, h));
                        sent = true;
                    }
                }
            });
        }
        let (rpc, http) = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(a) => a,
            Err(_) => panic!(
                "ebb up printed no addresses; output: {:?}",
                lines.lock().unwrap()
            ),
        };
        Up {
            child,
            rpc,
            http,
            lines,
            config: path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGINT to the process group `ebb up` leads (see
    /// [`Up::start_as_terminal_job`]): what a Ctrl-C at its terminal sends.
    pub fn interrupt_group(&self) {
        // SAFETY: kill(2) has no memory preconditions; the group is the one
        // our child leads, and the child has not been waited for.
        let rc = unsafe { libc::kill(-(self.child.id() as i32), libc::SIGINT) };
        assert_eq!(rc, 0, "SIGINT delivered to the group");
    }

    /// Waits for `ebb up` to exit on its own (after a signal sent
    /// elsewhere); panics if it does not, or if it fails.
    pub fn wait_exit(&mut self) -> Vec<String> {
        let status = self.wait_status();
        assert!(status.success(), "ebb up exited with {status}");
        self.output()
    }

    /// Waits for `ebb up` to exit on its own and returns how it ended;
    /// panics if it does not.
    pub fn wait_status(&mut self) -> std::process::ExitStatus {
        for _ in 0..SHUTDOWN_POLLS {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("ebb up did not exit; output {:?}", self.output());
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn status(&self) -> Value {
        status(self.http)
    }

    /// Polls `/status` until `pred` holds; panics naming `what` if it never does.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_until_at(self.http, what, pred)
    }

    /// [`Up::wait_until`] for a `/status` served at `addr` (the admin
    /// address, when the config moves it there).
    pub fn wait_until_at(
        &self,
        addr: SocketAddr,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        poll_status(addr, pred).unwrap_or_else(|| {
            panic!(
                "never saw {what}; last status {}; output {:?}",
                status(addr),
                self.output()
            )
        })
    }

    /// The address `ebb up` printed after `prefix` (as in `admin listening
    /// on `), waiting for the line.
    pub fn printed_addr(&self, prefix: &str) -> SocketAddr {
        for _ in 0..MAX_POLLS {
            if let Some(a) = self.output().iter().find_map(|l| addr_after(l, prefix)) {
                return a;
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!("no {prefix:?} line printed: {:?}", self.output());
    }

    /// Waits until `n` nodes are ready and none is booting or draining.
    pub fn wait_ready(&self, n: usize) -> Value {
        self.wait_until(&format!("{n} ready nodes"), |s| {
            let live = live_nodes(s);
            live.len() == n && live.iter().all(|x| x["state"] == "ready")
        })
    }

    /// Waits until the one node is ready, within [`BOOT_WAIT`]: unlike
    /// [`Up::wait_ready`], long enough for a VM to boot.
    pub fn wait_booted(&self) -> Value {
        let polls = BOOT_WAIT.as_millis() / BOOT_POLL.as_millis();
        for _ in 0..polls {
            let s = self.status();
            let live = live_nodes(&s);
            if live.len() == 1 && live[0]["state"] == "ready" {
                return s;
            }
            std::thread::sleep(BOOT_POLL);
        }
        panic!(
            "no node ready within {BOOT_WAIT:?}; status {}; output {:?}",
            self.status(),
            self.output()
        )
    }

    /// Waits for the pool's first node and checks that the gateway is
    /// served through it over HTTP and RPC (`Demo.incr` of `k` gives 1, then
    /// 2), so the gateway holds whatever that node demands of its callers.
    /// Returns the node's address, for calls that go around the gateway.
    pub fn first_node_serving_the_gateway(&self, label: &str) -> String {
        let status = self.wait_booted();
        let node = live_nodes(&status)[0]["address"]
            .as_str()
            .unwrap()
            .to_owned();
        let (code, body, _) = self.post("/rpc/Demo/incr", r#"{"key":"k"}"#, &[]);
        assert_eq!(
            (code, body.clone()),
            (200, serde_json::json!({"Ok": 1})),
            "{label}: {body}"
        );
        let through = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["call", "--addr", &self.rpc.to_string()])
            .args(["Demo.incr", r#"{"key":"k"}"#])
            .output()
            .unwrap();
        assert!(
            through.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&through.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&through.stdout).trim(),
            r#"{"Ok":2}"#,
            "{label}"
        );
        node
    }

    pub fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value, String) {
        http(self.http, "POST", path, body, headers)
    }

    /// Process ids of the node processes (children of `ebb up`).
    pub fn node_pids(&self) -> Vec<u32> {
        children_of(self.child.id())
    }

    /// SIGTERM, then waits for the exit; returns the output. Panics if it
    /// does not exit or leaves a node process behind.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id();
        let nodes = children_of(pid);
        // SAFETY: kill has no memory preconditions; the pid is our child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        for _ in 0..SHUTDOWN_POLLS {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "ebb up exited with {status}");
                let left: Vec<u32> = nodes.into_iter().filter(|p| alive(*p)).collect();
                assert!(left.is_empty(), "node processes left behind: {left:?}");
                return self.output();
            }
            std::thread::sleep(POLL_PAUSE);
        }
        panic!(
            "ebb up did not exit after SIGTERM; output {:?}",
            self.output()
        );
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let nodes = children_of(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in nodes {
            // SAFETY: as above; a leftover node of a failed test.
            unsafe { libc::kill(p as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(&self.config);
    }
}

/// `GET /status` at `addr`, which must answer 200.
pub fn status(addr: SocketAddr) -> Value {
    let (code, body, _) = http(addr, "GET", "/status", "", &[]);
    assert_eq!(code, 200, "{body}");
    body
}

/// Polls `/status` at `addr` until `pred` holds and returns that status;
/// `None` if it never does within the polls.
pub fn poll_status(addr: SocketAddr, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    for _ in 0..MAX_POLLS {
        let s = status(addr);
        if pred(&s) {
            return Some(s);
        }
        std::thread::sleep(POLL_PAUSE);
    }
    None
}

/// Whether any node in `status` satisfies `pred`.
pub fn any_node(status: &Value, pred: impl Fn(&Value) -> bool) -> bool {
    status["nodes"].as_array().unwrap().iter().any(pred)
}

/// The value of the sample `series` (a metric name with its labels, as in
/// `ebb_gateway_hedges_total` or `ebb_x_total{ingress="rpc"}`) in the
/// Prometheus text `/metrics` at `addr` serves.
pub fn metric(addr: SocketAddr, series: &str) -> u64 {
    let (_, body, _) = http(addr, "GET", "/metrics", "", &[]);
    let text = body.as_str().unwrap().to_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series).filter(|v| v.starts_with(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {text}"))
}

pub fn live_nodes(status: &Value) -> Vec<Value> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] != "gone")
        .cloned()
        .collect()
}

pub fn gone_nodes(status: &Value) -> Vec<Value> {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["state"] == "gone")
        .cloned()
        .collect()
}

pub fn alive(pid: u32) -> bool {
    // A zombie still has a /proc entry; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

/// Processes whose parent is `parent`, from /proc.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != Some("Z") {
            out.push(pid);
        }
    }
    out
}

/// One HTTP/1.1 request on a fresh connection; returns the status, the body
/// as JSON (or a JSON string if it is not JSON) and the raw head.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, Value, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (code, json, head.to_owned())
}
