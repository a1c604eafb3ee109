//! Helpers shared by ebb's tests (a dev-dependency only).
//!
//! - [`proc`]: start a program that prints `... listening on ADDR`, read the
//!   address back, kill it when the test ends.

pub mod proc;

pub use proc::Proc;
