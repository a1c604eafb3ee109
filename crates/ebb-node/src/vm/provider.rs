//! `VmProvider`: VM nodes behind the common [`NodeProvider`] interface.
//!
//! `start` only launches QEMU (cold boot, or restore from a snapshot when
//! one exists); `poll_events` moves each node along — resume once a restore
//! has loaded, `Ready` once the node's port answers — so a slow boot never
//! blocks the control loop. Start times are measured per accelerator and
//! kind (cold, restore), kept in the cache directory across runs, and
//! `expected_start` reports the figure for how the next node would start.
//!
//! Scale up: a node that may grow (`max_capacity` above 1) boots with
//! every vCPU it may get, `cpus` of them online, and its QEMU in a host
//! cgroup whose quota is the vCPUs online; `resize` to capacity c sets the
//! quota to c × `cpus` and has the guest bring that many vCPUs online.

use super::image::VmImage;
use super::initramfs::{compose, files_archive, overlay_script};
use super::machine::{Machine, MachineSpec};
use super::migrate::{MigrationReport, Snapshot, live_migrate, save_snapshot};
use super::quota::{self, HostQuota};
use super::{Accel, DEFAULT_MEMORY_MB, GUEST_PORT, MAX_GUEST_VCPUS, VmError, cache_dir};
use crate::provider::{NodeEvent, NodeKind, NodeProvider, ProviderError, StartedNode};
use ebb_core::{Nanos, NodeId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Used by `expected_start` before any boot was measured on this host.
pub const UNMEASURED_TCG_BOOT_MS: u64 = 3_000;
pub const UNMEASURED_KVM_BOOT_MS: u64 = 500;
/// A node not answering by then is reported `Gone`. A cold boot under
/// QEMU's TCG (no KVM) takes 12-35 s on a loaded host, so the default
/// leaves room for that; with KVM it is well under a second.
pub const DEFAULT_BOOT_TIMEOUT_MS: u64 = 60_000;
/// The largest boot timeout accepted (an hour): more is a unit mistake.
pub const MAX_BOOT_TIMEOUT_MS: u64 = 3_600_000;
/// Where a boot timeout is raised, for the errors that report one.
pub const BOOT_TIMEOUT_HINT: &str = "a cold boot without KVM takes tens of seconds on a loaded \
     host; raise it with `boot_timeout_ms` in `ebb up`'s [pool] section, or --boot-timeout-ms \
     of `ebb vm boot`, `ebb sandbox run --kind vm` and `ebb demo --kind vm`";
/// Bounds the provider's node table.
pub const MAX_VM_NODES: usize = 64;

/// Where a guest reaches the host's loopback: QEMU's user networking
/// answers this address for the host's 127.0.0.1.
pub const HOST_LOOPBACK_ALIAS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 2);

/// A host service's address as a guest must dial it: the host's loopback
/// (or an unspecified address, listening on all of them) through
/// [`HOST_LOOPBACK_ALIAS`]; any other address is reached as it is, through
/// QEMU's outbound NAT. `None` for IPv6 loopback, which QEMU's user
/// network does not forward.
pub fn guest_view(host: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    use std::net::{IpAddr, SocketAddr};
    match host.ip() {
        IpAddr::V4(ip) if ip.is_loopback() || ip.is_unspecified() => Some(SocketAddr::new(
            IpAddr::V4(HOST_LOOPBACK_ALIAS),
            host.port(),
        )),
        IpAddr::V6(ip) if ip.is_loopback() => None,
        IpAddr::V6(ip) if ip.is_unspecified() => Some(SocketAddr::new(
            IpAddr::V4(HOST_LOOPBACK_ALIAS),
            host.port(),
        )),
        _ => Some(host),
    }
}

#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Host binaries the guest needs (e.g. the `ebb` binary for `ebb node`).
    pub host_binaries: Vec<PathBuf>,
    /// The node's server; `{port}` becomes [`GUEST_PORT`].
    pub node_command: Vec<String>,
    pub memory_mb: u64,
    /// vCPUs per unit of capacity: a node at capacity c has c × `cpus`
    /// online.
    pub cpus: u32,
    /// The most capacity a node is resized to (`pool.max_capacity_per_node`):
    /// its VM has `max_capacity` × `cpus` vCPUs (at most
    /// [`MAX_GUEST_VCPUS`]), and above 1 its QEMU gets a host cgroup,
    /// which needs root.
    pub max_capacity: u32,
    /// How long a guest may take from launch (or restore) to serving
    /// before it is reported `Gone`; [`DEFAULT_BOOT_TIMEOUT_MS`] unless
    /// configured (`pool.boot_timeout_ms`).
    pub boot_timeout_ms: u64,
    /// Host files copied into every guest's root (the node's token and TLS
    /// files), at their paths inside.
    pub files: Vec<crate::sandbox::FileIn>,
}

impl VmConfig {
    /// Runs `ebb node` from `ebb_binary` inside the guest.
    pub fn ebb_node(ebb_binary: PathBuf) -> Self {
        let bin = ebb_binary.to_string_lossy().into_owned();
        Self {
            host_binaries: vec![ebb_binary],
            node_command: vec![
                bin,
                "node".into(),
                "--listen".into(),
                "0.0.0.0:{port}".into(),
            ],
            memory_mb: DEFAULT_MEMORY_MB,
            cpus: 1,
            max_capacity: 1,
            boot_timeout_ms: DEFAULT_BOOT_TIMEOUT_MS,
            files: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Loading a snapshot; resume when done.
    Restoring,
    /// Guest running; waiting for the port to answer.
    Booting,
    Ready,
}

struct VmNode {
    machine: Machine,
    /// Dropped after `machine`: QEMU is dead by then.
    quota: Option<HostQuota>,
    /// vCPUs the guest was last asked to have online.
    online: u32,
    phase: Phase,
    from_snapshot: bool,
    launched: Instant,
}

pub struct VmProvider {
    cfg: VmConfig,
    image: VmImage,
    dir: PathBuf,
    initrd: PathBuf,
    nodes: HashMap<NodeId, VmNode>,
    events: Vec<NodeEvent>,
    snapshot: Option<Snapshot>,
    cold_ms: Option<u64>,
    restore_ms: Option<u64>,
}

impl VmProvider {
    pub fn new(cfg: VmConfig) -> Result<Self, VmError> {
        let image = VmImage::prepare(&cfg.host_binaries)?;
        let dir = super::provider_dir::create(&cache_dir().join("vm"))?;
        let initrd = dir.join("node.cpio");
        let command: Vec<String> = cfg
            .node_command
            .iter()
            .map(|w| w.replace("{port}", &GUEST_PORT.to_string()))
            .collect();
        let mut overlay = overlay_script("serve", &command)?;
        overlay.extend(files_archive(&cfg.files, "")?);
        compose(&image.base, &overlay, &initrd)?;
        let accel = image.accel;
        Ok(Self {
            cfg,
            image,
            dir,
            initrd,
            nodes: HashMap::new(),
            events: Vec::new(),
            snapshot: None,
            cold_ms: load_figure(accel, "cold"),
            restore_ms: load_figure(accel, "restore"),
        })
    }

    pub fn accel(&self) -> Accel {
        self.image.accel
    }

    pub fn has_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }

    /// Measured (or stored) cold-boot and restore times, in milliseconds.
    pub fn start_figures_ms(&self) -> (Option<u64>, Option<u64>) {
        (self.cold_ms, self.restore_ms)
    }

    /// The QEMU process behind a node, for inspection (QMP, RSS).
    pub fn machine(&mut self, id: NodeId) -> Option<&mut Machine> {
        self.nodes.get_mut(&id).map(|n| &mut n.machine)
    }

    /// Live-migrates a serving node to a new QEMU on this host. The node
    /// keeps its address (the `StartedNode::addr` from `start`), its memory
    /// and so its server's incarnation and reply table: clients reconnect
    /// to the same address and calls in flight complete exactly once. On
    /// failure the node keeps running where it was, if it can.
    pub fn migrate(&mut self, id: NodeId) -> Result<MigrationReport, VmError> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| VmError::Migration(format!("no VM node {id}")))?;
        if node.phase != Phase::Ready {
            return Err(VmError::Migration(format!(
                "node {id} is not serving yet; migrate it once it is Ready"
            )));
        }
        let (dst, report) = live_migrate(&mut node.machine)?;
        // The old QEMU has exited; dropping it removes its files.
        node.machine = dst;
        if let Some(q) = &node.quota {
            q.add(node.machine.pid())?;
        }
        // The new QEMU's console is empty: have the guest say its count
        // there (asking for the count it has changes nothing). Until it
        // does, `online_cpus` reads the count carried over from the source,
        // so a failed write here loses nothing; the next resize reports a
        // console that does not take lines.
        let _ = node.machine.set_online_cpus(node.online);
        Ok(report)
    }

    /// The CPU quota of node `id`'s QEMU, in cores (`None`: it has no
    /// cgroup, being unable to grow).
    pub fn cpu_quota(&self, id: NodeId) -> Result<Option<f64>, ProviderError> {
        let node = self.nodes.get(&id).ok_or(ProviderError::UnknownNode(id))?;
        if node.quota.is_none() {
            return Ok(None);
        }
        quota::get(node.machine.pid()).map_err(|e| resize_err(id, e))
    }

    /// The vCPUs node `id`'s guest last said it has online; after a
    /// migration, what it said before the move until it says it again.
    pub fn online_cpus(&self, id: NodeId) -> Option<u32> {
        self.nodes.get(&id)?.machine.online_cpus()
    }

    /// Whether nodes may grow past their boot size.
    fn may_grow(&self) -> bool {
        self.max_cpus() > self.cfg.cpus
    }

    fn max_cpus(&self) -> u32 {
        self.cfg
            .cpus
            .saturating_mul(self.cfg.max_capacity.max(1))
            .min(MAX_GUEST_VCPUS)
            .max(self.cfg.cpus)
    }

    fn spec(&self) -> MachineSpec {
        MachineSpec {
            vmlinuz: self.image.kernel.vmlinuz.clone(),
            initrd: self.initrd.clone(),
            accel: self.image.accel,
            memory_mb: self.cfg.memory_mb,
            cpus: self.cfg.cpus,
            max_cpus: self.max_cpus(),
            forward_port: true,
            incoming: None,
        }
    }

    /// Boots a template node, waits until it serves, and saves it; later
    /// `start`s restore from it. The template never served a call, so every
    /// restored node starts from the same clean state. Returns the snapshot
    /// size in bytes.
    pub fn make_snapshot(&mut self) -> Result<u64, VmError> {
        let mut m = Machine::spawn(&self.spec())?;
        let booted = m.wait_booted(self.cfg.boot_timeout_ms)?;
        self.record_cold(booted);
        let snap = save_snapshot(&mut m, &self.dir.join("node.state"))?;
        let size = snap.size_bytes;
        self.snapshot = Some(snap);
        Ok(size)
    }

    fn record_cold(&mut self, d: Duration) {
        let ms = millis(d);
        self.cold_ms = Some(ms);
        store_figure(self.image.accel, "cold", ms);
    }

    fn record_restore(&mut self, d: Duration) {
        let ms = millis(d);
        self.restore_ms = Some(ms);
        store_figure(self.image.accel, "restore", ms);
    }

    /// Advances one node; returns the event it produced, if any.
    fn advance(&mut self, id: NodeId) -> Option<NodeEvent> {
        let timeout = Duration::from_millis(self.cfg.boot_timeout_ms);
        let node = self.nodes.get_mut(&id)?;
        let st = match node.machine.qmp().query_status() {
            Ok(st) if st.status != "shutdown" => st,
            Ok(_) => return Some(NodeEvent::Gone(id, "the guest shut down".into())),
            Err(e) => return Some(NodeEvent::Gone(id, format!("QEMU is gone: {e}"))),
        };
        if node.phase != Phase::Ready && node.launched.elapsed() > timeout {
            return Some(NodeEvent::Gone(
                id,
                format!(
                    "not serving within boot_timeout_ms = {} ms; {BOOT_TIMEOUT_HINT}",
                    self.cfg.boot_timeout_ms
                ),
            ));
        }
        match node.phase {
            Phase::Ready => None,
            Phase::Restoring => {
                if st.running {
                    node.phase = Phase::Booting;
                } else if st.status != "inmigrate" {
                    if let Err(e) = node.machine.qmp().cont() {
                        return Some(NodeEvent::Gone(
                            id,
                            format!("resuming the restored guest: {e}"),
                        ));
                    }
                    node.phase = Phase::Booting;
                }
                None
            }
            Phase::Booting => {
                if node.machine.serving() {
                    node.phase = Phase::Ready;
                    let took = node.launched.elapsed();
                    if node.from_snapshot {
                        self.record_restore(took);
                    } else {
                        self.record_cold(took);
                    }
                    Some(NodeEvent::Ready(id))
                } else {
                    None
                }
            }
        }
    }
}

impl NodeProvider for VmProvider {
    fn kind(&self) -> NodeKind {
        NodeKind::Vm
    }

    fn expected_start(&self) -> Nanos {
        let unmeasured = match self.image.accel {
            Accel::Kvm => UNMEASURED_KVM_BOOT_MS,
            Accel::Tcg => UNMEASURED_TCG_BOOT_MS,
        };
        let ms = match (&self.snapshot, self.restore_ms) {
            (Some(_), Some(r)) => r,
            _ => self.cold_ms.unwrap_or(unmeasured),
        };
        Nanos::from_millis(ms)
    }

    fn start(&mut self, id: NodeId) -> Result<StartedNode, ProviderError> {
        let fail = ProviderError::from;
        if self.nodes.contains_key(&id) {
            return Err(ProviderError::Start {
                kind: "vm",
                reason: format!("node {id} already exists"),
            });
        }
        if self.nodes.len() >= MAX_VM_NODES {
            return Err(ProviderError::Start {
                kind: "vm",
                reason: format!("at most {MAX_VM_NODES} VM nodes per provider"),
            });
        }
        let launched = Instant::now();
        let (machine, phase, from_snapshot) = match &self.snapshot {
            Some(snap) => {
                let spec = snap.restore_spec().map_err(fail)?;
                (Machine::spawn(&spec).map_err(fail)?, Phase::Restoring, true)
            }
            None => (
                Machine::spawn(&self.spec()).map_err(fail)?,
                Phase::Booting,
                false,
            ),
        };
        let addr = machine
            .host_addr()
            .ok_or_else(|| fail(VmError::Unsupported("a node without a port".into())))?;
        // On failure `machine` drops here, killing QEMU.
        let quota = if self.may_grow() {
            Some(HostQuota::create(machine.pid(), self.cfg.cpus).map_err(fail)?)
        } else {
            None
        };
        self.nodes.insert(
            id,
            VmNode {
                machine,
                quota,
                online: self.cfg.cpus,
                phase,
                from_snapshot,
                launched,
            },
        );
        Ok(StartedNode {
            id,
            kind: NodeKind::Vm,
            addr,
        })
    }

    fn stop(&mut self, id: NodeId) -> Result<(), ProviderError> {
        let node = self
            .nodes
            .remove(&id)
            .ok_or(ProviderError::UnknownNode(id))?;
        drop(node); // kills QEMU
        self.events.push(NodeEvent::Gone(id, "stopped".into()));
        Ok(())
    }

    /// Capacity c: the quota becomes c × `cpus` cores and the guest brings
    /// as many vCPUs online (at most the VM's); its server's threads follow
    /// the gateway's `Resize` on their own.
    fn resize(&mut self, id: NodeId, capacity: u32) -> Result<(), ProviderError> {
        let max_cpus = self.max_cpus();
        let per_unit = self.cfg.cpus;
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or(ProviderError::UnknownNode(id))?;
        let online = per_unit.saturating_mul(capacity.max(1)).min(max_cpus);
        if online == node.online {
            return Ok(());
        }
        if node.quota.is_some() {
            quota::set(node.machine.pid(), online).map_err(|e| resize_err(id, e))?;
        }
        node.machine
            .set_online_cpus(online)
            .map_err(|e| resize_err(id, e))?;
        node.online = online;
        Ok(())
    }

    fn poll_events(&mut self) -> Vec<NodeEvent> {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(ev) = self.advance(id) {
                if matches!(ev, NodeEvent::Gone(..)) {
                    self.nodes.remove(&id);
                }
                self.events.push(ev);
            }
        }
        std::mem::take(&mut self.events)
    }
}

impl Drop for VmProvider {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn resize_err(id: NodeId, e: VmError) -> ProviderError {
    ProviderError::Resize {
        id,
        reason: e.to_string(),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn figure_path(accel: Accel, what: &str) -> PathBuf {
    cache_dir()
        .join("vm")
        .join(format!("start-{}-{what}.ms", accel.as_str()))
}

fn load_figure(accel: Accel, what: &str) -> Option<u64> {
    std::fs::read_to_string(figure_path(accel, what))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Best effort: a read-only cache only costs the next run a re-measurement.
fn store_figure(accel: Accel, what: &str, ms: u64) {
    let _ = std::fs::write(figure_path(accel, what), format!("{ms}\n"));
}

/// Missing QEMU, busybox or kernel make the kind unavailable on this
/// machine; anything else is a failed start.
impl From<VmError> for ProviderError {
    fn from(e: VmError) -> Self {
        match e {
            VmError::NoQemu(_) | VmError::NoBusybox(_) | VmError::Kernel(_) => {
                ProviderError::Unavailable {
                    kind: "vm",
                    reason: e.to_string(),
                }
            }
            other => ProviderError::Start {
                kind: "vm",
                reason: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_pieces_make_the_vm_kind_unavailable_not_a_failed_start() {
        let e: ProviderError = VmError::NoQemu("not found".into()).into();
        assert!(matches!(e, ProviderError::Unavailable { kind: "vm", .. }));
        let e: ProviderError = VmError::Migration("x".into()).into();
        assert!(matches!(e, ProviderError::Start { kind: "vm", .. }));
    }

    #[test]
    fn a_boot_timeout_names_the_setting_its_value_and_where_to_raise_it() {
        let e = VmError::BootTimeout {
            what: "serving",
            ms: 5_000,
            console: "[ 1.0] still unpacking".into(),
        }
        .to_string();
        for part in [
            "boot_timeout_ms = 5000 ms",
            "[pool]",
            "--boot-timeout-ms",
            "still unpacking",
        ] {
            assert!(e.contains(part), "{part:?} missing in: {e}");
        }
    }

    #[test]
    fn a_guest_dials_the_host_loopback_through_qemu_s_alias() {
        let view = |a: &str| guest_view(a.parse().expect("an address")).map(|a| a.to_string());
        assert_eq!(view("127.0.0.1:4000").as_deref(), Some("10.0.2.2:4000"));
        assert_eq!(view("127.8.9.1:4000").as_deref(), Some("10.0.2.2:4000"));
        assert_eq!(view("0.0.0.0:4000").as_deref(), Some("10.0.2.2:4000"));
        assert_eq!(view("[::]:4000").as_deref(), Some("10.0.2.2:4000"));
        assert_eq!(view("192.0.2.7:4000").as_deref(), Some("192.0.2.7:4000"));
        assert_eq!(view("[::1]:4000"), None);
    }
}
