//! Helpers shared by ebb's tests (a dev-dependency only).
//!
//! - [`proc`]: start a program that prints `... listening on ADDR`, read the
//!   address back, kill it when the test ends.
//! - [`skip`]: a test that cannot run here says why by name, and fails in
//!   CI instead of passing silently.

pub mod proc;
pub mod skip;

pub use proc::Proc;
pub use skip::{containers_unavailable, in_ci, is_root, skip_or_fail};
