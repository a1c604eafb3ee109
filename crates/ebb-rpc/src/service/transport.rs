//! The client side of the contract: what carries one encoded call to a
//! server and brings back its reply or a typed failure.

use std::sync::Arc;

use bytes::Bytes;
use ebb_core::Nanos;

use super::{BoxFuture, CallOptions, CallSink, MethodInfo, WriteBatch};
use crate::CallError;

/// The client side: carries one encoded call to a server and brings back the
/// encoded reply or a typed failure. Generated client stubs
/// (`<Trait>Client<T: Transport>`) call this; the TCP client implements it
/// with the call-semantics state machine, [`LocalTransport`](super::LocalTransport) by a direct
/// in-process dispatch.
pub trait Transport: Send + Sync {
    /// `method` tells the transport the service, the id to put on the wire
    /// and whether the call may be resent (`idempotent`). `args` is the
    /// postcard-encoded argument tuple; the `Ok` value is the postcard-encoded
    /// reply.
    fn call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>>;

    /// Starts a postcard call whose outcome this transport hands to `sink`
    /// with `token` (exactly once: by its deadline at the latest), instead
    /// of through a future: whoever learns the outcome (a TCP client's
    /// reader) delivers it, with no task to wake. A transport that cannot
    /// gives `args` back unsent; the caller then uses [`Transport::call`].
    fn start_call(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
    ) -> Result<(), Bytes> {
        let _ = (method, options, sink, token);
        Err(args)
    }

    /// [`Transport::start_call`] for one of several calls started together
    /// (the calls of one read of a forwarding server's connection): the
    /// request may wait in `writes`, to leave with the others in one write
    /// per connection when the starter flushes it.
    fn start_call_in(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
        sink: &Arc<dyn CallSink>,
        token: u64,
        writes: &mut WriteBatch,
    ) -> Result<(), Bytes> {
        let _ = writes;
        self.start_call(method, args, options, sink, token)
    }

    /// Ends the calls this transport has outstanding, because the caller
    /// learned that the server is gone: each ends with `ConnectionLost`,
    /// `sent` saying whether a copy ever left (a never-sent call certainly
    /// did not run, so it may run elsewhere). Transports that cannot tell
    /// do nothing; their calls end as they would have.
    fn abandon_calls(&self, cause: &str) {
        let _ = cause;
    }

    /// Whether [`Transport::abandon_calls`] has ended every call outstanding
    /// on this transport, each outcome delivered, by the time it returns.
    /// A caller that learns of a server's end elsewhere then needs no watch
    /// of its own beside each call: abandoning is enough.
    fn abandons_at_once(&self) -> bool {
        false
    }

    /// Holds the requests of calls started from now on until
    /// [`Transport::release_writes`], so that calls started together
    /// leave with one write. A transport that writes nothing of its own
    /// holds nothing.
    fn hold_writes(&self) {}

    /// Writes what [`Transport::hold_writes`] held, and holds no more.
    fn release_writes(&self) {}

    /// Like [`Transport::call`], but `args` is JSON text (an object keyed by
    /// parameter name) for the server's JSON adapter, and the reply comes
    /// back as JSON text. Same call semantics. What a forwarder sends when
    /// it was not built with the service: a gateway serving a node binary
    /// whose methods it learned from `Describe` cannot encode postcard.
    /// A transport without JSON calls refuses before sending anything.
    fn call_json_text(
        &self,
        method: &'static MethodInfo,
        args: Bytes,
        options: CallOptions,
    ) -> BoxFuture<'_, Result<Bytes, CallError>> {
        let _ = (args, options);
        Box::pin(std::future::ready(Err(CallError::BadRequest {
            message: format!(
                "{}.{}: this transport carries postcard calls only, not JSON; nothing was sent",
                method.service, method.name
            ),
        })))
    }

    /// The load (calls executing) the server last reported in a reply or
    /// pong, if this transport hears such reports: what a gateway puts in
    /// its view of the node.
    fn reported_load(&self) -> Option<u32> {
        None
    }

    /// The service time the server last reported measuring itself (busy
    /// time per completed call), if this transport hears such reports:
    /// what a gateway's admission judges the node's capacity by.
    fn reported_service_time(&self) -> Option<Nanos> {
        None
    }
}

/// `Arc<T>` and `&T` carry calls whenever `T` does. Every method is
/// forwarded, the provided ones too, so what `T` overrides is kept; one
/// body for both, so a method added to the trait cannot be forwarded by
/// one and forgotten by the other.
macro_rules! forward_transport {
    ($($carrier:ty),+) => {$(
        impl<T: Transport + ?Sized> Transport for $carrier {
            fn call(
                &self,
                method: &'static MethodInfo,
                args: Bytes,
                options: CallOptions,
            ) -> BoxFuture<'_, Result<Bytes, CallError>> {
                (**self).call(method, args, options)
            }

            fn call_json_text(
                &self,
                method: &'static MethodInfo,
                args: Bytes,
                options: CallOptions,
            ) -> BoxFuture<'_, Result<Bytes, CallError>> {
                (**self).call_json_text(method, args, options)
            }

            fn start_call(
                &self,
                method: &'static MethodInfo,
                args: Bytes,
                options: CallOptions,
                sink: &Arc<dyn CallSink>,
                token: u64,
            ) -> Result<(), Bytes> {
                (**self).start_call(method, args, options, sink, token)
            }

            fn start_call_in(
                &self,
                method: &'static MethodInfo,
                args: Bytes,
                options: CallOptions,
                sink: &Arc<dyn CallSink>,
                token: u64,
                writes: &mut WriteBatch,
            ) -> Result<(), Bytes> {
                (**self).start_call_in(method, args, options, sink, token, writes)
            }

            fn abandon_calls(&self, cause: &str) {
                (**self).abandon_calls(cause)
            }

            fn abandons_at_once(&self) -> bool {
                (**self).abandons_at_once()
            }

            fn hold_writes(&self) {
                (**self).hold_writes()
            }

            fn release_writes(&self) {
                (**self).release_writes()
            }

            fn reported_load(&self) -> Option<u32> {
                (**self).reported_load()
            }

            fn reported_service_time(&self) -> Option<Nanos> {
                (**self).reported_service_time()
            }
        }
    )+};
}

forward_transport!(Arc<T>, &T);
