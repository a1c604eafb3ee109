//! The idle list shared by join-idle-queue and the central queue: nodes that
//! told the dispatcher they have nothing to do, in the order they said so.
//!
//! Entries remember the node's id as well as its index, so an index that now
//! names a different node (the caller reordered the pool) is recognised as
//! stale and dropped instead of receiving work meant for an idle node. The
//! list holds each index at most once, so its length is bounded by the pool
//! size.

use super::NodeView;
use ebb_core::NodeId;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug, Default)]
pub struct IdleList {
    queue: VecDeque<(usize, NodeId)>,
    /// `listed[i]` iff index `i` is in `queue`.
    listed: Vec<bool>,
}

impl IdleList {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Records `nodes[i]` as idle; a repeat report is a no-op.
    pub fn push(&mut self, nodes: &[NodeView], i: usize) {
        let Some(v) = nodes.get(i) else { return };
        if self.listed.len() < nodes.len() {
            self.listed.resize(nodes.len(), false);
        }
        if !self.listed[i] {
            self.listed[i] = true;
            self.queue.push_back((i, v.id));
        }
    }

    /// Removes and returns the oldest entry that still names a node in
    /// `nodes` for which `usable` holds; stale entries met on the way are
    /// dropped. Amortised O(1): each entry is removed once.
    pub fn pop(&mut self, nodes: &[NodeView], usable: impl Fn(&NodeView) -> bool) -> Option<usize> {
        while let Some((i, id)) = self.queue.pop_front() {
            if let Some(l) = self.listed.get_mut(i) {
                *l = false;
            }
            if nodes.get(i).is_some_and(|v| v.id == id && usable(v)) {
                return Some(i);
            }
        }
        None
    }

    /// Re-indexes entries after the pool changed, keeping nodes that are
    /// still present (found by id) and dropping the rest.
    pub fn remap(&mut self, nodes: &[NodeView]) {
        // Fast path, the common case of nodes added at the end or changing
        // state: every entry still names its node, so nothing moves and no
        // map is built.
        if self
            .queue
            .iter()
            .all(|&(i, id)| nodes.get(i).is_some_and(|v| v.id == id))
        {
            self.listed.resize(nodes.len(), false);
            return;
        }
        let index: HashMap<NodeId, usize> =
            nodes.iter().enumerate().map(|(i, v)| (v.id, i)).collect();
        let old = std::mem::take(&mut self.queue);
        self.listed.clear();
        self.listed.resize(nodes.len(), false);
        for (_, id) in old {
            if let Some(&i) = index.get(&id) {
                self.push(nodes, i);
            }
        }
    }
}
