//! `ebb vm probe`: the guest kernel, the accelerator ebb would use, and
//! why, read from the same inputs the choice is made from, so a slow VM
//! can be explained without reading the source.

use ebb_node::vm::accel::{host_tsc_khz, kvm_runs_a_guest};
use ebb_node::vm::image::VmImage;

/// Prints the guest kernel, the accelerator and why it was chosen; with
/// `fresh`, boots a KVM test guest first.
pub(super) fn probe(fresh: bool) -> anyhow::Result<()> {
    let image = VmImage::prepare(&[])?;
    println!(
        "kernel: {} ({})",
        image.kernel.release,
        image.kernel.vmlinuz.display()
    );
    println!("base initramfs: {}", image.base.display());
    match host_tsc_khz() {
        Some(khz) => println!("host TSC kHz (passed to TCG guests): {khz}"),
        None => println!(
            "host TSC kHz: unknown (no `cpu MHz` in /proc/cpuinfo; TCG guests calibrate their clock themselves, which can take long)"
        ),
    }
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
