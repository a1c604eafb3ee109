//! A deterministic simulation of the lease protocol: one origin, caching
//! nodes with drifting clocks, a network that loses, duplicates and delays
//! messages, node and origin crashes. The holder and origin decisions are
//! `ebb_policy::lease`'s, the very code `ebb-lease` runs.
//!
//! A run has two phases (after TigerBeetle's VOPR): a fault phase in which
//! clients on every node read and write and faults strike, then healing
//! (no more loss or crashes, everyone up, no new operations) in which every
//! write still outstanding must complete within a bound. The history of
//! client operations goes to [`super::check`].
//!
//! Clocks: each machine's clock runs at `1 + ppm/10⁶` of real time, with
//! |ppm| chosen so that two clocks part by less than ε over one term; that
//! is the drift the protocol's ε is meant to absorb. Only spans are compared
//! on one machine, so clock offsets would change nothing and are left out.
//!
//! `config.rs` holds what a run takes and returns, `world.rs` the event
//! loop, network and crash schedule, `node.rs` and `origin.rs` what each
//! machine does with an event.

mod config;
mod node;
mod origin;
mod world;

pub use config::{Outcome, PlantedBug, ProtocolConfig, Stats};
pub use world::run;
