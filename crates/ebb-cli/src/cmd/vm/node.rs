//! A node VM made from the CLI's options, and what the actions share about
//! it: its size checked before anything boots, a scratch directory that
//! goes with the command, the waits for it to serve, and the lines that
//! report it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ebb_node::vm::image::VmImage;
use ebb_node::vm::initramfs::{compose, overlay_script};
use ebb_node::vm::sandbox::{MAX_CPUS, MIN_MEMORY_MB};
use ebb_node::vm::{DEFAULT_MEMORY_MB, GUEST_PORT, Machine, MachineSpec};

#[derive(clap::Args, Debug)]
pub(super) struct Size {
    /// Guest RAM in MiB (at least 64).
    #[arg(long, default_value_t = DEFAULT_MEMORY_MB)]
    pub(super) memory_mb: u64,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    pub(super) cpus: u32,
}

#[derive(clap::Args, Debug)]
pub(super) struct NodeArgs {
    #[command(flatten)]
    pub(super) size: Size,
    /// Shell command the guest runs as its server, listening on port 7000
    /// (`{port}` is replaced by it). Default: this binary's
    /// `ebb node --listen 0.0.0.0:7000`.
    #[arg(long, value_name = "SHELL")]
    pub(super) command: Option<String>,
    /// Host binary to copy into the guest (with its shared libraries) at
    /// its host path, for `--command` to run; repeatable.
    #[arg(long = "include", value_name = "PATH")]
    pub(super) include: Vec<PathBuf>,
    /// How long the node may take from launch to serving, in ms (a cold
    /// boot without KVM takes tens of seconds on a loaded host).
    #[arg(long, default_value_t = ebb_node::vm::provider::DEFAULT_BOOT_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..=ebb_node::vm::provider::MAX_BOOT_TIMEOUT_MS))]
    pub(super) boot_timeout_ms: u64,
}

/// Builds the node image and its machine spec from the CLI's node options.
pub(super) fn node_spec(node: &NodeArgs, dir: &std::path::Path) -> anyhow::Result<MachineSpec> {
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
        max_cpus: node.size.cpus,
        forward_port: true,
        incoming: None,
    })
}

pub(super) fn check_size(size: &Size) -> anyhow::Result<()> {
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
pub(super) struct WorkDir(pub(super) PathBuf);

impl WorkDir {
    pub(super) fn new() -> Self {
        Self(ebb_node::vm::SCRATCH.path("cli", ""))
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
pub(super) fn booting(spec: &MachineSpec, timeout_ms: u64) {
    eprintln!(
        "booting a node VM ({}; waiting up to {} s for it to serve, --boot-timeout-ms)...",
        spec.accel.as_str(),
        timeout_ms / 1000
    );
}

pub(super) fn wait_serving(m: &mut Machine, timeout_ms: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    while !m.serving() {
        if Instant::now() >= deadline {
            bail!("the VM did not serve within {timeout_ms} ms");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub(super) fn addr(m: &Machine) -> String {
    show_addr(m.host_addr())
}

pub(super) fn show_addr(a: Option<std::net::SocketAddr>) -> String {
    a.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
}

pub(super) fn report_machine(m: &mut Machine) -> anyhow::Result<()> {
    println!("node address: {}", addr(m));
    println!("qemu pid: {}", m.pid());
    let mem = m.qmp().query_memory_size_summary()?;
    println!("guest memory: {} MiB", mem.base_memory_bytes >> 20);
    println!("qemu_rss_kib: {}", m.rss_kib().unwrap_or(0));
    Ok(())
}

pub(super) fn hold(secs: u64) {
    if secs > 0 {
        println!("holding for {secs} s (Ctrl-C to end)");
        std::thread::sleep(Duration::from_secs(secs));
    }
}
