//! The lease model: the protocol under faults ([`protocol`], checked by
//! [`check`]) and the origin's load and added delay against Gray and
//! Cheriton's analytic model.

pub mod check;
pub mod load;
pub mod protocol;
