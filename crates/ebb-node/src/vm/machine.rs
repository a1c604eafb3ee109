//! One QEMU `microvm` process: its command line, console (a log, and a
//! socket into the guest), QMP socket and host port forward. Dropping a
//! [`Machine`] kills QEMU and removes its files, so no test or provider can
//! leak a VM.

use super::initramfs::{CPUS_COMMAND, CPUS_MARKER, SERVING_MARKER};
use super::qmp::QmpClient;
use super::{Accel, GUEST_PORT, VmError, tail_lines};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-x86_64";
/// How long QEMU may take to open its QMP socket.
pub const QMP_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Launch attempts when the chosen host port was taken meanwhile.
const SPAWN_ATTEMPTS: u32 = 3;
/// Poll period while waiting for the console, the port or an exit.
const POLL_MS: u64 = 20;
/// How long a readiness probe waits to see whether the guest closes the
/// connection (user-mode networking accepts on the host side first and
/// closes only once the guest refuses).
const PROBE_READ_MS: u64 = 150;
/// Console lines quoted in errors.
const CONSOLE_TAIL_LINES: usize = 15;
/// The guest's one network device, as named to QEMU's monitor.
const NETDEV: &str = "n0";
/// The serial console's QEMU character device.
const CONSOLE: &str = "con";
/// Bound on handing one line to the guest's console.
const CONSOLE_WRITE_MS: u64 = 2_000;

/// What to boot and how; cloned to start a migration target with the same
/// devices.
#[derive(Clone, Debug)]
pub struct MachineSpec {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub accel: Accel,
    pub memory_mb: u64,
    /// vCPUs online when the guest boots.
    pub cpus: u32,
    /// vCPUs the machine has (`-smp`; `cpus` when lower): those beyond
    /// `cpus` stay offline, their QEMU threads asleep, until the guest
    /// onlines them ([`Machine::set_online_cpus`]). `microvm` cannot
    /// hot-plug a CPU, so a guest that may grow boots with all it may get.
    pub max_cpus: u32,
    /// Forward a fresh loopback port to [`GUEST_PORT`]. A migration target
    /// starts without one and takes over its source's port instead.
    pub forward_port: bool,
    /// `-incoming` argument (`defer`, `exec:cat FILE`), for restores and
    /// migration targets.
    pub incoming: Option<String>,
}

pub struct Machine {
    child: Child,
    dir: PathBuf,
    qmp: QmpClient,
    spec: MachineSpec,
    host_port: Option<u16>,
    started: Instant,
    /// The vCPU count the guest last said on a migration source's console:
    /// this QEMU's console starts empty, and the guest's vCPUs moved with
    /// it, so the count stays known until the guest says it here.
    carried_cpus: Option<u32>,
}

impl Machine {
    /// Starts QEMU and connects to its QMP socket. The guest may still be
    /// booting when this returns.
    ///
    /// Every QEMU ebb starts (a node, the accelerator probe, a snapshot
    /// template, a migration target) is tied to this process, whichever
    /// thread starts it ([`crate::child::spawn_tied_to_process`]): it gets
    /// SIGTERM (and shuts the guest down) when the process dies, even by
    /// SIGKILL, when `Drop` cannot run, so no VM outlives the `ebb` that
    /// started it. And it leads a process group of its own, as process and
    /// container nodes do: a Ctrl-C at the terminal reaches the owner
    /// alone, so `ebb up` drains a VM node (its calls in flight finish)
    /// before stopping it, instead of the guest dying of the SIGINT with
    /// those calls. An owner that does not catch SIGINT (`ebb vm run`)
    /// dies of it, and the parent-death signal then stops the guest.
    pub fn spawn(spec: &MachineSpec) -> Result<Self, VmError> {
        let mut attempt = 1;
        loop {
            match Self::spawn_once(spec) {
                // Another process took the port between our probe and QEMU's bind.
                Err(VmError::QemuExited { console, .. })
                    if attempt < SPAWN_ATTEMPTS && console.contains("host forwarding") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn spawn_once(spec: &MachineSpec) -> Result<Self, VmError> {
        let started = Instant::now();
        let dir = super::SCRATCH.path("m", "");
        std::fs::create_dir_all(&dir)?;
        // From here on, an error removes `dir`.
        let mut partial = Partial {
            dir: dir.clone(),
            armed: true,
        };
        let host_port = if spec.forward_port {
            Some(free_port()?)
        } else {
            None
        };
        let mut cmd = Command::new(QEMU);
        cmd.args(qemu_args(spec, &dir, host_port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("qemu.err"))?)
            .process_group(0);
        let mut child = crate::child::spawn_tied_to_process(cmd)
            .map_err(|e| VmError::NoQemu(format!("{QEMU}: {e}")))?;
        let qmp = match connect_qmp(&mut child, &dir) {
            Ok(q) => q,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        partial.armed = false;
        Ok(Self {
            child,
            dir,
            qmp,
            spec: spec.clone(),
            host_port,
            started,
            carried_cpus: None,
        })
    }

    pub fn spec(&self) -> &MachineSpec {
        &self.spec
    }

    pub fn qmp(&mut self) -> &mut QmpClient {
        &mut self.qmp
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When QEMU was launched; boot and restore times count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The loopback address forwarded to the guest's [`GUEST_PORT`].
    pub fn host_addr(&self) -> Option<SocketAddr> {
        self.host_port
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
    }

    /// Closes the forward's listening socket and returns its port, so
    /// another QEMU can take it over. Connections it already accepted stay
    /// open until this QEMU exits.
    pub fn remove_host_forward(&mut self) -> Result<Option<u16>, VmError> {
        let Some(port) = self.host_port else {
            return Ok(None);
        };
        self.qmp
            .hostfwd_remove(NETDEV, &format!("tcp:{}:{port}", Ipv4Addr::LOCALHOST))?;
        self.host_port = None;
        Ok(Some(port))
    }

    /// Forwards loopback `port` to the guest's [`GUEST_PORT`] on a running
    /// QEMU, e.g. the port a migration source just gave up.
    pub fn add_host_forward(&mut self, port: u16) -> Result<(), VmError> {
        if let Some(p) = self.host_port {
            return Err(VmError::Unsupported(format!(
                "a second forward (port {port}) on a VM already forwarding port {p}"
            )));
        }
        self.qmp.hostfwd_add(NETDEV, &forward_rule(port))?;
        self.host_port = Some(port);
        Ok(())
    }

    pub fn console(&self) -> String {
        read_lossy(&self.dir.join("console.log"))
    }

    /// Has the guest bring `n` vCPUs online (at least one, at most
    /// `max_cpus`) and the rest offline; it says how many it has once done
    /// ([`Machine::online_cpus`]). The line goes to the guest's init over
    /// the serial console, the one channel into every guest ebb boots,
    /// whatever node it runs.
    pub fn set_online_cpus(&self, n: u32) -> Result<(), VmError> {
        let n = n.min(self.spec.max_cpus.max(self.spec.cpus)).max(1);
        let path = self.dir.join("console.sock");
        let fail = |e: std::io::Error| VmError::Console(format!("{}: {e}", path.display()));
        let mut s = std::os::unix::net::UnixStream::connect(&path).map_err(fail)?;
        s.set_write_timeout(Some(Duration::from_millis(CONSOLE_WRITE_MS)))
            .map_err(fail)?;
        // Closed at once: while a client is connected QEMU sends it the
        // console's output too (the log keeps it all the same).
        s.write_all(format!("{CPUS_COMMAND} {n}\n").as_bytes())
            .map_err(fail)
    }

    /// The vCPUs the guest last said it has online, from its console (or,
    /// before it said so on this QEMU's, on its migration source's).
    pub fn online_cpus(&self) -> Option<u32> {
        online_cpus_in(&self.console()).or(self.carried_cpus)
    }

    /// Keeps the count `source` last read, for a guest that moved here
    /// from `source`.
    pub(super) fn carry_online_cpus_from(&mut self, source: &Machine) {
        self.carried_cpus = source.online_cpus();
    }

    /// QEMU's resident memory, the per-node memory cost on the host.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    }

    /// Waits for a console line containing `marker`.
    pub fn wait_console(&mut self, marker: &str, timeout: Duration) -> Result<(), VmError> {
        self.poll_until("a console marker", timeout, |m| {
            Ok(m.console().contains(marker))
        })
    }

    /// Waits until the guest accepts TCP on the forwarded port; returns the
    /// time since launch.
    pub fn wait_port_answers(&mut self, timeout: Duration) -> Result<Duration, VmError> {
        if self.host_port.is_none() {
            return Err(VmError::Unsupported(
                "waiting for a port on a VM without a forward".into(),
            ));
        }
        self.poll_until("the node port to answer", timeout, |m| Ok(m.serving()))?;
        Ok(self.started.elapsed())
    }

    /// [`Machine::wait_port_answers`] for a boot: running out of
    /// `boot_timeout_ms` is a [`VmError::BootTimeout`], which names the
    /// setting and how to raise it.
    pub fn wait_booted(&mut self, boot_timeout_ms: u64) -> Result<Duration, VmError> {
        self.wait_port_answers(Duration::from_millis(boot_timeout_ms))
            .map_err(|e| match e {
                VmError::Timeout { ms, console, .. } => VmError::BootTimeout {
                    what: "serving",
                    ms,
                    console,
                },
                other => other,
            })
    }

    /// True once the guest's server accepts connections on the forwarded
    /// port. Before the guest's network is up, user-mode networking holds
    /// host connections open unanswered, which looks like a listening
    /// server; so a booting guest must first have printed its serving
    /// marker. A restored or migrated guest had its network up when saved.
    pub fn serving(&self) -> bool {
        let Some(addr) = self.host_addr() else {
            return false;
        };
        (self.spec.incoming.is_some() || self.console().contains(SERVING_MARKER))
            && port_answers(addr)
    }

    /// QEMU's exit status if it has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits for QEMU to exit on its own (guest powered off).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                return Err(self.timeout_error("the guest to power off", timeout));
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    /// Kills QEMU now (also done on drop); for a QEMU that ignored `quit`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn poll_until(
        &mut self,
        what: &'static str,
        timeout: Duration,
        mut done: impl FnMut(&mut Self) -> Result<bool, VmError>,
    ) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self)? {
                return Ok(());
            }
            if let Some(s) = self.child.try_wait()? {
                return Err(VmError::QemuExited {
                    status: s.to_string(),
                    console: self.diagnostics(),
                });
            }
            if Instant::now() >= deadline {
                return Err(self.timeout_error(what, timeout));
            }
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }

    fn timeout_error(&self, what: &'static str, timeout: Duration) -> VmError {
        VmError::Timeout {
            what,
            ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            console: self.diagnostics(),
        }
    }

    fn diagnostics(&self) -> String {
        diagnostics(&self.dir)
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the files of a launch that failed before a `Machine` owned them.
struct Partial {
    dir: PathBuf,
    armed: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn connect_qmp(child: &mut Child, dir: &Path) -> Result<QmpClient, VmError> {
    let sock = dir.join("qmp.sock");
    let deadline = Instant::now() + Duration::from_millis(QMP_CONNECT_TIMEOUT_MS);
    loop {
        if sock.exists() {
            if let Ok(c) = QmpClient::connect(&sock) {
                return Ok(c);
            }
        }
        if let Some(s) = child.try_wait()? {
            return Err(VmError::QemuExited {
                status: s.to_string(),
                console: diagnostics(dir),
            });
        }
        if Instant::now() >= deadline {
            return Err(VmError::Timeout {
                what: "QEMU's QMP socket",
                ms: QMP_CONNECT_TIMEOUT_MS,
                console: diagnostics(dir),
            });
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

fn qemu_args(spec: &MachineSpec, dir: &Path, host_port: Option<u16>) -> Vec<String> {
    let mut cmdline = "console=ttyS0 reboot=t panic=-1 quiet loglevel=1 pci=off".to_owned();
    let vcpus = spec.max_cpus.max(spec.cpus);
    if vcpus > spec.cpus {
        cmdline.push_str(&format!(" maxcpus={}", spec.cpus));
    }
    if let Some(khz) = spec.accel.tsc_khz_hint() {
        cmdline.push_str(&format!(" tsc_early_khz={khz}"));
    }
    let netdev = match host_port {
        Some(hp) => format!("user,id={NETDEV},hostfwd={}", forward_rule(hp)),
        None => format!("user,id={NETDEV}"),
    };
    let mut a: Vec<String> = vec![
        "-machine".into(),
        format!("microvm,accel={},isa-serial=on,rtc=on", spec.accel.as_str()),
        "-m".into(),
        format!("{}M", spec.memory_mb),
        "-smp".into(),
        vcpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        spec.vmlinuz.to_string_lossy().into_owned(),
        "-initrd".into(),
        spec.initrd.to_string_lossy().into_owned(),
        "-append".into(),
        cmdline,
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", dir.join("qmp.sock").display()),
        // A socket nobody needs to hold: the log has every byte.
        "-chardev".into(),
        format!(
            "socket,id={CONSOLE},path={},server=on,wait=off,logfile={}",
            dir.join("console.sock").display(),
            dir.join("console.log").display()
        ),
        "-serial".into(),
        format!("chardev:{CONSOLE}"),
        "-netdev".into(),
        netdev,
        "-device".into(),
        // No guest announce after a migration: user-mode networking has no
        // switch to teach, and the one guest crash seen after a move (see
        // docs/isolation.md) was on that path.
        format!("virtio-net-device,netdev={NETDEV},guest_announce=off"),
    ];
    if spec.accel == Accel::Kvm {
        a.extend(["-cpu".into(), "host".into()]);
    }
    if let Some(inc) = &spec.incoming {
        a.extend(["-incoming".into(), inc.clone()]);
    }
    a
}

/// QEMU's spelling of "loopback `port` to the guest's [`GUEST_PORT`]", on
/// the command line and in `hostfwd_add` alike.
fn forward_rule(port: u16) -> String {
    format!("tcp:{}:{port}-:{GUEST_PORT}", Ipv4Addr::LOCALHOST)
}

/// A loopback port free right now. QEMU binds it a moment later; the race
/// with another process is accepted (QEMU then fails to start, loudly).
fn free_port() -> Result<u16, VmError> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// True when the guest holds a connection open or sends data; false when
/// the host side is refused or closed at once (nothing listens in the guest).
pub fn port_answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(PROBE_READ_MS)) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_millis(PROBE_READ_MS)))
        .is_err()
    {
        return false;
    }
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The count in the last `EBB-CPUS N` line of `console`.
fn online_cpus_in(console: &str) -> Option<u32> {
    console
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(CPUS_MARKER)?.trim().parse().ok())
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn diagnostics(dir: &Path) -> String {
    let mut s = tail_lines(&read_lossy(&dir.join("console.log")), CONSOLE_TAIL_LINES);
    let err = read_lossy(&dir.join("qemu.err"));
    if !err.trim().is_empty() {
        s.push_str("\nqemu stderr: ");
        s.push_str(&tail_lines(&err, CONSOLE_TAIL_LINES));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cpus: u32, max_cpus: u32) -> MachineSpec {
        MachineSpec {
            vmlinuz: "/k".into(),
            initrd: "/i".into(),
            accel: Accel::Tcg,
            memory_mb: 64,
            cpus,
            max_cpus,
            forward_port: false,
            incoming: None,
        }
    }

    fn arg_after(args: &[String], flag: &str) -> String {
        let i = args
            .iter()
            .position(|a| a == flag)
            .expect("the flag is there");
        args[i + 1].clone()
    }

    #[test]
    fn a_guest_that_may_grow_boots_all_its_vcpus_with_only_cpus_online() {
        let args = qemu_args(&spec(1, 4), Path::new("/d"), None);
        assert_eq!(arg_after(&args, "-smp"), "4");
        assert!(
            arg_after(&args, "-append").contains(" maxcpus=1"),
            "{args:?}"
        );
        let args = qemu_args(&spec(2, 2), Path::new("/d"), None);
        assert_eq!(arg_after(&args, "-smp"), "2");
        assert!(!arg_after(&args, "-append").contains("maxcpus"), "{args:?}");
    }

    #[test]
    fn the_guests_last_word_on_its_cpus_counts() {
        let console = "EBB-CPUS 1\nEBB-SERVING\nnode listening\r\nEBB-CPUS 3\r\nEBB-CPUS x\n";
        assert_eq!(online_cpus_in(console), Some(3));
        assert_eq!(online_cpus_in("EBB-SERVING\n"), None);
    }
}
