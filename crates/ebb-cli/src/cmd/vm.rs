//! `ebb vm`: boot, snapshot, restore and migrate QEMU microVM nodes, run a
//! command in a VM, and check what this machine supports. Every figure it
//! prints is measured by the run that prints it.

use anyhow::{Context, bail};
use ebb_node::sandbox::{Limits, Outcome, SandboxSpec};
use ebb_node::vm::accel::{host_tsc_khz, kvm_runs_a_guest};
use ebb_node::vm::image::VmImage;
use ebb_node::vm::initramfs::{compose, overlay_script};
use ebb_node::vm::kernel::{fetch, locate_or_fetch};
use ebb_node::vm::migrate::{Snapshot, live_migrate, restore};
use ebb_node::vm::sandbox::{DEFAULT_RUN_TIMEOUT_MS, MAX_CPUS, MIN_MEMORY_MB, SandboxOptions};
use ebb_node::vm::{DEFAULT_MEMORY_MB, GUEST_PORT, Machine, MachineSpec, run_sandboxed};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Show the guest kernel, the accelerator ebb would use and why.
    #[command(after_help = "Examples:\n  ebb vm probe\n  ebb vm probe --fresh")]
    Probe {
        /// Boot a KVM test guest now instead of trusting the cached verdict.
        #[arg(long)]
        fresh: bool,
    },
    /// Download Debian's cloud kernel into the cache (/var/cache/ebb or
    /// $EBB_VM_CACHE); needs root and a Debian mirror.
    #[command(after_help = "Example:\n  sudo ebb vm fetch-kernel")]
    FetchKernel,
    /// Run one command in a fresh VM and exit with its status.
    #[command(
        after_help = "Examples:\n  ebb vm run -- sh -c 'uname -r; exit 3'        # exits 3\n  ebb vm run --memory-mb 512 --cpus 2 --include /usr/bin/jq -- jq --version"
    )]
    Run {
        #[command(flatten)]
        size: Size,
        /// Host binary to copy into the guest (with its shared libraries) at
        /// its host path; repeatable.
        #[arg(long = "include", value_name = "PATH")]
        include: Vec<PathBuf>,
        /// Directory to use as the guest's root for the command (copied
        /// into guest RAM; at most half of --memory-mb).
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
        /// Kill the VM if the command has not finished by then.
        #[arg(long, default_value_t = DEFAULT_RUN_TIMEOUT_MS)]
        timeout_ms: u64,
        /// The program and its arguments, as seen inside the guest.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Boot a node VM, report its boot time and memory, optionally save a
    /// snapshot of it.
    #[command(
        after_help = "Examples:\n  ebb vm boot\n  ebb vm boot --snapshot-to /tmp/ebb-snap   # then: ebb vm restore /tmp/ebb-snap"
    )]
    Boot {
        #[command(flatten)]
        node: NodeArgs,
        /// Save the booted node into this directory (restore with `ebb vm restore DIR`).
        #[arg(long, value_name = "DIR")]
        snapshot_to: Option<PathBuf>,
        /// Keep the VM running this many seconds after reporting.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Start a node VM from a snapshot directory and report the time until it serves.
    #[command(
        after_help = "Example:\n  ebb vm restore /tmp/ebb-snap   # a directory from `ebb vm boot --snapshot-to`"
    )]
    Restore {
        /// A directory written by `ebb vm boot --snapshot-to`.
        dir: PathBuf,
        /// Keep the VM running this many seconds after reporting.
        #[arg(long, default_value_t = 0)]
        hold_secs: u64,
    },
    /// Boot a node VM, live-migrate it to a second QEMU that takes over its
    /// host port (the address does not change), and report total time,
    /// downtime and how long the address went unanswered.
    #[command(
        after_help = "Examples:\n  ebb vm migrate\n  ebb vm migrate --check \"ebb call --addr {addr} Demo.incr '{\\\"key\\\":\\\"a\\\"}'\""
    )]
    Migrate {
        #[command(flatten)]
        node: NodeArgs,
        /// Host shell command run against the node before and after the
        /// migration, to show its state survived; `{addr}`, `{host}` and
        /// `{port}` name the node's current address. E.g.
        /// `ebb call --addr {addr} Demo.incr '{"key":"a"}'`.
        #[arg(long, value_name = "SHELL")]
        check: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
struct Size {
    /// Guest RAM in MiB (at least 64).
    #[arg(long, default_value_t = DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u32,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    #[command(flatten)]
    size: Size,
    /// Shell command the guest runs as its server, listening on port 7000
    /// (`{port}` is replaced by it). Default: this binary's
    /// `ebb node --listen 0.0.0.0:7000`.
    #[arg(long, value_name = "SHELL")]
    command: Option<String>,
    /// Host binary to copy into the guest (with its shared libraries) at
    /// its host path, for `--command` to run; repeatable.
    #[arg(long = "include", value_name = "PATH")]
    include: Vec<PathBuf>,
    /// How long the node may take to serve.
    #[arg(long, default_value_t = 60_000)]
    boot_timeout_ms: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.action {
        Action::Probe { fresh } => probe(fresh),
        Action::FetchKernel => {
            fetch()?;
            let k = locate_or_fetch()?;
            println!("kernel: {} ({})", k.release, k.vmlinuz.display());
            Ok(())
        }
        Action::Run {
            size,
            include,
            rootfs,
            timeout_ms,
            command,
        } => {
            check_size(&size)?;
            let spec = SandboxSpec {
                limits: Limits {
                    memory_mb: Some(size.memory_mb),
                    cpus: Some(f64::from(size.cpus)),
                    pids: None,
                },
                rootfs,
                command,
            };
            let opts = SandboxOptions {
                host_binaries: include,
                timeout_ms,
            };
            let outcome = run_sandboxed(&spec, &opts, &mut std::io::stdout())?;
            if let Outcome::LimitKilled(why) = &outcome {
                eprintln!("ebb: the command was killed at a limit: {why}");
            }
            std::process::exit(outcome.exit_code());
        }
        Action::Boot {
            node,
            snapshot_to,
            hold_secs,
        } => boot(&node, snapshot_to, hold_secs),
        Action::Restore { dir, hold_secs } => {
            let snap = Snapshot::load(&dir)?;
            let t0 = Instant::now();
            let mut m = restore(&snap)?;
            wait_serving(&mut m, 60_000)?;
            println!("restored_to_serving_ms: {}", t0.elapsed().as_millis());
            report_machine(&mut m)?;
            hold(hold_secs);
            Ok(())
        }
        Action::Migrate { node, check } => migrate(&node, check.as_deref()),
    }
}

fn probe(fresh: bool) -> anyhow::Result<()> {
    let image = VmImage::prepare(&[])?;
    println!(
        "kernel: {} ({})",
        image.kernel.release,
        image.kernel.vmlinuz.display()
    );
    println!("base initramfs: {}", image.base.display());
    println!("host TSC kHz (passed to TCG guests): {:?}", host_tsc_khz());
    if fresh {
        let ok = kvm_runs_a_guest(&image.kernel.vmlinuz, &image.base)?;
        println!("kvm runs a guest: {ok}");
    }
    println!("accelerator: {}", image.accel.as_str());
    println!("why: {}", accel_reason(image.accel));
    Ok(())
}

/// Why `ebb_node::vm::accel::detect` chose `accel`, read from the same
/// inputs it reads: the environment override, `/dev/kvm`, then the
/// verdict cached for this boot by a KVM test guest.
fn accel_reason(accel: ebb_node::vm::Accel) -> String {
    use ebb_node::vm::Accel;
    if let Ok(v) = std::env::var("EBB_VM_ACCEL") {
        if Accel::parse(&v).is_some() {
            return format!("EBB_VM_ACCEL={v} is set");
        }
    }
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    let cache = ebb_node::vm::cache_dir().join("vm").join("kvm-probe");
    match (accel, kvm_opens) {
        (Accel::Kvm, _) => "a KVM test guest booted (the verdict is kept for this boot)".into(),
        (Accel::Tcg, false) => {
            "/dev/kvm cannot be opened for reading and writing (no KVM here, or not root): \
             guests are emulated (TCG), several times slower to boot"
                .into()
        }
        (Accel::Tcg, true) => format!(
            "/dev/kvm opens but a KVM test guest did not boot (nested virtualisation \
             missing or broken); the verdict is kept for this boot in {} (`ebb vm probe \
             --fresh` tries again; EBB_VM_ACCEL=kvm|tcg overrides it)",
            cache.display()
        ),
    }
}

/// Builds the node image and its machine spec from the CLI's node options.
fn node_spec(node: &NodeArgs, dir: &std::path::Path) -> anyhow::Result<MachineSpec> {
    let (binaries, command) = match &node.command {
        Some(c) => (
            node.include.clone(),
            vec![
                "sh".to_owned(),
                "-c".to_owned(),
                c.replace("{port}", &GUEST_PORT.to_string()),
            ],
        ),
        None => {
            let exe =
                std::env::current_exe().context("locating the ebb binary to put in the guest")?;
            let cmd = vec![
                exe.to_string_lossy().into_owned(),
                "node".into(),
                "--listen".into(),
                format!("0.0.0.0:{GUEST_PORT}"),
            ];
            let mut binaries = node.include.clone();
            binaries.push(exe);
            (binaries, cmd)
        }
    };
    check_size(&node.size)?;
    let image = VmImage::prepare(&binaries)?;
    std::fs::create_dir_all(dir)?;
    let initrd = dir.join("node.cpio");
    compose(&image.base, &overlay_script("serve", &command)?, &initrd)?;
    Ok(MachineSpec {
        vmlinuz: image.kernel.vmlinuz,
        initrd,
        accel: image.accel,
        memory_mb: node.size.memory_mb,
        cpus: node.size.cpus,
        forward_port: true,
        incoming: None,
    })
}

fn check_size(size: &Size) -> anyhow::Result<()> {
    if size.memory_mb < MIN_MEMORY_MB {
        bail!(
            "--memory-mb {} is too small: a VM needs at least {MIN_MEMORY_MB}",
            size.memory_mb
        );
    }
    if size.cpus == 0 || size.cpus > MAX_CPUS {
        bail!(
            "--cpus {} is out of range: accepted 1..={MAX_CPUS}",
            size.cpus
        );
    }
    Ok(())
}

/// This command's scratch directory, removed when dropped (also on errors).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Self {
        Self(std::env::temp_dir().join(format!("ebb-vm-cli-{}", std::process::id())))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Says on stderr what the next seconds are spent on: a cold boot takes
/// seconds under KVM and longer emulated, with nothing else printed until
/// the node serves.
fn booting(spec: &MachineSpec, timeout_ms: u64) {
    eprintln!(
        "booting a node VM ({}; waiting up to {} s for it to serve, --boot-timeout-ms)...",
        spec.accel.as_str(),
        timeout_ms / 1000
    );
}

fn boot(node: &NodeArgs, snapshot_to: Option<PathBuf>, hold_secs: u64) -> anyhow::Result<()> {
    let dir = WorkDir::new();
    let spec = node_spec(node, &dir.0)?;
    println!("accelerator: {}", spec.accel.as_str());
    booting(&spec, node.boot_timeout_ms);
    let mut m = Machine::spawn(&spec)?;
    let took = m.wait_port_answers(Duration::from_millis(node.boot_timeout_ms))?;
    println!("cold_boot_to_serving_ms: {}", took.as_millis());
    report_machine(&mut m)?;
    if let Some(to) = snapshot_to {
        let t0 = Instant::now();
        let snap = Snapshot::save_dir(&mut m, &to)?;
        println!(
            "snapshot: {} ({} bytes, saved in {} ms)",
            to.display(),
            snap.size_bytes,
            t0.elapsed().as_millis()
        );
        m.qmp().cont()?;
    }
    hold(hold_secs);
    drop(m);
    Ok(())
}

fn migrate(node: &NodeArgs, check: Option<&str>) -> anyhow::Result<()> {
    let dir = WorkDir::new();
    let spec = node_spec(node, &dir.0)?;
    println!("accelerator: {}", spec.accel.as_str());
    booting(&spec, node.boot_timeout_ms);
    let mut src = Machine::spawn(&spec)?;
    src.wait_port_answers(Duration::from_millis(node.boot_timeout_ms))?;
    println!("source: {}", addr(&src));
    if let Some(c) = check {
        run_check("before", c, &src)?;
    }
    let before = src.host_addr();
    let t0 = Instant::now();
    let (mut dst, rep) = live_migrate(&mut src)?;
    drop(src);
    wait_serving(&mut dst, node.boot_timeout_ms)?;
    if dst.host_addr() != before {
        bail!(
            "the node moved from {} to {}: its address should not change",
            show_addr(before),
            addr(&dst)
        );
    }
    println!("target: {} (address unchanged)", addr(&dst));
    println!("migration_total_ms: {}", rep.total_time_ms);
    println!("migration_downtime_ms: {}", rep.downtime_ms);
    match rep.address_unreachable_ms {
        Some(ms) => println!("address_unreachable_ms: {ms}"),
        None => println!("address_unreachable_ms: - (QEMU reported no stop)"),
    }
    println!("migration_ram_bytes: {}", rep.ram_transferred_bytes);
    println!("migrate_to_target_serving_ms: {}", t0.elapsed().as_millis());
    if let Some(c) = check {
        run_check("after", c, &dst)?;
    }
    drop(dst);
    Ok(())
}

/// Runs the user's `--check` command against `m`'s address and prints its output.
fn run_check(when: &str, check: &str, m: &Machine) -> anyhow::Result<()> {
    let a = m.host_addr().context("the node has no forwarded address")?;
    let cmd = check
        .replace("{addr}", &a.to_string())
        .replace("{host}", &a.ip().to_string())
        .replace("{port}", &a.port().to_string());
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .with_context(|| format!("running --check {cmd:?}"))?;
    let mut shown = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        shown.push_str(&format!(
            " [stderr: {}]",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    println!("check_{when}: {shown} ({})", out.status);
    Ok(())
}

fn wait_serving(m: &mut Machine, timeout_ms: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    while !m.serving() {
        if Instant::now() >= deadline {
            bail!("the VM did not serve within {timeout_ms} ms");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn addr(m: &Machine) -> String {
    show_addr(m.host_addr())
}

fn show_addr(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
}

fn report_machine(m: &mut Machine) -> anyhow::Result<()> {
    println!("node address: {}", addr(m));
    println!("qemu pid: {}", m.pid());
    let mem = m.qmp().query_memory_size_summary()?;
    println!("guest memory: {} MiB", mem.base_memory_bytes >> 20);
    println!("qemu_rss_kib: {}", m.rss_kib().unwrap_or(0));
    Ok(())
}

fn hold(secs: u64) {
    if secs > 0 {
        println!("holding for {secs} s (Ctrl-C to end)");
        std::thread::sleep(Duration::from_secs(secs));
    }
}
