//! `ebb sandbox`: run one program isolated in a container or a VM.
//!
//! `run` forks (containers) and so must happen before any async runtime
//! exists; this command never starts one.

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use ebb_node::container::{self, ContainerConfig, NetMode};
use ebb_node::sandbox::{Limits, Outcome, SandboxSpec};
use std::path::PathBuf;

/// Most MiB `--memory-mb` takes (16 TiB): the limit in bytes must fit the
/// kernel's signed 64-bit counter, and no machine ebb runs on has more.
const MAX_MEMORY_MB: u64 = 1 << 24;
/// Most processes `--pids` takes: Linux's own ceiling on process ids
/// (`PID_MAX_LIMIT`), beyond which the cgroup refuses the value.
const MAX_PIDS: u64 = 4_194_304;
/// Most cores `--cpus` takes for a container, bounding the CFS quota
/// written to the cgroup.
const MAX_CONTAINER_CPUS: f64 = 1024.0;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Run CMD isolated; exit with its status. A limit it hits is named on stderr.
    #[command(
        after_help = "Containers need root. Examples:\n  ebb sandbox run -- /bin/sh -c 'hostname; ps; ip addr'\n  ebb sandbox run --memory-mb 64 --cpus 0.5 --pids 32 -- /bin/sh -c 'echo limited'\n  ebb sandbox run --net none --rootfs /srv/myroot -- /usr/bin/myserver\n  ebb sandbox run --file node.token:/etc/ebb/node.token -- cat /etc/ebb/node.token\n  ebb sandbox run --kind vm -- sh -c 'uname -r; exit 3'   # exits 3\n  ebb sandbox run --kind vm --file node.token:/etc/ebb/node.token -- cat /etc/ebb/node.token\n\nWhat each kind isolates, and what it costs: docs/isolation.md."
    )]
    Run(RunArgs),
    /// Remove what containers killed with `kill -9` left behind (cgroups,
    /// veths, overlay layers). Every `run` does this first anyway.
    #[command(after_help = "Needs root. Example:\n  ebb sandbox sweep")]
    Sweep,
    /// Try one system call and say whether it was allowed (shows the
    /// container's seccomp filter at work). NAME: keyctl, unshare or clone-newuts.
    #[command(hide = true)]
    ProbeSyscall { name: String },
    /// Measure how long a container node takes from start to its first
    /// accepted TCP connection (busybox httpd inside, reached over the veth).
    #[command(after_help = "Needs root. Example:\n  ebb sandbox bench-ready --runs 10")]
    BenchReady {
        /// Nodes to start, one after another.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
        runs: u32,
    },
    /// Allocate and touch MB mebibytes, then exit 0 (for memory-limit tests).
    #[command(hide = true)]
    Hog {
        #[arg(long)]
        mb: u64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// Linux namespaces + cgroups + overlayfs + seccomp (needs root).
    Container,
    /// A QEMU virtual machine.
    Vm,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Net {
    /// A veth pair to the host on a private /30 of 10.213.0.0/16.
    Veth,
    /// Loopback only.
    None,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Isolation kind.
    #[arg(long, value_enum, default_value = "container")]
    kind: Kind,
    /// Memory limit in MiB (4 to 16777216; a VM's RAM, at least 64);
    /// exceeding it kills the sandbox's largest process, and the sandbox only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(4..=MAX_MEMORY_MB))]
    memory_mb: Option<u64>,
    /// CPU quota in cores, more than 0 and at most 1024, e.g. 0.5 or 2 (a VM
    /// gets it rounded up to whole vCPUs, at most 64).
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<f64>,
    /// Most processes and threads alive at once inside (1 to 4194304;
    /// containers only).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_PIDS))]
    pids: Option<u64>,
    /// Directory to use as the read-only base layer instead of the one ebb
    /// builds (the ebb binary, its libraries and a static busybox).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Network of a container [default: veth] (containers only: a VM has
    /// QEMU's user-mode network).
    #[arg(long, value_enum)]
    net: Option<Net>,
    /// Hostname inside (default: ebb-c<slot>; containers only).
    #[arg(long)]
    hostname: Option<String>,
    /// Write "<sandbox ip> <host ip>" here once the network is up
    /// (containers only).
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// A host address the container gets a route to over its veth (one
    /// that `ebb demo` or `ebb up` put on the host for the origin store;
    /// containers only).
    #[arg(long, value_name = "IPV4")]
    reach: Option<std::net::Ipv4Addr>,
    /// Copy the host file HOST (at most 1 MiB) to the absolute path
    /// INSIDE, readable by root only, before the command starts; with
    /// --rootfs, INSIDE is within that root (repeatable).
    #[arg(long = "file", value_name = "HOST:INSIDE")]
    files: Vec<ebb_node::sandbox::FileIn>,
    /// How long the guest may take to boot and start the command, in ms
    /// [default: 60000] (VMs only; a cold boot without KVM takes tens of
    /// seconds on a loaded host).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=ebb_node::vm::provider::MAX_BOOT_TIMEOUT_MS))]
    boot_timeout_ms: Option<u64>,
    /// Program and its arguments, as seen inside.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Run(a) => {
            let code = run_sandbox(a)?;
            std::process::exit(code)
        }
        Action::Sweep => {
            let n = container::sweep();
            println!("swept {n} leftover container(s)");
            Ok(())
        }
        Action::ProbeSyscall { name } => probe_syscall(&name),
        Action::BenchReady { runs } => bench_ready(runs),
        Action::Hog { mb } => hog(mb),
    }
}

fn run_sandbox(a: RunArgs) -> anyhow::Result<i32> {
    if let Some(c) = a.cpus {
        if !(c.is_finite() && c > 0.0 && c <= MAX_CONTAINER_CPUS) {
            bail!(
                "--cpus {c:?}: expected a number of cores more than 0 and at most \
                 {MAX_CONTAINER_CPUS} (64 for a VM), e.g. 0.5 or 2"
            );
        }
    }
    if let Some(dir) = &a.rootfs {
        if !dir.is_dir() {
            bail!(
                "--rootfs {}: not a directory; give a directory holding a root file system \
                 with the command in it (or omit --rootfs for ebb's own base layer)",
                dir.display()
            );
        }
    }
    // Read once here so a missing or oversized file is named with its flag
    // before anything starts; the sandbox reads it again as it starts.
    for f in &a.files {
        f.read().map_err(|e| {
            anyhow::anyhow!("--file {}:{}: {e}", f.host.display(), f.inside.display())
        })?;
    }
    if a.kind == Kind::Vm {
        check_vm_flags(&a)?;
    } else if let Some(ms) = a.boot_timeout_ms {
        bail!("--boot-timeout-ms {ms} is for --kind vm only: a container has no boot to wait for");
    }
    let spec = SandboxSpec {
        limits: Limits {
            memory_mb: a.memory_mb,
            cpus: a.cpus,
            pids: a.pids,
        },
        rootfs: a.rootfs,
        command: a.command,
    };
    // The signal ebb itself was sent and passed on: a command that died of
    // it was stopped as asked, which is no news to whoever sent it.
    let mut forwarded = None;
    let outcome = match a.kind {
        Kind::Container => {
            let net = match a.net.unwrap_or(Net::Veth) {
                Net::Veth => NetMode::Veth,
                Net::None => NetMode::None,
            };
            if let (NetMode::None, Some(ip)) = (net, a.reach) {
                bail!(
                    "--reach {ip} needs --net veth: with --net none the container has loopback only"
                );
            }
            let cfg = ContainerConfig {
                spec,
                net,
                hostname: a.hostname,
                addr_file: a.addr_file,
                reach: a.reach,
                files: a.files,
            };
            let report = container::run(&cfg).context("container failed")?;
            for note in &report.notes {
                eprintln!("ebb sandbox: {note}");
            }
            forwarded = report.forwarded;
            report.outcome
        }
        Kind::Vm => {
            let defaults = ebb_node::vm::sandbox::SandboxOptions::default();
            let opts = ebb_node::vm::sandbox::SandboxOptions {
                files: a.files,
                boot_timeout_ms: a.boot_timeout_ms.unwrap_or(defaults.boot_timeout_ms),
                ..defaults
            };
            ebb_node::vm::run_sandboxed(&spec, &opts, &mut std::io::stdout())
                .context("virtual machine failed")?
        }
    };
    match &outcome {
        Outcome::LimitKilled(why) => eprintln!("ebb sandbox: killed: {why}"),
        Outcome::Signaled(sig) if forwarded == Some(*sig) => {}
        Outcome::Signaled(sig) => eprintln!("ebb sandbox: command killed by signal {sig}"),
        Outcome::Exited(_) => {}
    }
    Ok(outcome.exit_code())
}

/// Refuses, by flag, what a VM sandbox cannot apply, before anything boots.
fn check_vm_flags(a: &RunArgs) -> anyhow::Result<()> {
    use ebb_node::vm::sandbox::{MAX_CPUS, MIN_MEMORY_MB};
    const ACCEPTED: &str =
        "accepted with --kind vm: --memory-mb, --cpus, --rootfs, --file, --boot-timeout-ms";
    let container_only = [
        ("--net", a.net.is_some()),
        ("--hostname", a.hostname.is_some()),
        ("--addr-file", a.addr_file.is_some()),
        ("--reach", a.reach.is_some()),
    ];
    if let Some((flag, _)) = container_only.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} is for --kind container only: a VM has QEMU's user-mode network and its \
             own hostname ({ACCEPTED})"
        );
    }
    if let Some(p) = a.pids {
        bail!(
            "--pids {p} is for --kind container only: a VM's kernel has its own process \
             table; bound the guest with --memory-mb instead ({ACCEPTED})"
        );
    }
    if let Some(mb) = a.memory_mb.filter(|&mb| mb < MIN_MEMORY_MB) {
        bail!("--memory-mb {mb} is too small for a VM: accepted {MIN_MEMORY_MB} or more");
    }
    if let Some(c) = a.cpus.filter(|&c| c > f64::from(MAX_CPUS)) {
        bail!("--cpus {c} is too many for a VM: accepted more than 0, at most {MAX_CPUS}");
    }
    Ok(())
}

fn probe_syscall(name: &str) -> anyhow::Result<()> {
    // SAFETY: each call passes only integers and null pointers that the
    // kernel accepts for these operations; results are checked. The raw
    // clone has no CLONE_VM, so it behaves like fork, and its child only
    // calls _exit.
    let rc = unsafe {
        match name {
            // KEYCTL_GET_KEYRING_ID of KEY_SPEC_PROCESS_KEYRING, creating it.
            "keyctl" => libc::syscall(libc::SYS_keyctl, 0, -2, 1),
            "unshare" => libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUTS),
            // A child in a new UTS namespace that exits at once; reaped below.
            "clone-newuts" => {
                let flags = (libc::CLONE_NEWUTS | libc::SIGCHLD) as libc::c_ulong;
                let pid = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
                if pid == 0 {
                    libc::_exit(0);
                }
                if pid > 0 {
                    libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
                }
                pid
            }
            other => bail!("probe-syscall {other:?}: expected keyctl, unshare or clone-newuts"),
        }
    };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        println!("{name}: refused: {err}");
        std::process::exit(1);
    }
    println!("{name}: allowed");
    Ok(())
}

fn bench_ready(runs: u32) -> anyhow::Result<()> {
    use ebb_node::container::{ContainerProvider, ContainerProviderConfig};
    use ebb_node::provider::{NodeEvent, NodeProvider};
    /// Bound on readiness polls per node.
    const MAX_POLLS: u32 = 100_000;
    const PROBE_PAUSE_US: u64 = 200;
    let mut p = ContainerProvider::new(ContainerProviderConfig {
        ebb_exe: std::env::current_exe().context("locating the ebb binary")?,
        limits: Limits::default(),
        rootfs: None,
        command: ["/bin/httpd", "-f", "-p", "{port}", "-h", "/"]
            .map(String::from)
            .to_vec(),
        port: 8080,
        reach: None,
        files: Vec::new(),
    });
    let mut times = Vec::new();
    for i in 0..runs {
        let id = ebb_core::NodeId(i);
        let t0 = std::time::Instant::now();
        p.start(id).context("starting a container node")?;
        let mut ready = false;
        for _ in 0..MAX_POLLS {
            if p.poll_events().contains(&NodeEvent::Ready(id)) {
                ready = true;
                break;
            }
            // Leave the CPU to the starting container between probes.
            std::thread::sleep(std::time::Duration::from_micros(PROBE_PAUSE_US));
        }
        let took = t0.elapsed();
        p.stop(id)?;
        let mut gone = false;
        for _ in 0..MAX_POLLS {
            gone = p
                .poll_events()
                .iter()
                .any(|e| matches!(e, NodeEvent::Gone(g, _) if *g == id));
            if gone {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !gone {
            bail!("node {i} did not stop");
        }
        if !ready {
            bail!("node {i} never became ready");
        }
        times.push(took);
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    println!(
        "ready: median {:.2} ms, min {:.2} ms, max {:.2} ms over {runs} nodes",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    Ok(())
}

fn hog(mb: u64) -> anyhow::Result<()> {
    const MIB: usize = 1 << 20;
    let mut held: Vec<Vec<u8>> = Vec::new();
    for i in 0..mb {
        held.push(vec![1u8; MIB]);
        if i % 16 == 0 {
            eprintln!("hog: {i} MiB");
        }
    }
    println!("hog: held {} MiB", held.len());
    Ok(())
}
