//! One module per subcommand.

pub mod addr;
pub mod call;
pub mod chaos;
pub mod demo;
pub mod info;
pub mod load;
pub mod node;
pub mod origin;
pub mod sim;
pub mod sim_lease;
pub mod sim_scale;
pub mod up;

/// Prints a line on stdout and flushes it at once (the bound address a
/// parent process waits for).
pub use ebb::node::announce;
pub mod sandbox;
pub mod vm;
