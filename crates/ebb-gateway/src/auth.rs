//! Who may call the ingress, and how much each caller may have in flight
//! at once.
//!
//! - [`Tokens`]: bearer tokens from a file, compared in constant time (the
//!   comparison does not stop at the first differing byte, and every token
//!   is compared), so response timing does not reveal a token's prefix.
//!   The RPC ingress's server session checks them in each connection's
//!   handshake; the HTTP layer in each request's `Authorization` header.
//! - [`CallerBounds`]: HTTP requests in flight per caller (a token, or the
//!   peer address without authentication), so one caller cannot take the
//!   whole ingress or the held queue; the table of callers is bounded too.
//!   On the RPC ingress the server session bounds calls per caller itself
//!   ([`rpc_server_config`]).
//!
//! Mechanism only: the HTTP layer decides where these apply.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The bearer tokens the ingress accepts: the RPC layer's, so HTTP and RPC
/// ingress check the same file the same way (constant time, every token).
pub use ebb_rpc::auth::{AuthError, MAX_TOKEN_BYTES, MAX_TOKENS, Tokens};

/// Callers tracked at once; a new caller past it is refused until one ends
/// its requests.
pub const MAX_TRACKED_CALLERS: usize = 65_536;

/// The RPC ingress server's configuration: the default bounds, plus at
/// most `max_in_flight_per_caller` calls executing per caller (its bearer
/// token, or its peer address without tokens) over all its connections. A
/// call beyond it is refused `CallerInFlight` (it did not run) while other
/// callers are served.
pub fn rpc_server_config(max_in_flight_per_caller: usize) -> ebb_rpc::semantics::ServerConfig {
    ebb_rpc::semantics::ServerConfig {
        max_in_flight_per_caller: Some(max_in_flight_per_caller),
        ..ebb_rpc::semantics::ServerConfig::default()
    }
}

/// Who a request counts against: a small copyable key, so letting a
/// request in builds no string (it is named only when refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The bearer token at this index of the token file.
    Token(usize),
    /// The peer's address, when no tokens are configured.
    Peer(IpAddr),
    /// Neither is known (a connection served without its peer address).
    Unknown,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Token(i) => write!(f, "token {}", i + 1),
            Caller::Peer(ip) => write!(f, "{ip}"),
            Caller::Unknown => f.write_str("unknown peer"),
        }
    }
}

/// Why a caller's request was not let in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallerRefusal {
    #[error("caller {caller} already has {limit} requests in flight, its bound")]
    AtBound { caller: Caller, limit: usize },
    #[error("{MAX_TRACKED_CALLERS} callers have requests in flight; no room for another")]
    TooManyCallers,
}

/// Keyed by foldhash, seeded at random per process and per table, not
/// std's SipHash-1-3, which is several times dearer on these small keys
/// and is hashed twice per request (enter and leave). A hostile peer cannot aim a flood at one bucket: the
/// keys it has any say in are its own addresses, the seed never leaves the
/// process (the table is never iterated into a reply), so it cannot tell
/// which addresses collide; and the table holds at most
/// [`MAX_TRACKED_CALLERS`] callers, so even a worst case stays bounded.
#[derive(Debug)]
struct Table {
    max_per_caller: usize,
    in_flight: HashMap<Caller, usize, RandomState>,
}

/// Requests in flight per caller.
#[derive(Clone, Debug)]
pub struct CallerBounds {
    table: Arc<Mutex<Table>>,
}

/// A caller's place; dropping it ends the request.
#[derive(Debug)]
pub struct CallerSlot {
    table: Arc<Mutex<Table>>,
    caller: Caller,
}

fn lock(t: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Every critical section leaves the table consistent.
    t.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CallerBounds {
    pub fn new(max_per_caller: usize) -> CallerBounds {
        CallerBounds {
            table: Arc::new(Mutex::new(Table {
                max_per_caller,
                in_flight: HashMap::default(),
            })),
        }
    }

    pub fn max_per_caller(&self) -> usize {
        lock(&self.table).max_per_caller
    }

    /// Lets one more request of `caller` in, or says why not.
    pub fn enter(&self, caller: Caller) -> Result<CallerSlot, CallerRefusal> {
        let mut t = lock(&self.table);
        let limit = t.max_per_caller;
        let tracked = t.in_flight.len();
        match t.in_flight.get_mut(&caller) {
            Some(n) if *n >= limit => return Err(CallerRefusal::AtBound { caller, limit }),
            Some(n) => *n += 1,
            None if tracked >= MAX_TRACKED_CALLERS => return Err(CallerRefusal::TooManyCallers),
            None if limit == 0 => return Err(CallerRefusal::AtBound { caller, limit }),
            None => {
                t.in_flight.insert(caller, 1);
            }
        }
        debug_assert!(t.in_flight.len() <= MAX_TRACKED_CALLERS);
        Ok(CallerSlot {
            table: Arc::clone(&self.table),
            caller,
        })
    }

    /// Requests `caller` has in flight.
    pub fn in_flight(&self, caller: Caller) -> usize {
        lock(&self.table)
            .in_flight
            .get(&caller)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for CallerSlot {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(n) = t.in_flight.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                t.in_flight.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_is_bounded_on_its_own_and_slots_give_back() {
        let b = CallerBounds::new(2);
        let (a, other) = (Caller::Token(0), Caller::Peer([127, 0, 0, 1].into()));
        let a1 = b.enter(a).expect("first");
        let a2 = b.enter(a).expect("second");
        let e = b.enter(a).expect_err("third is over the bound");
        assert_eq!(
            e,
            CallerRefusal::AtBound {
                caller: a,
                limit: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "caller token 1 already has 2 requests in flight, its bound"
        );
        let o = b.enter(other).expect("another caller is not affected");
        drop(a1);
        let a3 = b.enter(a).expect("room again");
        drop((a2, a3, o));
        assert_eq!((b.in_flight(a), b.in_flight(other)), (0, 0));
        assert!(
            lock(&b.table).in_flight.is_empty(),
            "idle callers forgotten"
        );
    }
}
