//! Moving a VM's state: save to a file, restore from it, and live migration
//! between two QEMU processes.
//!
//! All three use QEMU's migration stream. QEMU 7.2 has no `file:` URI, so a
//! snapshot is `migrate` to `exec:cat > FILE` of a paused guest and a
//! restore is `-incoming exec:cat FILE`. Only pages the guest touched are
//! sent, so a freshly booted node's snapshot is tens of MiB, not its RAM
//! size. The restoring QEMU must have the same devices and the same
//! kernel/initrd files, which [`Snapshot`] keeps next to the state.

use super::machine::{Machine, MachineSpec};
use super::{Accel, VmError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Local migrations are memory copies; lift QEMU's 32 MiB/s default cap.
pub const MAX_BANDWIDTH_BYTES_PER_S: u64 = 4 << 30;
/// The pause QEMU aims for when it stops the source for the final copy.
pub const DOWNTIME_LIMIT_MS: u64 = 100;
/// Bound on one save, restore or migration.
pub const MIGRATION_TIMEOUT_MS: u64 = 60_000;
const POLL_MS: u64 = 10;

/// A saved guest and what is needed to bring it back.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub state: PathBuf,
    /// The machine it was taken from; restores reuse its devices and files.
    pub spec: MachineSpec,
    pub size_bytes: u64,
}

/// What a live migration cost, as QEMU measured it on the source, and how
/// long the node's address went unanswered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    pub total_time_ms: u64,
    /// How long QEMU paused the guest for the final copy. Under TCG the
    /// guest is paused before the copy starts (see [`live_migrate`]), so
    /// this is not the pause clients see; `address_unreachable_ms` is.
    pub downtime_ms: u64,
    pub ram_transferred_bytes: u64,
    /// From the source guest stopping (its `STOP` event) to the target
    /// forwarding the node's port: no guest answers on the address in
    /// between. `None` when the source had no forward, or QEMU reported no
    /// stop.
    pub address_unreachable_ms: Option<u64>,
}

/// Pauses `m` and writes its state to `path`. `m` stays paused afterwards;
/// `cont` resumes it, or drop it.
pub fn save_snapshot(m: &mut Machine, path: &Path) -> Result<Snapshot, VmError> {
    let uri = format!("exec:cat > {}", shell_path(path)?);
    let q = m.qmp();
    q.stop()?;
    q.set_migration_limits(MAX_BANDWIDTH_BYTES_PER_S, DOWNTIME_LIMIT_MS)?;
    q.migrate(&uri)?;
    wait_migration(m)?;
    Ok(Snapshot {
        state: path.to_owned(),
        spec: m.spec().clone(),
        size_bytes: std::fs::metadata(path)?.len(),
    })
}

/// Starts a new QEMU from `snap` with its own port forward and lets it run.
/// Readiness (the port answering) is the caller's to wait for. QEMU is
/// tied to this process as [`Machine::spawn`] ties every QEMU.
pub fn restore(snap: &Snapshot) -> Result<Machine, VmError> {
    let mut m = Machine::spawn(&snap.restore_spec()?)?;
    wait_incoming_then_run(&mut m)?;
    Ok(m)
}

/// Bound on the emptied source exiting after `quit`; it is killed after.
pub const SOURCE_EXIT_TIMEOUT_MS: u64 = 10_000;

/// Moves `src`'s running guest to a new QEMU over loopback TCP, then hands
/// it `src`'s host port, so the node keeps its address.
///
/// The target starts without a forward (user-mode networking cannot bind a
/// port twice, and its network state is not part of the migration stream).
/// Once the guest runs on the target, `src` closes its forward's listening
/// socket, the target opens the same port (`hostfwd_remove`/`hostfwd_add`),
/// and `src` is told to quit. Quitting closes the host side of every
/// connection accepted through `src`, so clients see their connection break
/// and reconnect to the same address, now the target's.
///
/// Under TCG the guest is paused for the whole copy (stop and copy), not
/// only for its last round: guests moved while running under TCG crashed
/// now and then a few ms after resuming on the target, with kernel data
/// structures (an hrtimer tree node, a socket buffer being checksummed)
/// that did not arrive as written. TCG tracks the pages a running guest
/// dirties in software, and a store the tracking misses is never resent;
/// a paused guest writes nothing, so every page arrives as it was. The
/// price is a pause as long as the copy (0.4–0.5 s here for a 256 MiB
/// node under TCG, more on a busy host: docs/isolation.md), which
/// `address_unreachable_ms` reports. KVM tracks dirty pages in the host
/// kernel and keeps the live copy.
///
/// On success `src` has exited; drop it. On failure the target is gone and,
/// when the guest had already moved (or was paused for the copy), it is
/// resumed on `src` (no client traffic reached the target, which had no
/// forward yet).
///
/// The target is started as [`Machine::spawn`] starts every QEMU: tied to
/// this process, not to the calling thread, so a short-lived worker
/// thread may call this and a process killed by SIGKILL mid-copy still
/// leaves no target running.
pub fn live_migrate(src: &mut Machine) -> Result<(Machine, MigrationReport), VmError> {
    let mut spec = src.spec().clone();
    spec.incoming = Some("defer".into());
    spec.forward_port = false;
    let mut dst = Machine::spawn(&spec)?;
    // Port 0 lets the target pick a free port, read back from query-migrate.
    dst.qmp().migrate_incoming("tcp:127.0.0.1:0")?;
    let port = dst
        .qmp()
        .query_migrate()?
        .listen_port
        .ok_or_else(|| VmError::Migration("target did not report its listening port".into()))?;
    let began = SystemTime::now();
    let stop_and_copy = src.spec().accel == Accel::Tcg;
    let q = src.qmp();
    q.set_migration_limits(MAX_BANDWIDTH_BYTES_PER_S, DOWNTIME_LIMIT_MS)?;
    if stop_and_copy {
        q.stop()?;
    }
    let copied = q
        .migrate(&format!("tcp:127.0.0.1:{port}"))
        .map_err(VmError::from)
        .and_then(|()| wait_migration(src));
    let info = match copied {
        Ok(info) => info,
        Err(e) if stop_and_copy => {
            drop(dst);
            let resumed = match src.qmp().cont() {
                Ok(()) => "the guest resumed on the source".to_owned(),
                Err(c) => format!("resuming the source failed too: {c}"),
            };
            return Err(VmError::Migration(format!("{e}; {resumed}")));
        }
        Err(e) => return Err(e),
    };
    let forwarded_at =
        match wait_incoming_then_run(&mut dst).and_then(|()| hand_over_port(src, &mut dst)) {
            Ok(at) => at,
            Err(e) => {
                // The target must be gone before the source runs again, so the
                // guest never runs twice.
                drop(dst);
                let resumed = match src.qmp().cont() {
                    Ok(()) => "the guest resumed on the source".to_owned(),
                    Err(c) => format!("resuming the source failed too: {c}"),
                };
                return Err(VmError::Migration(format!(
                    "after the copy: {e}; {resumed}"
                )));
            }
        };
    let stopped_at = src.qmp().last_event("STOP").filter(|&t| t >= began);
    let address_unreachable_ms = match (stopped_at, forwarded_at) {
        (Some(stop), Some(fwd)) => fwd.duration_since(stop).ok().map(millis),
        _ => None,
    };
    // Read before the source quits: its console goes with it.
    dst.carry_online_cpus_from(src);
    quit_source(src);
    Ok((
        dst,
        MigrationReport {
            total_time_ms: info.total_time_ms.unwrap_or(0),
            downtime_ms: info.downtime_ms.unwrap_or(0),
            ram_transferred_bytes: info.ram_transferred_bytes.unwrap_or(0),
            address_unreachable_ms,
        },
    ))
}

/// Moves `src`'s port forward to `dst`; returns when `dst` took it over
/// (`None`: `src` had none). If `dst` cannot take it, `src` gets it back.
fn hand_over_port(src: &mut Machine, dst: &mut Machine) -> Result<Option<SystemTime>, VmError> {
    let Some(port) = src.remove_host_forward()? else {
        return Ok(None);
    };
    match dst.add_host_forward(port) {
        Ok(()) => Ok(Some(SystemTime::now())),
        Err(e) => {
            let back = src.add_host_forward(port);
            Err(VmError::Migration(format!(
                "the target could not take over port {port}: {e}{}",
                match back {
                    Ok(()) => String::new(),
                    Err(b) => format!("; the source could not take it back either: {b}"),
                }
            )))
        }
    }
}

/// Ends the emptied source: politely, then by force.
fn quit_source(src: &mut Machine) {
    let quit = src.qmp().quit();
    if quit.is_err()
        || src
            .wait_exit(Duration::from_millis(SOURCE_EXIT_TIMEOUT_MS))
            .is_err()
    {
        src.kill();
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Polls the source side until its migration completes.
fn wait_migration(m: &mut Machine) -> Result<super::qmp::MigrationInfo, VmError> {
    let deadline = Instant::now() + Duration::from_millis(MIGRATION_TIMEOUT_MS);
    loop {
        let info = m.qmp().query_migrate()?;
        if info.is_finished() {
            return if info.status == "completed" {
                Ok(info)
            } else {
                Err(VmError::Migration(format!(
                    "{}: {}",
                    info.status,
                    info.error.unwrap_or_else(|| "no reason given".into())
                )))
            };
        }
        if Instant::now() >= deadline {
            return Err(VmError::Migration(format!(
                "still {} after {MIGRATION_TIMEOUT_MS} ms",
                info.status
            )));
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Waits for an incoming migration to finish loading, then resumes the
/// guest if it arrived paused (a snapshot is taken from a paused guest).
fn wait_incoming_then_run(m: &mut Machine) -> Result<(), VmError> {
    let deadline = Instant::now() + Duration::from_millis(MIGRATION_TIMEOUT_MS);
    loop {
        let st = m.qmp().query_status()?;
        if st.running {
            return Ok(());
        }
        if st.status != "inmigrate" {
            let info = m.qmp().query_migrate()?;
            if info.status == "failed" {
                return Err(VmError::Migration(format!(
                    "incoming: {}",
                    info.error.unwrap_or_else(|| "no reason given".into())
                )));
            }
            m.qmp().cont()?;
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(VmError::Migration(format!(
                "incoming still loading after {MIGRATION_TIMEOUT_MS} ms"
            )));
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// QEMU runs `exec:` URIs through `/bin/sh -c`; we only accept paths that
/// need no quoting rather than quote them.
fn shell_path(p: &Path) -> Result<String, VmError> {
    let s = p.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        Ok(s.into_owned())
    } else {
        Err(VmError::Snapshot(format!(
            "path {s:?} must use only letters, digits and / . _ - +"
        )))
    }
}

/// The file in a snapshot directory describing how to restore it.
const MANIFEST: &str = "manifest";

impl Snapshot {
    /// The machine that loads this snapshot on start (paused if it was
    /// saved paused), with a fresh port forward.
    pub fn restore_spec(&self) -> Result<MachineSpec, VmError> {
        let mut spec = self.spec.clone();
        spec.forward_port = true;
        spec.incoming = Some(format!("exec:cat {}", shell_path(&self.state)?));
        Ok(spec)
    }

    /// Saves `m` into `dir` as a self-contained snapshot: the state, a copy
    /// of the initrd, and a manifest naming kernel, accelerator and sizes,
    /// so another process can [`Snapshot::load`] and restore it.
    pub fn save_dir(m: &mut Machine, dir: &Path) -> Result<Snapshot, VmError> {
        std::fs::create_dir_all(dir)?;
        let initrd = dir.join("initrd.cpio");
        std::fs::copy(&m.spec().initrd, &initrd)?;
        let mut snap = save_snapshot(m, &dir.join("state"))?;
        snap.spec.initrd = initrd;
        let s = &snap.spec;
        let manifest = format!(
            "vmlinuz={}\ninitrd={}\naccel={}\nmemory_mb={}\ncpus={}\nmax_cpus={}\n",
            s.vmlinuz.display(),
            s.initrd.display(),
            s.accel.as_str(),
            s.memory_mb,
            s.cpus,
            s.max_cpus
        );
        std::fs::write(dir.join(MANIFEST), manifest)?;
        Ok(snap)
    }

    /// Reads a snapshot directory written by [`Snapshot::save_dir`].
    pub fn load(dir: &Path) -> Result<Snapshot, VmError> {
        let bad =
            |what: &str| VmError::Snapshot(format!("{}: {what}", dir.join(MANIFEST).display()));
        let text = std::fs::read_to_string(dir.join(MANIFEST))
            .map_err(|e| bad(&format!("cannot read ({e}); is this a snapshot directory?")))?;
        let get = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .ok_or_else(|| bad(&format!("no {k}")))
        };
        let num = |k: &str| {
            get(k)?
                .parse::<u64>()
                .map_err(|_| bad(&format!("{k} is not a number")))
        };
        let accel =
            super::Accel::parse(get("accel")?).ok_or_else(|| bad("accel is not kvm or tcg"))?;
        let state = dir.join("state");
        let cpus = u32::try_from(num("cpus")?).map_err(|_| bad("cpus out of range"))?;
        // A snapshot from before `max_cpus` has every vCPU online.
        let max_cpus = match get("max_cpus") {
            Ok(_) => u32::try_from(num("max_cpus")?).map_err(|_| bad("max_cpus out of range"))?,
            Err(_) => cpus,
        };
        Ok(Snapshot {
            size_bytes: std::fs::metadata(&state)?.len(),
            state,
            spec: MachineSpec {
                vmlinuz: get("vmlinuz")?.into(),
                initrd: get("initrd")?.into(),
                accel,
                memory_mb: num("memory_mb")?,
                cpus,
                max_cpus,
                forward_port: true,
                incoming: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn snapshot_directory_manifest_round_trips_and_names_bad_fields() {
        let guard = tempfile::Builder::new()
            .prefix("ebb-snap-test-")
            .tempdir()
            .unwrap();
        let dir = guard.path();
        std::fs::write(dir.join("state"), b"0123").unwrap();
        std::fs::write(
            dir.join(MANIFEST),
            "vmlinuz=/k/vmlinuz\ninitrd=/s/initrd.cpio\naccel=tcg\nmemory_mb=256\ncpus=2\n",
        )
        .unwrap();
        let snap = Snapshot::load(dir).unwrap();
        assert_eq!(snap.size_bytes, 4);
        assert_eq!(
            (snap.spec.memory_mb, snap.spec.cpus, snap.spec.max_cpus),
            (256, 2, 2)
        );
        assert_eq!(snap.spec.accel, super::super::Accel::Tcg);
        let restore = snap.restore_spec().unwrap();
        assert_eq!(
            restore.incoming,
            Some(format!("exec:cat {}", dir.join("state").display()))
        );
        assert!(restore.forward_port);

        std::fs::write(
            dir.join(MANIFEST),
            "vmlinuz=/k\ninitrd=/i\naccel=tcg\nmemory_mb=lots\ncpus=1\n",
        )
        .unwrap();
        let err = Snapshot::load(dir).unwrap_err().to_string();
        assert!(err.contains("memory_mb is not a number"), "{err}");
    }

    #[test]
    fn exec_uris_only_take_paths_that_need_no_quoting() {
        assert!(shell_path(Path::new("/var/cache/ebb/vm/node.state")).is_ok());
        assert!(shell_path(Path::new("/tmp/a b; rm -rf x")).is_err());
    }
}
