//! The runtime half on its own, with a hand-written dispatcher standing in
//! for generated code (the macro crate's tests cover the generated half).

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use serde_json::{Value, json};

use super::__private::{JsonArgs, decode_args, encode_args};
use super::*;
use crate::CallError;

const PARAMS: &[ParamInfo] = &[
    ParamInfo {
        name: "key",
        ty: "String",
    },
    ParamInfo {
        name: "limit",
        ty: "Option<u32>",
    },
];
const METHODS: &[MethodInfo] = &[MethodInfo {
    service: "Kv",
    id: 0,
    name: "scan",
    idempotent: true,
    blocking: false,
    params: PARAMS,
    returns: "u32",
}];
const FOREIGN: MethodInfo = MethodInfo {
    service: "Other",
    ..METHODS[0]
};

/// Replies with the length of the key plus the limit.
struct Kv;

impl ServiceDispatch for Kv {
    fn name(&self) -> &'static str {
        "Kv"
    }
    fn methods(&self) -> &'static [MethodInfo] {
        METHODS
    }
    fn dispatch(&self, method_id: u16, args: Bytes) -> BoxFuture<'_, Result<Bytes, DispatchError>> {
        Box::pin(async move {
            let m = self
                .method(method_id)
                .ok_or(DispatchError::UnknownMethod("?".into()))?;
            let (key, limit): (String, Option<u32>) = decode_args(m, &args)?;
            __private::encode_reply(m, &(key.len() as u32 + limit.unwrap_or(0)))
        })
    }
}

fn block_on<F: Future>(f: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a local call must complete in one poll"),
    }
}

#[test]
fn dispatch_errors_map_to_distinct_call_errors() {
    let cases = [
        (
            DispatchError::UnknownMethod("m".into()),
            CallError::UnknownMethod { method: "m".into() },
        ),
        (
            DispatchError::BadArgs("a".into()),
            CallError::BadRequest {
                message: "a".into(),
            },
        ),
        (
            DispatchError::EncodeReply("e".into()),
            CallError::Remote {
                message: "e".into(),
            },
        ),
        (
            DispatchError::BadReply("r".into()),
            CallError::Codec {
                message: "r".into(),
                sent: true,
            },
        ),
    ];
    for (from, to) in cases {
        assert_eq!(CallError::from(from), to);
    }
}

#[test]
fn call_options_default_to_the_documented_timeout() {
    assert_eq!(CallOptions::default().timeout, DEFAULT_CALL_TIMEOUT);
    let o = CallOptions::default().with_timeout(Nanos::from_millis(5));
    assert_eq!(o.timeout, Nanos::from_millis(5));
}

#[test]
fn local_transport_runs_the_dispatcher() {
    let t = LocalTransport::new(Kv);
    let args = encode_args(&METHODS[0], &("abc", Some(2u32))).unwrap();
    let reply = block_on(t.call(&METHODS[0], args, CallOptions::default())).unwrap();
    assert_eq!(postcard::from_bytes::<u32>(&reply).unwrap(), 5);
}

#[test]
fn local_transport_refuses_another_services_table() {
    let t = LocalTransport::new(Kv);
    let args = encode_args(&FOREIGN, &("abc", None::<u32>)).unwrap();
    let r = block_on(t.call(&FOREIGN, args, CallOptions::default()));
    assert!(matches!(r, Err(CallError::UnknownMethod { .. })), "{r:?}");
}

#[test]
fn binary_args_with_trailing_bytes_are_refused() {
    let args = encode_args(&METHODS[0], &("abc", Some(2u32), 9u8)).unwrap();
    let r = decode_args::<(String, Option<u32>)>(&METHODS[0], &args);
    assert!(matches!(r, Err(DispatchError::BadArgs(m)) if m.contains("trailing")));
}

#[test]
fn json_args_take_named_values_and_allow_a_missing_option() {
    let mut a = JsonArgs::new(&METHODS[0], json!({"key": "k"})).unwrap();
    assert_eq!(a.take::<String>(0).unwrap(), "k");
    assert_eq!(a.take::<Option<u32>>(1).unwrap(), None);
}

#[test]
fn json_args_errors_name_what_was_wrong() {
    let err = |args: Value| match JsonArgs::new(&METHODS[0], args).and_then(|mut a| {
        a.take::<String>(0)?;
        a.take::<Option<u32>>(1)
    }) {
        Err(DispatchError::BadArgs(m)) => m,
        other => panic!("expected BadArgs, got {other:?}"),
    };
    let m = err(json!({"key": "k", "lim": 1}));
    assert!(m.contains("unknown parameter `lim`"), "{m}");
    let m = err(json!({"limit": 1}));
    assert!(m.contains("`key` is missing (expects String)"), "{m}");
    let m = err(json!({"key": "k", "limit": -1}));
    assert!(m.contains("`limit` expects Option<u32>"), "{m}");
    let m = err(json!("k"));
    assert!(
        m.contains("Kv.scan(key: String, limit: Option<u32>)"),
        "{m}"
    );
    assert!(m.contains("got a string"), "{m}");
}

#[test]
fn unknown_method_names_list_the_known_ones() {
    match __private::method_by_name(METHODS, "Kv", "scna") {
        Err(DispatchError::UnknownMethod(m)) => assert_eq!(m, "Kv.scna (methods of Kv: scan)"),
        other => panic!("expected UnknownMethod, got {other:?}"),
    }
}

#[test]
fn a_dispatcher_without_a_json_adapter_says_so() {
    let r = block_on(Kv.dispatch_json("scan", json!({"key": "k"})));
    assert!(
        matches!(&r, Err(DispatchError::UnknownMethod(m)) if m.contains("no JSON adapter")),
        "{r:?}"
    );
}

#[test]
fn a_description_lists_methods_with_ids_flags_and_parameters() {
    let d = Kv.description();
    assert_eq!(d.service, "Kv");
    let scan = d.method("scan").unwrap();
    assert_eq!((scan.id, scan.idempotent), (0, true));
    assert_eq!(
        scan.signature(&d.service),
        "Kv.scan(key: String, limit: Option<u32>) -> u32"
    );
    let bytes = crate::wire::encode_payload(&d).unwrap();
    assert_eq!(
        crate::wire::decode_payload::<ServiceDescription>(&bytes).unwrap(),
        d
    );
}
