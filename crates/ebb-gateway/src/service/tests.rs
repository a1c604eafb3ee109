//! Described tables, and which nodes may join which pool.

use ebb_rpc::service::{MethodDescription, ParamDescription};

use super::*;

fn greeter() -> ServiceDescription {
    let m = |id: u16, name: &str, idempotent: bool| MethodDescription {
        id,
        name: name.into(),
        idempotent,
        params: vec![ParamDescription {
            name: "name".into(),
            ty: "String".into(),
        }],
        returns: "String".into(),
    };
    ServiceDescription {
        service: "Greeter".into(),
        methods: vec![m(0, "hello", true), m(1, "sign", false)],
    }
}

#[test]
fn a_described_table_keeps_ids_names_and_idempotence() {
    let d = Described::leak(greeter()).expect("ids count from 0");
    let served = Served::Described(d);
    let sign = served.method("sign").expect("sign is described");
    assert_eq!(
        (sign.id, sign.idempotent, sign.service),
        (1, false, "Greeter")
    );
    assert!(served.method_by_id(0).expect("hello").idempotent);
    let e = served.method("bye").expect_err("no such method");
    assert!(e.to_string().contains("hello, sign"), "{e}");
    assert!(served.method_by_id(2).is_err());
}

#[test]
fn json_arguments_of_a_described_service_travel_as_json() {
    let served = Served::Described(Described::leak(greeter()).expect("valid"));
    let hello = served.method("hello").expect("hello");
    let (bytes, enc) = served
        .encode_json_args(hello, serde_json::json!({"name": "ann"}))
        .expect("an object");
    assert_eq!(enc, Encoding::Json);
    assert_eq!(&bytes[..], br#"{"name":"ann"}"#);
    assert!(
        served
            .encode_json_args(hello, serde_json::json!([1]))
            .is_err()
    );
    let reply = served
        .decode_json_reply(hello, br#""hello, ann""#, Encoding::Json)
        .expect("JSON text");
    assert_eq!(reply, "hello, ann");
}

#[test]
fn a_node_joins_only_with_the_same_methods_and_semantics() {
    let served = Served::Described(Described::leak(greeter()).expect("valid"));
    assert_eq!(served.admits(&greeter()), Ok(()));
    let mut other = greeter();
    other.service = "Demo".into();
    assert!(
        served
            .admits(&other)
            .expect_err("another service")
            .contains("Demo")
    );
    let mut flipped = greeter();
    flipped.methods[1].idempotent = true;
    let e = served.admits(&flipped).expect_err("sign turned idempotent");
    assert!(e.contains("sign"), "{e}");
    let mut shorter = greeter();
    shorter.methods.pop();
    assert!(served.admits(&shorter).is_err());
}

#[test]
fn the_first_node_defines_a_learned_service_and_later_ones_must_fit() {
    let cell = ServiceCell::new(ServiceSource::Describe {
        expect: Some("Greeter".into()),
    });
    assert!(cell.get().is_none());
    let mut demo = greeter();
    demo.service = "Demo".into();
    let e = cell
        .admit(demo.clone())
        .expect_err("not the expected service");
    assert!(e.contains("expects Greeter"), "{e}");
    assert!(cell.get().is_none(), "a refused node defines nothing");
    cell.admit(greeter())
        .expect("the first greeter defines the pool");
    assert_eq!(cell.get().map(|s| s.name()), Some("Greeter"));
    cell.admit(greeter()).expect("a second greeter fits");
    let mut flipped = greeter();
    flipped.methods[0].idempotent = false;
    assert!(cell.admit(flipped).is_err());
}

#[test]
fn ids_out_of_order_are_refused() {
    let mut d = greeter();
    d.methods.swap(0, 1);
    let e = Described::leak(d).expect_err("ids out of order");
    assert!(e.contains("position 0"), "{e}");
}
