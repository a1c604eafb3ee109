//! `ebb info`: what this build is and what this machine can run.

use std::path::Path;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints the version, the cores this process may use, whether /dev/kvm exists\n(VM nodes: without it guests are emulated, several times slower) and whether\nthe cgroup v1 memory controller is mounted. `ebb vm probe` says which VM\naccelerator is used and why. Example:\n  ebb info"
)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    println!("ebb {}", env!("CARGO_PKG_VERSION"));
    println!(
        "cpus: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let kvm = Path::new("/dev/kvm").exists();
    println!("/dev/kvm present: {kvm}");
    let v1 = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    println!("cgroup v1 memory controller: {v1}");
    Ok(())
}
