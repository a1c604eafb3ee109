//! Hedging idempotent calls: a second copy on another node once the first
//! has not answered after the configured percentile of recent latencies;
//! the first answer wins.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_policy::hedge::{HedgeConfig, HedgeDelay};
use ebb_rpc::service::MethodInfo;

use super::Forwarder;
use super::attempt::Attempt;
use crate::registry::Slot;
use crate::service::Encoding;

impl Forwarder {
    /// Hedges idempotent calls: one that has not answered after the
    /// configured percentile of recent latencies gets a second copy on
    /// another node (if the retry budget allows and a node is free), and
    /// the first answer wins. At-most-once calls are never hedged.
    pub fn with_hedging(mut self, cfg: HedgeConfig) -> Forwarder {
        self.hedge = Some(Mutex::new(HedgeDelay::new(cfg)));
        self
    }

    fn hedge_delay(&self) -> Option<Nanos> {
        let h = self.hedge.as_ref()?;
        h.lock().unwrap_or_else(PoisonError::into_inner).delay()
    }

    /// Feeds the hedge delay a call that started at `started` and
    /// answered at `now` (`None`: now, read only if it is needed): without
    /// hedging, not even the clock is read.
    pub(super) fn observe_latency(&self, started: Instant, now: Option<Instant>) {
        if let Some(h) = &self.hedge {
            let now = now.unwrap_or_else(|| self.clock.now());
            let latency = now.saturating_since(started);
            h.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .observe(latency);
        }
    }

    /// A hedge takes from the retry budget like a retry.
    fn may_hedge(&self, now: Instant) -> bool {
        let granted = self.take_from_budget(now);
        if granted {
            self.metrics.hedged();
        }
        granted
    }

    /// The attempt on `slot`, and, for an idempotent call still unanswered
    /// after the hedge delay, a second one on another node; the first
    /// answer wins. The first copy goes at `at`; the call ends by
    /// `deadline`. Returns the node whose outcome counts; a node whose
    /// copy failed while the other answered is added to `tried`.
    ///
    /// A call that is not hedged awaits its one attempt here, and only a
    /// hedged one enters the (boxed) race of two: every call's future
    /// carries room for what it may await, and the race's two attempts and
    /// timer would make each forwarded call's future (allocated and moved
    /// once per call) twice as large.
    pub(super) async fn attempt_maybe_hedged(
        self: &Arc<Self>,
        slot: Slot,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (at, deadline): (Instant, Instant),
        tried: &mut Vec<NodeId>,
    ) -> (NodeId, Attempt) {
        let left = deadline.saturating_since(at);
        let delay = self
            .hedge_delay()
            .filter(|d| method.idempotent && *d < left);
        match delay {
            None => {
                let node = slot.node;
                let done = Self::attempt(&**self, slot, method, args.clone(), encoding, left, at);
                (node, done.await)
            }
            Some(delay) => {
                let race = self.hedged(slot, method, args, encoding, (at, deadline), delay, tried);
                Box::pin(race).await
            }
        }
    }

    /// [`Forwarder::attempt_maybe_hedged`] for a call hedged after `delay`.
    #[allow(clippy::too_many_arguments)]
    async fn hedged(
        self: &Arc<Self>,
        slot: Slot,
        method: &'static MethodInfo,
        args: &Bytes,
        encoding: Encoding,
        (at, deadline): (Instant, Instant),
        delay: Nanos,
        tried: &mut Vec<NodeId>,
    ) -> (NodeId, Attempt) {
        let first_node = slot.node;
        let left = deadline.saturating_since(at);
        // Owned and boxed, so the copy that loses can be left running.
        let attempt = |slot, left, at| {
            let this = Arc::clone(self);
            Box::pin(Self::attempt(
                this,
                slot,
                method,
                args.clone(),
                encoding,
                left,
                at,
            ))
        };
        let mut first = attempt(slot, left, at);
        let wait = std::time::Duration::from(delay);
        if let Ok(done) = tokio::time::timeout(wait, &mut first).await {
            return (first_node, done);
        }
        let now = self.clock.now();
        let mut excluded = tried.clone();
        excluded.push(first_node);
        // A node first (an unused slot gives itself back when dropped),
        // then the budget, so a hedge that cannot go costs nothing.
        let second_slot = self
            .registry
            .acquire_other(&excluded, now)
            .filter(|_| self.may_hedge(now));
        let Some(second_slot) = second_slot else {
            return (first_node, first.await);
        };
        let second_node = second_slot.node;
        let left = deadline.saturating_since(now);
        let mut second = attempt(second_slot, left, now);
        let (first_won, done) = tokio::select! {
            a = &mut first => (true, a),
            b = &mut second => (false, b),
        };
        let (winner, other_node, rest) = if first_won {
            (first_node, second_node, second)
        } else {
            (second_node, first_node, first)
        };
        if matches!(done, Attempt::Reply(Ok(_), _)) {
            if winner == second_node {
                self.metrics.hedge_won();
            }
            // The losing copy still runs on its node: left running here,
            // it keeps that node's in-flight count until its reply (or the
            // node's loss, or the call's deadline) ends it, so the
            // balancer and admission see the node as busy as it is. Such
            // tasks are bounded by the nodes' in-flight bounds.
            drop(tokio::spawn(rest));
            return (winner, done);
        }
        // The first to end failed: the other copy may still answer.
        tried.push(winner);
        (other_node, rest.await)
    }
}
