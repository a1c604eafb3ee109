//! `ebb vm boot` and `ebb vm restore`: a node VM from cold or from a
//! snapshot, timed until it serves, so the two start paths can be compared
//! on this machine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ebb_node::vm::Machine;
use ebb_node::vm::migrate::{Snapshot, restore as restore_snapshot};

use super::node::{NodeArgs, WorkDir, booting, hold, node_spec, report_machine, wait_serving};

/// Cold-boots a node VM, reports the time until it serves and what it
/// uses, and saves it to `snapshot_to` if given.
pub(super) fn boot(
    node: &NodeArgs,
    snapshot_to: Option<PathBuf>,
    hold_secs: u64,
) -> anyhow::Result<()> {
    let dir = WorkDir::new();
    let spec = node_spec(node, &dir.0)?;
    println!("accelerator: {}", spec.accel.as_str());
    booting(&spec, node.boot_timeout_ms);
    // QEMU dies with this process, even by SIGKILL.
    let mut m = Machine::spawn(&spec)?;
    let took = m.wait_booted(node.boot_timeout_ms)?;
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

/// Starts a node VM from the snapshot in `dir` and reports the time until
/// it serves.
pub(super) fn restore(dir: &Path, hold_secs: u64) -> anyhow::Result<()> {
    let snap = Snapshot::load(dir)?;
    let t0 = Instant::now();
    let mut m = restore_snapshot(&snap)?;
    wait_serving(&mut m, 60_000)?;
    println!("restored_to_serving_ms: {}", t0.elapsed().as_millis());
    report_machine(&mut m)?;
    hold(hold_secs);
    Ok(())
}
