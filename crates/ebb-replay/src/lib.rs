//! Replays a trace of calls against a live ebb pool and records what
//! happened, second by second: what `ebb demo` runs.
//!
//! - [`trace`]: per-second arrival counts, built in (seeded) or from a file.
//! - [`record`]: the run's per-second record, turned into an
//!   [`ebb_report::Run`].
//! - [`control`]: the autoscaler's decisions logged as the gateway makes
//!   them, and the pool's nodes by state.
//! - [`load`]: a trace replayed through `ebb-load`'s open-loop engine into
//!   the record.
//! - [`calls`]: the demo's call mix, the engine's target.
//! - [`origin`]: the origin store the demo's nodes share, its reads and
//!   writes counted.
//! - [`live`]: the terminal view (a redrawn panel on a terminal, plain
//!   lines otherwise).

pub mod calls;
pub mod control;
pub mod demo;
pub mod live;
pub mod load;
pub mod origin;
pub mod record;
pub mod trace;
