//! Admission control: refuse at once what cannot finish in time.
//!
//! A request that would wait behind more work than its deadline allows is
//! better refused now, with a hint of when to come back, than accepted and
//! timed out later: the caller learns in microseconds instead of after its
//! whole deadline, and the pool spends no capacity on an answer nobody will
//! read. The estimate is the one of an M/G/k queue in its simplest form:
//! the work ahead (requests held plus in service) spread over the ready
//! nodes, times the measured service time, plus the request's own service.
//!
//! The figures come from the nodes when they report them ([`from_nodes`]):
//! the calls each node says it is executing, and the service time each
//! measured itself. A gateway's own timing of its calls includes its own
//! queueing, so once its core is saturated it would see slow nodes where
//! there are fast ones, and refuse work the nodes could do.
//!
//! The estimate sees only the work the gateway has handed on. Requests
//! that wait inside the gateway itself (behind a saturated ingress, or held
//! while a node has room the gateway has not used) are not in it;
//! [`admit_delay`] refuses by that delay: once a request waited longer than
//! `max_gateway_delay` from its read at the ingress to its dispatch
//! decision, or, while dispatch is behind ([`dispatch_behind`]), the oldest
//! held one has, new ones are refused at once. A held FIFO that waits for
//! busy nodes is the estimate's to judge. Refusing is cheaper than
//! forwarding, so the gateway catches up, and what it does take is fresh
//! enough to meet its deadline (the idea of CoDel, Nichols and Jacobson
//! 2012: judge a queue by how long its items wait, not by its length).
//!
//! State: none; the caller passes what it measured. Cost: O(1), O(nodes)
//! for [`from_nodes`] and [`dispatch_behind`].

mod config;
mod decide;
mod delay;
mod load;

pub use config::{
    AdmissionConfig, DEFAULT_MAX_GATEWAY_DELAY, DEFAULT_MAX_HELD_BYTES, DEFAULT_MAX_HELD_REQUESTS,
    ServiceTimeSource, UNMEASURED_RETRY_AFTER,
};
pub use decide::{Admit, Refusal, admit};
pub use delay::{GatewayDelay, NodeCalls, admit_delay, admit_hold, dispatch_behind};
pub use load::{Load, NodeLoad, PoolLoad, expected_finish, from_nodes};

#[cfg(test)]
mod tests;
