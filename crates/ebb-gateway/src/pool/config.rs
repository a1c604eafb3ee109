//! The pool's settings and the bounds the manager keeps to, each a named
//! constant so the numbers live in one place with their reasons.

/// Nodes started per tick at most, so a large target does not stall the
/// loop (and events) behind a burst of slow starts.
pub const MAX_STARTS_PER_TICK: usize = 8;
/// Pause after a failed start or a node that died before it was ready;
/// doubles up to the maximum while failures continue.
pub const START_BACKOFF_MS: u64 = 100;
pub const MAX_START_BACKOFF_MS: u64 = 5_000;
/// The largest pool size anyone may ask for.
pub const MAX_POOL_SIZE: usize = 256;
/// How long a node that accepted the handshake may take to describe its
/// service when the config sets nothing; past it the handshake is tried
/// again at the next tick.
pub const DESCRIBE_TIMEOUT_MS: u64 = 2_000;
/// Handshakes in progress at once at most. They run on the gateway's
/// runtime, not on the manager's thread, so a node slow to answer holds up
/// neither the tick nor the other nodes' handshakes; past this bound a
/// ready node waits for a later tick.
pub const MAX_CONCURRENT_HANDSHAKES: usize = 16;
/// Longest pause between two ticks of a quiet pool (every node ready and
/// idle, nothing held, booting, draining or handshaking, the target met):
/// the pause doubles from `tick_ms` up to this, so an idle gateway's
/// manager wakes ten times a second rather than a hundred. Anything to do
/// (a command, a handshake's end, a call in flight) brings `tick_ms` back.
pub const MAX_IDLE_TICK_MS: u64 = 100;

/// The largest capacity one node may be given (blocking calls at once:
/// its worker threads, and a container's CPU quota in `cpus` units), so a
/// policy or a hand-set value cannot ask a node for a thousand threads.
pub const MAX_CAPACITY_PER_NODE: u32 = 64;
/// How long a node may take to answer a resize before it is tried again at
/// a later tick. A node that did not answer in time (a loaded machine, a VM
/// under TCG) is still taken as one that resizes, at its handshake too.
pub const RESIZE_TIMEOUT_MS: u64 = 2_000;
/// The pause before a node whose resize went unanswered is asked again;
/// it doubles with each unanswered one in a row, up to
/// [`MAX_RESIZE_RETRY_MS`], so a node that never answers costs one small
/// frame that often, not one every tick.
pub const RESIZE_RETRY_MS: u64 = 500;
pub const MAX_RESIZE_RETRY_MS: u64 = 30_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
    /// Period of the control loop.
    pub tick_ms: u64,
    /// A node not ready this long after its start is stopped.
    pub boot_timeout_ms: u64,
    /// How long shutdown waits for in-flight calls and nodes to end before
    /// the provider is dropped (which kills what is left).
    pub shutdown_grace_ms: u64,
    pub cost_per_node_sec_micros: u64,
    /// Period of the autoscaler's decisions.
    pub scale_tick_ms: u64,
    /// Calls in flight on one node at most; more wait at the gateway. The
    /// nodes' own bound per connection, so they never refuse for it.
    pub max_in_flight_per_node: u32,
    /// How long a node that accepted the handshake's connection may take
    /// to describe its service before the handshake is tried again.
    pub describe_timeout_ms: u64,
    /// Scale up: the largest capacity (blocking calls at once) a node may
    /// be given, at most [`MAX_CAPACITY_PER_NODE`]. 1: scale out only, and
    /// no node is ever asked to resize.
    pub max_capacity_per_node: u32,
}

impl Default for PoolConfig {
    fn default() -> PoolConfig {
        PoolConfig {
            initial: 1,
            min: 0,
            max: 16,
            tick_ms: 10,
            boot_timeout_ms: 60_000,
            shutdown_grace_ms: 10_000,
            cost_per_node_sec_micros: 0,
            scale_tick_ms: 1_000,
            max_in_flight_per_node: crate::registry::DEFAULT_MAX_IN_FLIGHT_PER_NODE,
            describe_timeout_ms: DESCRIBE_TIMEOUT_MS,
            max_capacity_per_node: 1,
        }
    }
}
