//! Worker nodes and the providers that start them.
//!
//! Every kind of node (thread, process, container, virtual machine) sits
//! behind one [`provider::NodeProvider`] interface so the autoscaler can ask
//! for capacity without knowing how it is isolated, and can weigh each kind's
//! measured start time.

pub mod child;
pub mod container;
pub mod process;
pub mod provider;
pub mod sandbox;
pub mod scratch;
pub mod thread;
pub mod vm;
