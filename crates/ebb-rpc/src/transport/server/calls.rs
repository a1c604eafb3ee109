//! Running admitted calls: inline on the I/O loop (polled once, answered
//! in the read's batch when they finish at once), in the connection's set
//! of running calls (no task per call), deferred to a `DeferredReply`, or
//! on a worker thread for `#[blocking]` methods and large JSON. A panicking
//! method still ends its call, as `Panicked`, so its duplicates never wait
//! forever.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::running::{Ending, Finished, RunningCalls};
use super::shared::Core;
use super::{MAX_INLINE_JSON_BYTES, json};
use crate::semantics::{Action, ConnId, Incoming};
use crate::service::{
    BoxFuture, CallContext, DeferredReply, DispatchError, ReplySink, ServiceDispatch,
};
use crate::transport::framebuf::FrameBuf;
use crate::transport::frames;
use crate::transport::outbuf::OutBuf;
use crate::transport::write_batch::WriteBatch;
use crate::wire::{Message, Outcome};

/// Records a call that ended (ran or was cancelled); its reply joins the
/// `local` batch if it goes to that connection.
pub(super) fn finish_call<D>(
    core: &Core<D>,
    local: Option<(&Arc<OutBuf>, &mut FrameBuf)>,
    done: Finished,
) {
    let now = core.now();
    match done.ending {
        Ending::Ran(status, payload) => core.complete(done.key, status, payload, now, local),
        Ending::Cancelled => core.cancelled(done.key, now, local),
    }
}

/// Hands one frame to the session; answers what needs no run and returns
/// the call to run, if any. Answers go to `batch`, this read's replies.
pub(super) fn admit<D>(
    core: &Core<D>,
    batch: &mut FrameBuf,
    conn: ConnId,
    message: Message,
    now: ebb_core::Instant,
) -> Option<Incoming> {
    let action = core.lock().session.admit(conn, message, now);
    match action {
        Action::Execute(incoming) => Some(incoming),
        Action::Reply(reply) => {
            frames::append(&core.codec, &reply, batch);
            None
        }
        Action::Resize(mut resized) => {
            resized.capacity = resized.capacity.map(|asked| {
                let threads = usize::try_from(asked.get())
                    .ok()
                    .and_then(std::num::NonZeroUsize::new)
                    .unwrap_or(std::num::NonZeroUsize::MIN);
                let took = core.workers.resize(threads).get();
                u32::try_from(took)
                    .ok()
                    .and_then(std::num::NonZeroU32::new)
                    .unwrap_or(asked)
            });
            frames::append(&core.codec, &Message::Resized(resized), batch);
            None
        }
        Action::Wait | Action::Drop => None,
    }
}

/// Runs one call through the dispatcher. Most calls finish without waiting:
/// those are polled once here and answered inline, which lets their replies
/// share one write. A pending call joins `running`, the connection's set of
/// running calls, which its task polls with a real waker.
///
/// A panicking method must still complete its call, or its duplicates would
/// wait for it forever; the run is over either way, so unwind safety is not
/// at stake.
///
/// `started` is the read of the socket that brought the call; the service
/// is told it ([`CallContext::received`]), so a forwarding server can judge
/// how long the call waited inside it, at no clock read of its own.
///
/// `writes`: where a deferring dispatcher's writes elsewhere for the read's
/// calls wait (a forwarder's requests to its nodes), flushed by the caller
/// once the read's calls have all started; `None` for a call alone in its
/// read, whose writes leave at once.
pub(super) fn run_call<'a, D: ServiceDispatch>(
    core: &'a Arc<Core<D>>,
    (out, batch): (&Arc<OutBuf>, &mut FrameBuf),
    writes: Option<&mut WriteBatch>,
    running: &mut RunningCalls<'a>,
    incoming: Incoming,
    started: ebb_core::Instant,
) {
    let (key, overdue_at) = (incoming.key, incoming.overdue_at);
    let read = core.clock.to_tokio(started).into_std();
    let call_cx = CallContext::new(incoming.deadline).received_at(read);
    if !key.json && core.dispatch.defers(key.method) {
        return run_deferred(core, incoming, call_cx, writes);
    }
    let heavy_json = key.json && incoming.payload.len() > MAX_INLINE_JSON_BYTES;
    if heavy_json || core.dispatch.method(key.method).is_some_and(|m| m.blocking) {
        return run_blocking(core, incoming, call_cx);
    }
    let Ok(mut run) = std::panic::catch_unwind(AssertUnwindSafe(|| {
        start_run(core, incoming, true, call_cx)
    })) else {
        let (status, payload) = panicked();
        return core.complete(key, status, payload, started, Some((out, batch)));
    };
    let mut cx = Context::from_waker(Waker::noop());
    match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut cx))) {
        Ok(Poll::Pending) => running.push(key, overdue_at, run),
        // A call that finished at once finished at the batch's time.
        Ok(Poll::Ready(result)) => {
            let (status, payload) = frames::outcome_of(result);
            core.complete(key, status, payload, started, Some((out, batch)));
        }
        Err(_) => {
            let (status, payload) = panicked();
            core.complete(key, status, payload, started, Some((out, batch)));
        }
    }
}

/// A call its dispatcher answers later through a [`DeferredReply`]: no
/// future, no place in the connection's running set. A panic while it
/// starts drops the reply, which answers the call as panicked.
fn run_deferred<D: ServiceDispatch>(
    core: &Arc<Core<D>>,
    incoming: Incoming,
    cx: CallContext,
    writes: Option<&mut WriteBatch>,
) {
    let Incoming { key, payload, .. } = incoming;
    let sink: Arc<dyn ReplySink> = Arc::clone(core) as Arc<dyn ReplySink>;
    let reply = DeferredReply::new(sink, key);
    let dispatch = &core.dispatch;
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| match writes {
        Some(writes) => dispatch.dispatch_deferred_in(key.method, payload, cx, reply, writes),
        None => dispatch.dispatch_deferred(key.method, payload, cx, reply),
    }));
}

/// A method marked `#[blocking]`, or a call with large JSON arguments, runs
/// on a worker thread, off the I/O loop. One that waited for a worker past
/// its due does not start (the session records why). Once started it
/// cannot be cancelled: it holds its thread until it returns.
fn run_blocking<D: ServiceDispatch>(core: &Arc<Core<D>>, incoming: Incoming, cx: CallContext) {
    let (key, due) = (incoming.key, incoming.due);
    let task_core = Arc::clone(core);
    let job = Box::pin(async move {
        if !task_core.may_start(key, due) {
            return;
        }
        let start = || start_run(&task_core, incoming, false, cx);
        let started = std::panic::catch_unwind(AssertUnwindSafe(start));
        let (status, payload) = match started {
            Ok(mut run) => finish(&mut run).await,
            Err(_) => panicked(),
        };
        let now = task_core.now();
        task_core.complete(key, status, payload, now, None);
    });
    // No worker thread could start: run it here rather than lose it.
    if let Err(job) = core.workers.run(&tokio::runtime::Handle::current(), job) {
        tokio::spawn(job);
    }
}

pub(super) type Run<'a> = BoxFuture<'a, Result<bytes::Bytes, DispatchError>>;

/// Hands the call to the service (binary or JSON); nothing has run yet.
/// `on_io_loop`: the run is polled by the I/O loop, which a large JSON
/// reply's conversion must not hold up.
fn start_run<D: ServiceDispatch>(
    core: &Core<D>,
    incoming: Incoming,
    on_io_loop: bool,
    cx: CallContext,
) -> Run<'_> {
    let method = incoming.key.method;
    if incoming.key.json {
        let workers = on_io_loop.then_some(&core.workers);
        json::dispatch_json(&core.dispatch, workers, method, incoming.payload, cx)
    } else {
        core.dispatch.dispatch_with(method, incoming.payload, cx)
    }
}

/// Polls a started call to its end, catching a panic in any poll.
async fn finish(run: &mut Run<'_>) -> (Outcome, bytes::Bytes) {
    let outcome = std::future::poll_fn(|cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx))) {
            Ok(p) => p.map(Some),
            Err(_) => Poll::Ready(None),
        }
    })
    .await;
    outcome.map_or_else(panicked, frames::outcome_of)
}

pub(super) fn panicked() -> (Outcome, bytes::Bytes) {
    (
        Outcome::Panicked,
        bytes::Bytes::from_static(b"the method panicked"),
    )
}
