//! A cache for code that has no async runtime of its own (a node's
//! blocking methods, tests): the connection and the poller live on a thread
//! with a small runtime, and the cache handle is shared out of it.

use super::{CacheError, CacheSettings, LeaseCache};
use crate::api::OriginClient;

/// A holder id for this process: random, so a restarted node (an empty
/// cache) is a new holder and two nodes never share one.
pub fn random_holder_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// Connects to the origin at `addr` from a thread of its own (one small
/// runtime hosting the connection and the invalidation poller), so any
/// runtime, or none, can use the returned cache.
pub fn connect_in_background(
    addr: &str,
    settings: CacheSettings,
) -> Result<LeaseCache<ebb_rpc::transport::TcpClient>, CacheError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let addr = addr.to_owned();
    let spawned = std::thread::Builder::new()
        .name("lease-cache".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(CacheError::Start(format!("its runtime: {e}"))));
                    return;
                }
            };
            rt.block_on(async move {
                match ebb_rpc::transport::TcpClient::connect(&addr).await {
                    Ok(client) => {
                        let cache = LeaseCache::new(
                            OriginClient::new(client),
                            random_holder_id(),
                            settings,
                        );
                        let _ = tx.send(Ok(cache.clone()));
                        cache.run_poller().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(CacheError::Call(e)));
                    }
                }
            });
        });
    if let Err(e) = spawned {
        return Err(CacheError::Start(format!("its thread: {e}")));
    }
    rx.recv()
        .map_err(|_| CacheError::Start("its thread ended before connecting".into()))?
}
