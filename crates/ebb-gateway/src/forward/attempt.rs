//! One attempt of a call on one node as a future (the async path's), and
//! what the end of any attempt tells the registry: the node's in-flight
//! count given back, a latency sample, its health.

use std::task::Poll;

use bytes::Bytes;
use ebb_core::{Instant, Nanos, NodeId};
use ebb_rpc::CallError;
use ebb_rpc::service::{CallOptions, MethodInfo, Transport};

use super::Forwarder;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::registry::{Ended, Registry, Slot, gone_cause};
use crate::service::Encoding;

/// How long a call on a node just declared gone may take to say whether it
/// was ever sent (its transport ends it at once when it can tell); past
/// this it counts as sent.
pub const ABANDONED_CALL_WAIT_MS: u64 = 100;

/// What one attempt on one node came to.
pub(super) enum Attempt {
    /// The node's outcome, and when the attempt had it: the one reading
    /// of the clock at a call's end, shared by the node's bookkeeping and
    /// the call's record (its response time).
    Reply(Result<Bytes, CallError>, Instant),
    NodeGone,
}

/// Releases a node's in-flight count however the attempt ends (a caller
/// that gives up drops the future mid-call).
struct InFlight<'a> {
    registry: &'a Registry,
    clock: &'a Clock,
    metrics: &'a Metrics,
    node: NodeId,
    ahead: u32,
    started: Instant,
    answered: bool,
    /// What the outcome says about the node's health, if anything.
    health: Option<bool>,
    /// When the attempt had its outcome; unset, the clock is read (a
    /// caller that gave up dropped the attempt).
    ended: Option<Instant>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let now = self.ended.unwrap_or_else(|| self.clock.now());
        let latency = self.answered.then(|| now.saturating_since(self.started));
        let ended = Ended {
            latency,
            ahead: self.ahead,
            health: self.health,
            response: None,
        };
        if self.registry.finish(self.node, ended, now) {
            self.metrics.ejected();
        }
    }
}

/// Whether an attempt's outcome was the node's answer (a latency sample).
fn answered(outcome: &Result<Bytes, CallError>) -> bool {
    matches!(outcome, Ok(_) | Err(CallError::Remote { .. }))
}

/// What an attempt's outcome says about its node's health, if anything
/// (not a refusal under load, not the caller's bad arguments).
fn health_of(outcome: &Result<Bytes, CallError>) -> Option<bool> {
    match outcome {
        Ok(_) => Some(true),
        Err(CallError::Remote { .. } | CallError::Panicked { .. } | CallError::Codec { .. }) => {
            Some(false)
        }
        Err(_) => None,
    }
}

impl Forwarder {
    /// What the end of an attempt started at `started` on `node` tells the
    /// registry and the hedge delay: the node's in-flight count given
    /// back, a latency sample if the node answered, its health, and
    /// `response`, the time the request took, when this end answers it.
    pub(super) fn attempt_ended(
        &self,
        node: NodeId,
        ahead: u32,
        started: Instant,
        outcome: &Result<Bytes, CallError>,
        (now, response): (Instant, Option<Nanos>),
    ) {
        if outcome.is_ok() {
            self.observe_latency(started, Some(now));
        }
        let latency = answered(outcome).then(|| now.saturating_since(started));
        let ended = Ended {
            latency,
            ahead,
            health: health_of(outcome),
            response,
        };
        if self.registry.finish(node, ended, now) {
            self.metrics.ejected();
        }
    }

    /// One call on one node, cut short if the node is declared gone.
    /// `this` is the forwarder borrowed, or owned (an `Arc`) when the
    /// attempt may outlive its caller (a hedge's losing copy).
    pub(super) async fn attempt<F: std::ops::Deref<Target = Forwarder>>(
        this: F,
        slot: Slot,
        method: &'static MethodInfo,
        args: Bytes,
        encoding: Encoding,
        left: Nanos,
        now: Instant,
    ) -> Attempt {
        let this = &*this;
        let mut slot = slot;
        slot.claim();
        let (node, client, gone, ahead) = (
            slot.node,
            slot.client.clone(),
            std::sync::Arc::clone(&slot.gone),
            slot.ahead,
        );
        drop(slot);
        let mut guard = InFlight {
            registry: &this.registry,
            clock: &this.clock,
            node,
            ahead,
            started: now,
            answered: false,
            health: None,
            ended: None,
            metrics: &this.metrics,
        };
        let options = CallOptions::default().with_timeout(left);
        // Its request leaves with those of the other calls started in
        // this turn of the runtime (`batch.rs`).
        this.turn_writes.hold(&client);
        let call = match encoding {
            Encoding::Postcard => client.call(method, args, options),
            Encoding::Json => client.call_json_text(method, args, options),
        };
        let mut call = call;
        let outcome = if client.abandons_at_once() {
            // `Registry::set_gone` sets `gone`, then abandons the node's
            // calls, which ends them at once; a call started as that
            // happened is abandoned here. Nothing to watch per call.
            let mut looked = false;
            let answered = std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                Poll::Pending if !std::mem::replace(&mut looked, true) && *gone.borrow() => {
                    client.abandon_calls(&gone_cause(node));
                    call.as_mut().poll(cx)
                }
                polled => polled,
            });
            Some(answered.await)
        } else {
            let mut gone = gone.subscribe();
            let answered = tokio::select! {
                biased;
                r = &mut call => Some(r),
                _ = gone.wait_for(|g| *g) => None,
            };
            match answered {
                Some(r) => Some(r),
                None => {
                    // The node is gone: its transport ends the calls it
                    // holds, saying which never left (those did not run
                    // and may go to another node, at-most-once or not).
                    client.abandon_calls(&gone_cause(node));
                    let wait = std::time::Duration::from_millis(ABANDONED_CALL_WAIT_MS);
                    tokio::time::timeout(wait, &mut call).await.ok()
                }
            }
        };
        let Some(r) = outcome else {
            return Attempt::NodeGone;
        };
        let ended = this.clock.now();
        guard.ended = Some(ended);
        guard.answered = answered(&r);
        guard.health = health_of(&r);
        if r.is_ok() {
            this.observe_latency(now, Some(ended));
        }
        Attempt::Reply(r, ended)
    }
}
