//! A JSON call with small arguments and a large reply has its reply
//! converted to JSON on a worker thread, so the I/O loop (a
//! single-threaded runtime here) keeps answering other calls on the same
//! connection meanwhile; a small reply is converted inline.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Gate, HOLD_LIMIT, assert_echo_answers, serve_on_one_thread};
use ebb_rpc::service::{
    BoxFuture, CallContext, CallOptions, DispatchError, JsonReply, MethodInfo, ServiceCodec,
    ServiceDispatch, dispatch_json_through,
};
use ebb_rpc::transport::TcpClient;
use ebb_rpc::transport::server::MAX_INLINE_JSON_BYTES;
use tokio::sync::mpsc;

static METHODS: [MethodInfo; 3] = [
    MethodInfo {
        service: "Big",
        id: 0,
        name: "big",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
    MethodInfo {
        service: "Big",
        id: 1,
        name: "small",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
    MethodInfo {
        service: "Big",
        id: 2,
        name: "echo",
        idempotent: true,
        blocking: false,
        params: &[],
        returns: "Vec<u8>",
    },
];

/// The codec's reply conversion announces the thread it runs on and, for
/// `big`, holds that thread until the gate opens, standing in for the
/// seconds converting megabytes keeps a core busy.
struct Conversions {
    converting: mpsc::UnboundedSender<(&'static str, String)>,
    gate: Gate,
}

static CONVERSIONS: Mutex<Option<Arc<Conversions>>> = Mutex::new(None);

fn installed_conversions() -> Arc<Conversions> {
    Arc::clone(CONVERSIONS.lock().unwrap().as_ref().unwrap())
}

struct BigCodec;

impl ServiceCodec for BigCodec {
    fn name(&self) -> &'static str {
        "Big"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn encode_json_args(
        &self,
        _: &MethodInfo,
        _: serde_json::Value,
    ) -> Result<Bytes, DispatchError> {
        Ok(Bytes::new())
    }
    fn decode_json_reply(
        &self,
        method: &MethodInfo,
        reply: &[u8],
    ) -> Result<serde_json::Value, DispatchError> {
        let g = installed_conversions();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let _ = g.converting.send((method.name, thread));
        if method.name == "big" {
            g.gate.wait();
        }
        Ok(serde_json::json!(reply.len()))
    }
}

/// `big` replies with more bytes than are converted inline, `small` with
/// a few, `echo` with its arguments; JSON goes through [`BigCodec`] as a
/// generated service's does.
struct Big;

impl ServiceDispatch for Big {
    fn name(&self) -> &'static str {
        "Big"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        &METHODS
    }
    fn dispatch(&self, id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            match id {
                0 => Ok(Bytes::from(vec![7u8; MAX_INLINE_JSON_BYTES + 1])),
                1 => Ok(Bytes::from_static(b"small")),
                2 => Ok(args),
                _ => Err(DispatchError::UnknownMethod(format!("Big#{id}"))),
            }
        })
    }
    fn json_codec(&self) -> Option<&'static dyn ServiceCodec> {
        Some(&BigCodec)
    }
    fn dispatch_json_split(
        &self,
        method_id: u16,
        args: serde_json::Value,
        cx: CallContext,
    ) -> BoxFuture<'_, Result<JsonReply, DispatchError>> {
        dispatch_json_through(self, &BigCodec, method_id, args, cx)
    }
}

/// A server on a single-threaded runtime of its own thread, so a reply
/// converted inline would stop its I/O dead.
fn spawn_server() -> String {
    serve_on_one_thread(Big, |server| server)
}

#[tokio::test]
async fn a_large_json_reply_is_converted_off_the_io_loop() {
    let (converting, mut conversions) = mpsc::unbounded_channel();
    let g = Arc::new(Conversions {
        converting,
        gate: Gate::default(),
    });
    *CONVERSIONS.lock().unwrap() = Some(Arc::clone(&g));
    let addr = spawn_server();
    let client = Arc::new(TcpClient::connect(&addr).await.unwrap());
    let args = serde_json::json!({});
    let big = {
        let (c, args) = (Arc::clone(&client), args.clone());
        tokio::spawn(async move { c.call_json(0, true, &args, CallOptions::default()).await })
    };
    let (method, thread) = tokio::time::timeout(HOLD_LIMIT, conversions.recv())
        .await
        .expect("the big reply's conversion started")
        .unwrap();
    assert_eq!(method, "big");
    assert!(
        thread.starts_with("ebb-worker"),
        "the big reply was converted on {thread:?}, not a worker thread"
    );
    // Sent after the JSON call on the same connection, answered while its
    // reply's conversion holds a thread: the I/O loop is not that thread.
    assert_echo_answers(&client, &METHODS[2]).await;
    assert!(
        !big.is_finished(),
        "the big reply was still being converted"
    );
    g.gate.open();
    assert_eq!(
        big.await.unwrap().unwrap(),
        serde_json::json!(MAX_INLINE_JSON_BYTES + 1)
    );

    // A small reply is converted where the call ran: on the I/O loop.
    let small = client
        .call_json(1, true, &args, CallOptions::default())
        .await
        .unwrap();
    assert_eq!(small, serde_json::json!(5));
    let (method, thread) = conversions.recv().await.unwrap();
    assert_eq!(method, "small");
    assert!(!thread.starts_with("ebb-worker"), "{thread:?}");
}
