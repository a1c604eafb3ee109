//! The server tells a service when it read each call's frame
//! (`CallContext::received`): the read of the socket, not the start of the
//! run, so a forwarding server can judge how long a call waited inside it.

use std::sync::Mutex;

use ebb_rpc::service::{CallContext, DeferredReply};

use super::*;

static STAMPED: [MethodInfo; 2] = [method(0, "deferred", true), method(1, "awaited", true)];

/// Keeps the context of every call: `deferred` is answered through its
/// reply handle, `awaited` as a future.
#[derive(Default)]
struct Stamping {
    seen: Mutex<Vec<(u16, Option<std::time::Instant>)>>,
}

impl ServiceDispatch for Stamping {
    fn name(&self) -> &'static str {
        "Test"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &STAMPED
    }
    fn dispatch(&self, _: u16, _: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async { panic!("the server always brings a context") })
    }
    fn dispatch_with(
        &self,
        id: u16,
        _: Bytes,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        self.seen.lock().unwrap().push((id, cx.received));
        Box::pin(async { Ok(Bytes::new()) })
    }
    fn defers(&self, id: u16) -> bool {
        id == 0
    }
    fn dispatch_deferred(&self, id: u16, _: Bytes, cx: CallContext, reply: DeferredReply) {
        self.seen.lock().unwrap().push((id, cx.received));
        reply.send(Ok(Bytes::new()));
    }
}

#[tokio::test]
async fn every_call_carries_the_instant_its_frame_was_read() {
    let svc = Arc::new(Stamping::default());
    let server = Server::bind("127.0.0.1:0", Arc::clone(&svc)).await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    tokio::spawn(server.run());
    let client = TcpClient::connect(&addr).await.unwrap();
    for m in &STAMPED {
        let before = std::time::Instant::now();
        client
            .call(m, Bytes::new(), CallOptions::default())
            .await
            .unwrap();
        let after = std::time::Instant::now();
        let seen = svc.seen.lock().unwrap().pop();
        let Some((id, Some(read))) = seen else {
            panic!("{}: no read instant in its context: {seen:?}", m.name);
        };
        assert_eq!(id, m.id);
        assert!(
            before <= read && read <= after,
            "{}: read at {read:?}, outside its call's {before:?}..{after:?}",
            m.name
        );
    }
}
