//! `ebb info`: what this build is and what this machine can run.

use std::path::Path;

#[derive(clap::Args, Debug)]
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
