//! `ebb vm migrate`: a node VM migrated (live under KVM, stop and copy
//! under TCG) to a second QEMU that takes over its host port, timed, with
//! the user's check run before and after to show the node's state survived
//! the move.

use std::time::Instant;

use anyhow::{Context, bail};
use ebb_node::vm::migrate::live_migrate;
use ebb_node::vm::{Accel, Machine};

use super::node::{NodeArgs, WorkDir, addr, booting, node_spec, show_addr, wait_serving};

/// Boots a node VM and migrates it, reporting total time, downtime and
/// how long its address went unanswered.
pub(super) fn migrate(node: &NodeArgs, check: Option<&str>) -> anyhow::Result<()> {
    let dir = WorkDir::new();
    let spec = node_spec(node, &dir.0)?;
    println!("accelerator: {}", spec.accel.as_str());
    booting(&spec, node.boot_timeout_ms);
    // Both QEMUs (source and target) die with this process, even by
    // SIGKILL mid-copy.
    let mut src = Machine::spawn(&spec)?;
    src.wait_booted(node.boot_timeout_ms)?;
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
    if spec.accel == Accel::Tcg {
        // Under TCG the guest is paused for the whole copy, before QEMU's
        // own final-stop figure starts counting.
        println!(
            "migration_downtime_ms: {} (QEMU's final stop only; under TCG the guest is paused for the whole copy, see address_unreachable_ms)",
            rep.downtime_ms
        );
    } else {
        println!("migration_downtime_ms: {}", rep.downtime_ms);
    }
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
