//! Shared fixtures for the policies' unit tests.

use super::{NodeView, RequestInfo};

pub const NO_DEADLINE: RequestInfo = RequestInfo { deadline: None };

/// `n` Ready reference nodes with ids `0..n`.
pub fn pool(n: u32) -> Vec<NodeView> {
    (0..n).map(NodeView::ready).collect()
}
