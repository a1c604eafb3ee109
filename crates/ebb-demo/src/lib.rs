//! The demo service: the one every ebb command serves unless told otherwise.
//!
//! Its methods cover the shapes a scaling system must handle: a trivial call
//! (`echo`), CPU-bound work (`work`), waiting that uses no CPU (`sleep`), a
//! non-idempotent update whose double execution would show (`incr`), and
//! reads and writes of shared data (`get`/`put`, and `read`/`write` which
//! also carry the key's version: held in memory, or, with an origin
//! configured, read through the node's lease cache from the origin store,
//! so a pool of nodes shares them).
//!
//! The implementation counts how often each method ran, so an end-to-end test
//! can check that a retried at-most-once call ran once.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use ebb::rpc::service::ServiceCodec;
use serde::{Deserialize, Serialize};

/// How many keys `put` and `incr` each keep; past it, new keys are refused
/// with [`DemoError::StoreFull`] (existing keys can still be updated).
pub const MAX_KEYS: usize = 10_000;

/// The longest `work` spins in one call; longer requests are cut to this.
pub const MAX_WORK_MICROS: u64 = 10_000_000;

/// The longest `sleep` waits in one call; longer requests are cut to this.
pub const MAX_SLEEP_MILLIS: u64 = 60_000;

/// The largest factor by which a node may stretch `work` (a deliberately
/// slow node in a benchmark).
pub const MAX_WORK_SCALE: u64 = 100;

/// How `work` holds the node for its time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WorkMode {
    /// Keeps one CPU busy: real CPU-bound work.
    #[default]
    Spin,
    /// Blocks the node's thread without using a CPU: the node is as busy as
    /// with `Spin`, so it still queues like a CPU-bound server, but many
    /// such nodes fit on a machine with fewer cores (benchmarks of
    /// balancing, where the nodes must not starve the balancer of CPU).
    Block,
}

/// The demo service's interface. Method ids follow this order; do not reorder.
#[ebb::service]
pub trait Demo {
    /// Returns `msg` unchanged.
    #[idempotent]
    async fn echo(&self, msg: String) -> String;

    /// Keeps one CPU busy for `micros` microseconds (at most
    /// `MAX_WORK_MICROS`) and returns the microseconds it was asked to spin
    /// after that cap.
    #[idempotent]
    #[blocking]
    async fn work(&self, micros: u64) -> u64;

    /// Waits `millis` milliseconds (at most `MAX_SLEEP_MILLIS`) without using
    /// a CPU and returns the milliseconds waited after that cap.
    #[idempotent]
    async fn sleep(&self, millis: u64) -> u64;

    /// Adds one to the counter `key` and returns its new value. Not
    /// idempotent: running it twice shows.
    async fn incr(&self, key: String) -> Result<u64, DemoError>;

    /// The value stored under `key`, if any.
    #[idempotent]
    async fn get(&self, key: String) -> Result<Option<String>, DemoError>;

    /// Stores `value` under `key`.
    async fn put(&self, key: String, value: String) -> Result<(), DemoError>;

    /// The value under `key` with its version (0: never written).
    #[idempotent]
    async fn read(&self, key: String) -> Result<Versioned, DemoError>;

    /// Stores `value` under `key`; returns the version it got.
    async fn write(&self, key: String, value: String) -> Result<u64, DemoError>;
}

/// A value and the version it was read at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    pub version: u64,
    pub value: Option<String>,
}

/// A demo method's own failure, sent back as its reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DemoError {
    #[error("store full: it holds at most {max_keys} keys; update an existing key instead")]
    StoreFull { max_keys: usize },
    #[error("origin store: {detail}")]
    Origin { detail: String },
    #[error("the stored value of key {key:?} is not UTF-8 text")]
    NotText { key: String },
}

/// The node's lease cache in front of the origin, reached over TCP.
pub type OriginCache = ebb_lease::cache::LeaseCache<ebb::rpc::transport::TcpClient>;

/// The services this build knows by name, for callers that speak JSON (the
/// CLI's `call`, the gateway's HTTP ingress) and need the method table and
/// argument types without an implementation.
pub fn service_codec(name: &str) -> Option<&'static dyn ServiceCodec> {
    match name {
        DemoCodec::NAME => Some(&DemoCodec),
        _ => None,
    }
}

/// The names [`service_codec`] accepts, for error messages.
pub const SERVICE_NAMES: &[&str] = &[DemoCodec::NAME];

const METHOD_COUNT: usize = DemoCodec::METHODS.len();

/// The in-memory implementation of [`Demo`].
#[derive(Debug)]
pub struct DemoService {
    counters: Mutex<HashMap<String, u64>>,
    /// Value and version per key, when no origin is configured.
    values: Mutex<HashMap<String, (u64, String)>>,
    origin: Option<OriginCache>,
    /// Executions per method, indexed by method id.
    executions: [AtomicU64; METHOD_COUNT],
    /// `work(micros)` holds the node for `micros * work_scale`.
    work_scale: u64,
    work_mode: WorkMode,
}

impl Default for DemoService {
    fn default() -> DemoService {
        DemoService::new()
    }
}

impl DemoService {
    pub fn new() -> DemoService {
        DemoService {
            counters: Mutex::new(HashMap::new()),
            values: Mutex::new(HashMap::new()),
            origin: None,
            executions: [const { AtomicU64::new(0) }; METHOD_COUNT],
            work_scale: 1,
            work_mode: WorkMode::Spin,
        }
    }

    /// Serves `get`/`put`/`read`/`write` through `cache` from the origin
    /// instead of from memory.
    pub fn with_origin(mut self, cache: OriginCache) -> DemoService {
        self.origin = Some(cache);
        self
    }

    async fn load(&self, key: String) -> Result<Versioned, DemoError> {
        let Some(cache) = &self.origin else {
            let values = self.values.lock().unwrap_or_else(PoisonError::into_inner);
            return Ok(values.get(&key).map_or(
                Versioned {
                    version: 0,
                    value: None,
                },
                |(v, s)| Versioned {
                    version: *v,
                    value: Some(s.clone()),
                },
            ));
        };
        let (version, bytes) = cache.read(&key).await.map_err(origin_error)?;
        let value = bytes
            .map(String::from_utf8)
            .transpose()
            .map_err(|_| DemoError::NotText { key })?;
        Ok(Versioned { version, value })
    }

    async fn store(&self, key: String, value: String) -> Result<u64, DemoError> {
        match &self.origin {
            Some(cache) => cache
                .put(&key, value.into_bytes())
                .await
                .map_err(origin_error),
            None => upsert(&self.values, key, |old| {
                (old.map_or(1, |(v, _)| *v + 1), value)
            })
            .map(|(v, _)| v),
        }
    }

    /// Makes `work` take `scale` times as long as asked (capped at
    /// `MAX_WORK_SCALE`, at least 1), held as `mode` says. The reply is
    /// unchanged, so callers cannot tell a slow node but by its latency.
    pub fn with_work(mut self, scale: u64, mode: WorkMode) -> DemoService {
        self.work_scale = scale.clamp(1, MAX_WORK_SCALE);
        self.work_mode = mode;
        self
    }

    /// How many times each method has run, by method name.
    pub fn executions(&self) -> BTreeMap<&'static str, u64> {
        DemoCodec::METHODS
            .iter()
            .zip(&self.executions)
            .map(|(m, n)| (m.name, n.load(Ordering::Relaxed)))
            .collect()
    }

    fn count(&self, method: &str) {
        if let Some(i) = DemoCodec::METHODS.iter().position(|m| m.name == method) {
            self.executions[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn origin_error(e: ebb_lease::cache::CacheError) -> DemoError {
    DemoError::Origin {
        detail: e.to_string(),
    }
}

/// Inserts or updates `key`, refusing a new key once `MAX_KEYS` are held.
fn upsert<V>(
    map: &Mutex<HashMap<String, V>>,
    key: String,
    update: impl FnOnce(Option<&mut V>) -> V,
) -> Result<V, DemoError>
where
    V: Clone,
{
    // A panic while holding the lock leaves the map itself consistent (every
    // update is a single insert), so a poisoned lock is still usable.
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = map.get_mut(&key) {
        let new = update(Some(v));
        *v = new.clone();
        return Ok(new);
    }
    if map.len() >= MAX_KEYS {
        return Err(DemoError::StoreFull { max_keys: MAX_KEYS });
    }
    let new = update(None);
    map.insert(key, new.clone());
    Ok(new)
}

impl Demo for DemoService {
    async fn echo(&self, msg: String) -> String {
        self.count("echo");
        msg
    }

    async fn work(&self, micros: u64) -> u64 {
        self.count("work");
        let micros = micros.min(MAX_WORK_MICROS);
        let busy = Duration::from_micros(micros.saturating_mul(self.work_scale));
        match self.work_mode {
            // Wall time is the point here: the method stands for a request
            // that needs this much CPU.
            WorkMode::Spin => {
                let until = Instant::now() + busy;
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            // Blocking the runtime's thread is the point: the node serves
            // nothing else meanwhile, exactly as when spinning.
            WorkMode::Block => std::thread::sleep(busy),
        }
        micros
    }

    async fn sleep(&self, millis: u64) -> u64 {
        self.count("sleep");
        let millis = millis.min(MAX_SLEEP_MILLIS);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn incr(&self, key: String) -> Result<u64, DemoError> {
        self.count("incr");
        upsert(&self.counters, key, |old| {
            old.map_or(1, |n| n.saturating_add(1))
        })
    }

    async fn get(&self, key: String) -> Result<Option<String>, DemoError> {
        self.count("get");
        Ok(self.load(key).await?.value)
    }

    async fn put(&self, key: String, value: String) -> Result<(), DemoError> {
        self.count("put");
        self.store(key, value).await.map(|_| ())
    }

    async fn read(&self, key: String) -> Result<Versioned, DemoError> {
        self.count("read");
        self.load(key).await
    }

    async fn write(&self, key: String, value: String) -> Result<u64, DemoError> {
        self.count("write");
        self.store(key, value).await
    }
}

#[cfg(test)]
mod tests;
