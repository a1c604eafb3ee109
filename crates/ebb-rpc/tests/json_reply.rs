//! A JSON call with small arguments and a large reply has its reply
//! converted to JSON on a worker thread, so the I/O loop (a
//! single-threaded runtime here) keeps answering other calls on the same
//! connection meanwhile; a small reply is converted inline.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ebb_rpc::service::{
    BoxFuture, CallContext, CallOptions, DispatchError, JsonReply, MethodInfo, ServiceCodec,
    ServiceDispatch, Transport, dispatch_json_through,
};
use ebb_rpc::transport::server::MAX_INLINE_JSON_BYTES;
use ebb_rpc::transport::{Server, TcpClient};
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

/// How long a held conversion waits for the gate before giving up, so a
/// broken test ends instead of hanging.
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// The codec's reply conversion announces the thread it runs on and, for
/// `big`, holds that thread until the gate opens, standing in for the
/// seconds converting megabytes keeps a core busy.
struct Gate {
    converting: mpsc::UnboundedSender<(&'static str, String)>,
    open: Mutex<bool>,
    opened: Condvar,
}

static GATE: Mutex<Option<Arc<Gate>>> = Mutex::new(None);

fn gate() -> Arc<Gate> {
    Arc::clone(GATE.lock().unwrap().as_ref().unwrap())
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
        let g = gate();
        let thread = std::thread::current().name().unwrap_or("").to_owned();
        let _ = g.converting.send((method.name, thread));
        if method.name == "big" {
            let open = g.open.lock().unwrap();
            let (_open, waited) = g
                .opened
                .wait_timeout_while(open, HOLD_LIMIT, |open| !*open)
                .unwrap();
            assert!(!waited.timed_out(), "the gate never opened");
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
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = Server::bind("127.0.0.1:0", Big).await.unwrap();
            addr_tx
                .send(server.local_addr().unwrap().to_string())
                .unwrap();
            let _ = server.run().await;
        });
    });
    addr_rx.recv().unwrap()
}

#[tokio::test]
async fn a_large_json_reply_is_converted_off_the_io_loop() {
    let (converting, mut conversions) = mpsc::unbounded_channel();
    let g = Arc::new(Gate {
        converting,
        open: Mutex::new(false),
        opened: Condvar::new(),
    });
    *GATE.lock().unwrap() = Some(Arc::clone(&g));
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
    let echo = client
        .call(
            &METHODS[2],
            Bytes::from_static(b"hi"),
            CallOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(&echo[..], b"hi");
    assert!(
        !big.is_finished(),
        "the big reply was still being converted"
    );
    *g.open.lock().unwrap() = true;
    g.opened.notify_all();
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
