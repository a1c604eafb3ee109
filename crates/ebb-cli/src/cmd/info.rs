//! `ebb info`: what this build is and what this machine can run.

use std::path::Path;

use ebb_node::container::{CgroupHierarchy, detect_cgroups};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Prints the version, the cores this process may use, whether /dev/kvm exists\n(VM nodes: without it guests are emulated, several times slower; `ebb vm\nprobe` says whether KVM really runs a guest here, and which accelerator is\nused), which cgroups container nodes get their limits from, and whether this\nprocess runs as root (container and VM nodes need it). Example:\n  ebb info"
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
    if Path::new("/dev/kvm").exists() {
        println!("/dev/kvm: present (whether KVM runs guests here: `ebb vm probe`)");
    } else {
        println!("/dev/kvm: absent (VM nodes are emulated with TCG, several times slower)");
    }
    match detect_cgroups() {
        Ok(CgroupHierarchy::V2(at)) => {
            println!("cgroups for containers: v2 at {}", at.display());
        }
        Ok(CgroupHierarchy::V1 { memory, .. }) => println!(
            "cgroups for containers: v1 (memory at {}, with cpu and pids)",
            memory.display()
        ),
        Err(e) => println!("cgroups for containers: none usable ({e})"),
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    println!(
        "root: {}",
        if root {
            "yes"
        } else {
            "no (container and VM nodes need it)"
        }
    );
    Ok(())
}
