//! The expansion end to end in one process: typed client → `LocalTransport`
//! → generated dispatch → implementation → typed reply, and the JSON paths.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use ebb_rpc::CallError;
use ebb_rpc::service::{
    CallOptions, DispatchError, LocalTransport, ServiceCodec, ServiceDispatch, Transport, call_json,
};
use serde_json::json;

/// Runs a future that never waits on anything external to completion.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    for _ in 0..1_000 {
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("future did not complete in 1000 polls");
}

#[ebb_rpc_macros::service(crate = ::ebb_rpc)]
pub trait Store {
    /// Returns its argument.
    #[idempotent]
    async fn echo(&self, msg: String) -> String;
    async fn incr(&self, key: String, by: u64) -> u64;
    #[idempotent]
    async fn get(&self, key: String) -> Option<u64>;
    async fn reset(&self);
    #[idempotent]
    async fn find(&self, r#type: String, limit: Option<u32>) -> Vec<String>;
    #[idempotent]
    async fn version(&self) -> (u16, u16) {
        (1, 0)
    }
}

#[derive(Default)]
struct Counters {
    map: Mutex<HashMap<String, u64>>,
    calls: AtomicU64,
}

impl Store for Counters {
    async fn echo(&self, msg: String) -> String {
        self.calls.fetch_add(1, Ordering::Relaxed);
        msg
    }
    async fn incr(&self, key: String, by: u64) -> u64 {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut map = self.map.lock().unwrap();
        let v = map.entry(key).or_default();
        *v += by;
        *v
    }
    async fn get(&self, key: String) -> Option<u64> {
        self.map.lock().unwrap().get(&key).copied()
    }
    async fn reset(&self) {
        self.map.lock().unwrap().clear();
    }
    async fn find(&self, r#type: String, limit: Option<u32>) -> Vec<String> {
        let n = limit.unwrap_or(2) as usize;
        (0..n)
            .map(|i| format!("{type}-{i}", type = r#type))
            .collect()
    }
}

fn local() -> LocalTransport<StoreServer<Counters>> {
    LocalTransport::new(StoreServer::new(Counters::default()))
}

#[test]
fn method_table_has_ids_in_declaration_order_and_semantics() {
    let names: Vec<&str> = StoreCodec::METHODS.iter().map(|m| m.name).collect();
    assert_eq!(names, ["echo", "incr", "get", "reset", "find", "version"]);
    for (i, m) in StoreCodec::METHODS.iter().enumerate() {
        assert_eq!(usize::from(m.id), i);
        assert_eq!(m.service, "Store");
    }
    let idem: Vec<bool> = StoreCodec::METHODS.iter().map(|m| m.idempotent).collect();
    assert_eq!(idem, [true, false, true, false, true, true]);
    let find = &StoreCodec::METHODS[4];
    assert_eq!(find.params[0].name, "type", "raw identifiers lose their r#");
    assert_eq!(find.params[1].ty, "Option<u32>");
    assert_eq!(find.returns, "Vec<String>");
    assert_eq!(StoreCodec::METHODS[3].returns, "()");
    assert_eq!(StoreCodec.name(), "Store");
}

#[test]
fn typed_client_round_trips_through_local_transport() {
    let client = StoreClient::new(local());
    block_on(async {
        assert_eq!(client.echo("hi".into()).await.unwrap(), "hi");
        assert_eq!(client.incr("a".into(), 2).await.unwrap(), 2);
        assert_eq!(client.incr("a".into(), 3).await.unwrap(), 5);
        assert_eq!(client.get("a".into()).await.unwrap(), Some(5));
        client.reset().await.unwrap();
        assert_eq!(client.get("a".into()).await.unwrap(), None);
        assert_eq!(
            client.find("x".into(), Some(1)).await.unwrap(),
            vec!["x-0".to_string()]
        );
        assert_eq!(client.version().await.unwrap(), (1, 0));
    });
    let calls = client
        .transport()
        .dispatcher()
        .service()
        .calls
        .load(Ordering::Relaxed);
    assert_eq!(
        calls, 3,
        "echo once, incr twice: each call ran exactly once"
    );
}

#[test]
fn client_over_shared_dyn_transport() {
    let transport: Arc<dyn Transport> = Arc::new(local());
    let client = StoreClient::new(transport).with_options(CallOptions::default());
    assert_eq!(block_on(client.incr("k".into(), 1)).unwrap(), 1);
}

#[test]
fn json_dispatch_with_named_args() {
    let server = StoreServer::new(Counters::default());
    block_on(async {
        let v = server
            .dispatch_json("incr", json!({"key": "a", "by": 4}))
            .await
            .unwrap();
        assert_eq!(v, json!(4));
        let v = server
            .dispatch_json("get", json!({"key": "a"}))
            .await
            .unwrap();
        assert_eq!(v, json!(4));
        // An Option parameter may be left out; a method without parameters
        // accepts `{}` or `null`.
        let v = server
            .dispatch_json("find", json!({"type": "t"}))
            .await
            .unwrap();
        assert_eq!(v, json!(["t-0", "t-1"]));
        assert_eq!(
            server.dispatch_json("reset", json!(null)).await.unwrap(),
            json!(null)
        );
        assert_eq!(
            server.dispatch_json("version", json!({})).await.unwrap(),
            json!([1, 0])
        );
    });
}

fn bad_args(r: Result<serde_json::Value, DispatchError>) -> String {
    match r {
        Err(DispatchError::BadArgs(msg)) => msg,
        other => panic!("expected BadArgs, got {other:?}"),
    }
}

#[test]
fn json_errors_name_the_parameter_and_its_type() {
    let server = StoreServer::new(Counters::default());
    block_on(async {
        let msg = bad_args(
            server
                .dispatch_json("incr", json!({"key": 5, "by": 1}))
                .await,
        );
        assert!(msg.contains("`key`") && msg.contains("String"), "{msg}");
        assert!(msg.contains("Store.incr(key: String, by: u64)"), "{msg}");

        let msg = bad_args(
            server
                .dispatch_json("incr", json!({"key": "a", "by": "x"}))
                .await,
        );
        assert!(msg.contains("`by`") && msg.contains("u64"), "{msg}");

        let msg = bad_args(
            server
                .dispatch_json("incr", json!({"kee": "a", "by": 1}))
                .await,
        );
        assert!(msg.contains("unknown parameter `kee`"), "{msg}");

        let msg = bad_args(server.dispatch_json("incr", json!({"by": 1})).await);
        assert!(msg.contains("`key` is missing (expects String)"), "{msg}");

        let msg = bad_args(server.dispatch_json("incr", json!(["a", 1])).await);
        assert!(
            msg.contains("JSON object") && msg.contains("an array"),
            "{msg}"
        );
    });
}

#[test]
fn unknown_methods_are_typed_errors() {
    let server = StoreServer::new(Counters::default());
    block_on(async {
        match server.dispatch_json("nope", json!({})).await {
            Err(DispatchError::UnknownMethod(m)) => {
                assert!(m.contains("Store.nope") && m.contains("incr"), "{m}")
            }
            other => panic!("expected UnknownMethod, got {other:?}"),
        }
        let r = server.dispatch(999, bytes_of(&())).await;
        assert!(matches!(r, Err(DispatchError::UnknownMethod(_))), "{r:?}");
    });
    let r = block_on(call_json(
        &StoreCodec,
        &local(),
        "nope",
        json!({}),
        CallOptions::default(),
    ));
    assert!(matches!(r, Err(CallError::UnknownMethod { .. })), "{r:?}");
}

fn bytes_of<T: serde::Serialize>(v: &T) -> ebb_rpc::service::__private::Bytes {
    ebb_rpc::service::__private::encode_args(&StoreCodec::METHODS[0], v).unwrap()
}

#[test]
fn malformed_binary_args_are_bad_args() {
    let server = StoreServer::new(Counters::default());
    // incr expects (String, u64); an empty payload cannot decode.
    let r = block_on(server.dispatch(1, bytes_of(&())));
    assert!(matches!(r, Err(DispatchError::BadArgs(_))), "{r:?}");
    // Trailing bytes mean the caller has another signature in mind.
    let r = block_on(server.dispatch(0, bytes_of(&("a".to_string(), 7u8))));
    assert!(
        matches!(r, Err(DispatchError::BadArgs(ref m)) if m.contains("trailing")),
        "{r:?}"
    );
}

#[test]
fn codec_converts_json_without_an_implementation() {
    let incr = StoreCodec.method("incr").unwrap();
    assert_eq!(incr.id, 1);
    let bytes = StoreCodec
        .encode_json_args(incr, json!({"key": "a", "by": 3}))
        .unwrap();
    // The codec's bytes are what the typed client sends.
    assert_eq!(bytes, bytes_of(&("a".to_string(), 3u64)));

    let server = StoreServer::new(Counters::default());
    let reply = block_on(server.dispatch(incr.id, bytes)).unwrap();
    assert_eq!(
        StoreCodec.decode_json_reply(incr, &reply).unwrap(),
        json!(3)
    );

    let r = StoreCodec.decode_json_reply(incr, &[]);
    assert!(matches!(r, Err(DispatchError::BadReply(_))), "{r:?}");
}

#[test]
fn call_json_goes_through_any_transport() {
    let t = local();
    let opts = CallOptions::default();
    let v = block_on(call_json(
        &StoreCodec,
        &t,
        "incr",
        json!({"key": "z", "by": 9}),
        opts,
    ));
    assert_eq!(v.unwrap(), json!(9));
    let r = block_on(call_json(
        &StoreCodec,
        &t,
        "incr",
        json!({"key": 1, "by": 9}),
        opts,
    ));
    assert!(matches!(r, Err(CallError::BadRequest { message: m }) if m.contains("`key`")));
}

#[test]
fn a_method_table_of_another_service_is_refused() {
    #[ebb_rpc_macros::service(crate = "::ebb_rpc")]
    trait Other {
        async fn echo(&self, msg: String) -> String;
    }
    let t = local();
    let r = block_on(t.call(
        &OtherCodec::METHODS[0],
        bytes_of(&("x",)),
        CallOptions::default(),
    ));
    assert!(matches!(r, Err(CallError::UnknownMethod { .. })), "{r:?}");
    let r = StoreCodec.encode_json_args(&OtherCodec::METHODS[0], json!({"msg": "x"}));
    assert!(matches!(r, Err(DispatchError::UnknownMethod(_))), "{r:?}");
}
