//! The demo's calls as an `ebb-load` [`Target`]: the main method, or for a
//! seeded share of the arrivals one of the mixed-in calls, spread over a
//! few client connections to the gateway, with the mixed-in calls'
//! sends and successes tallied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use ebb_load::{Outcome, Target};
use ebb_rpc::service::{BoxFuture, CallOptions, MethodInfo, Transport};
use ebb_rpc::transport::TcpClient;

/// Per mille of arrivals taken by all of a demo's mixed-in calls together
/// at most; the rest call the main method.
pub const MIX_PER_MILLE: u32 = 1_000;

/// Sent and answered calls of one mixed-in call in a run.
#[derive(Debug, Default)]
pub struct MixTally {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
}

/// One mixed-in call, encoded: its method, its argument variants (one is
/// picked per call) and its share of the arrivals.
pub struct Mixed {
    pub method: &'static MethodInfo,
    pub variants: Vec<Bytes>,
    pub per_mille: u32,
}

/// What the engine calls for each arrival.
pub struct DemoCalls {
    pub clients: Vec<Arc<TcpClient>>,
    pub method: &'static MethodInfo,
    pub args: Bytes,
    pub mixed: Vec<Mixed>,
    /// One per entry of `mixed`.
    pub tallies: Arc<[MixTally]>,
    pub options: CallOptions,
    pub seed: u64,
    /// Arrivals so far: picks the connection and, with the seed, the call.
    pub next: AtomicUsize,
}

/// splitmix64: spreads an arrival's index into independent-looking bits,
/// so which call an arrival makes depends on the seed, not on the order
/// the tasks run in.
pub fn mix_bits(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl DemoCalls {
    /// The mixed-in call arrival `i` makes (its index in `mixed` and its
    /// arguments), or `None` for the main method.
    fn pick(&self, i: usize) -> Option<(usize, Bytes)> {
        let bits = mix_bits(self.seed, i as u64);
        let roll = (bits % u64::from(MIX_PER_MILLE)) as u32;
        let mut upto = 0;
        for (k, m) in self.mixed.iter().enumerate() {
            upto += m.per_mille;
            if roll < upto && !m.variants.is_empty() {
                let v = &m.variants[((bits >> 32) % m.variants.len() as u64) as usize];
                return Some((k, v.clone()));
            }
        }
        None
    }
}

impl Target for DemoCalls {
    fn call(&self) -> BoxFuture<'_, Outcome> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let picked = self.pick(i);
        Box::pin(async move {
            let c = &self.clients[i % self.clients.len()];
            let (method, args, tally) = match picked {
                Some((k, v)) => {
                    self.tallies[k].sent.fetch_add(1, Ordering::Relaxed);
                    (self.mixed[k].method, v, Some(&self.tallies[k]))
                }
                None => (self.method, self.args.clone(), None),
            };
            match c.call(method, args, self.options).await {
                Ok(_) => {
                    if let Some(t) = tally {
                        t.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Outcome::Ok
                }
                Err(e) => Outcome::from_call_error(e),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_a_function_of_the_seed_and_the_index() {
        assert_eq!(mix_bits(1, 7), mix_bits(1, 7));
        assert_ne!(mix_bits(1, 7), mix_bits(2, 7));
        assert_ne!(mix_bits(1, 7), mix_bits(1, 8));
    }
}
