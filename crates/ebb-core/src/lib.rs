//! The vocabulary every other ebb crate shares: time as integer nanoseconds (instants and spans apart),
//! identifiers, the `Clock` seam between real time and simulated time, and a
//! seeded random number generator.
//!
//! Decisions elsewhere in ebb take `now` and an [`Rng`] as arguments instead of
//! reading the wall clock or a thread-local generator; that is what lets the
//! simulator and the deterministic fault tests replay a run from its seed.

pub mod clock;
pub mod ids;
pub mod rng;
pub mod time;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{ClientId, NodeId};
pub use rng::Rng;
pub use time::{Instant, Nanos};
