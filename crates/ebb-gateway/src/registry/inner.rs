//! The state behind the registry's lock: lookups, the load admission
//! judges, and handing a node to a request.

use std::sync::Arc;

use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::admission::{self, Load, NodeLoad, ServiceTimeSource};
use ebb_policy::balance::NodeState;
use ebb_policy::outlier::Verdict;

use super::{Inner, Life, Registry, Slot};

impl Inner {
    pub(super) fn index(&self, id: NodeId) -> Option<usize> {
        self.meta.iter().position(|m| m.id == id)
    }

    pub(super) fn report(&mut self, node: NodeId, ok: bool, now: Instant) -> Option<Instant> {
        if ok {
            self.outliers.on_success(node);
            return None;
        }
        let pool = self.views.len();
        let Verdict::Eject { until } = self.outliers.on_failure(node, pool, now) else {
            return None;
        };
        self.counters.ejections += 1;
        if let Some(i) = self.index(node) {
            if self.meta[i].life == Life::Ready {
                self.views[i].state = NodeState::Draining;
                self.balancer.on_nodes_changed(&self.views);
            }
        }
        Some(until)
    }

    pub(super) fn load(&self, now: Instant) -> Load {
        // Each ready node serves as many at once as its capacity.
        let ready = self
            .views
            .iter()
            .zip(&self.meta)
            .filter(|(v, _)| v.is_ready())
            .map(|(_, m)| m.capacity as usize)
            .sum();
        let booting = self.meta.iter().filter(|m| m.life == Life::Booting);
        let mut capacity_at = booting
            .map(|m| (m.started_at + self.expected_boot).max(now))
            .min();
        if ready == 0 && capacity_at.is_none() && self.target > 0 {
            // A replacement is about to be started.
            capacity_at = Some(now + self.expected_boot);
        }
        // The work on the ready nodes and their service time as the nodes
        // report them: the gateway's own timing (its fallback) includes its
        // own queueing, which would refuse work the nodes could do once the
        // gateway is saturated.
        let nodes = self
            .views
            .iter()
            .zip(&self.meta)
            .filter(|(v, _)| v.is_ready())
            .map(|(v, m)| NodeLoad {
                in_flight: v.in_flight,
                reported_queue: v.reported_queue,
                reported_service_time: m.reported_service_time,
            });
        let gateway_timing = Nanos(self.service_time as u64);
        let (in_flight, service_time) = match self.admission.service_time_from {
            ServiceTimeSource::Nodes => {
                // Calls on nodes that are not ready (draining) are not
                // ahead of a new request: no new request goes there.
                let reported = admission::from_nodes(nodes, gateway_timing);
                (reported.in_flight, reported.service_time)
            }
            ServiceTimeSource::Gateway => (
                self.views.iter().map(|v| v.in_flight as usize).sum(),
                gateway_timing,
            ),
        };
        Load {
            held: self.held.len(),
            held_bytes: self.held_bytes,
            in_flight,
            ready,
            service_time,
            capacity_at,
        }
    }

    /// Copies the load `nodes[i]` last reported (calls executing, other
    /// callers' included) into its view, where `:reported` balancers and
    /// `/status` read it. A node that has not reported yet counts as 0.
    pub(super) fn refresh_reported(&mut self, i: usize) {
        if let Some(client) = &self.meta[i].client {
            self.views[i].reported_queue = client.reported_load().unwrap_or(0);
            self.meta[i].reported_service_time = client.reported_service_time();
        }
    }

    /// Whether a request that failed on `excluded` may go to `nodes[i]`
    /// now: ready, not one it failed on, and below its bound in flight.
    pub(super) fn may_take(&self, i: usize, excluded: &[NodeId]) -> bool {
        self.views[i].is_ready()
            && self.views[i].in_flight < self.max_in_flight_per_node
            && !excluded.contains(&self.meta[i].id)
    }

    /// The least busy node a request that failed on `excluded` may go to,
    /// other than `avoid`.
    pub(super) fn other_node(&self, excluded: &[NodeId], avoid: Option<NodeId>) -> Option<usize> {
        (0..self.views.len())
            .filter(|&i| self.may_take(i, excluded) && avoid != Some(self.meta[i].id))
            .min_by_key(|&i| self.views[i].in_flight)
    }

    /// Counts a request in flight on `nodes[i]` and hands out its slot.
    pub(super) fn take(&mut self, i: usize, me: &Registry, now: Instant) -> Option<Slot> {
        let client = self.meta[i].client.clone()?;
        debug_assert!(self.views[i].is_ready());
        let ahead = self.views[i].in_flight;
        self.views[i].in_flight += 1;
        Some(Slot {
            node: self.meta[i].id,
            client,
            gone: Arc::clone(&self.meta[i].gone),
            ahead,
            unclaimed: Some((me.clone(), now)),
        })
    }
}
