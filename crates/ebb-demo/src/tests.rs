#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use ebb::rpc::service::{LocalTransport, ServiceDispatch};

fn client() -> DemoClient<LocalTransport<DemoServer<DemoService>>> {
    DemoClient::new(LocalTransport::new(DemoServer::new(DemoService::new())))
}

fn service(c: &DemoClient<LocalTransport<DemoServer<DemoService>>>) -> &DemoService {
    c.transport().dispatcher().service()
}

#[test]
fn method_table_matches_the_documented_contract() {
    let table: Vec<(u16, &str, bool)> = DemoCodec::METHODS
        .iter()
        .map(|m| (m.id, m.name, m.idempotent))
        .collect();
    assert_eq!(
        table,
        [
            (0, "echo", true),
            (1, "work", true),
            (2, "sleep", true),
            (3, "incr", false),
            (4, "get", true),
            (5, "put", false),
            (6, "read", true),
            (7, "write", false),
        ]
    );
    assert_eq!(DemoCodec::NAME, "Demo");
}

#[tokio::test]
async fn every_method_answers_through_the_typed_client() {
    let c = client();
    assert_eq!(c.echo("hi".into()).await.unwrap(), "hi");
    assert_eq!(c.work(50).await.unwrap(), 50);
    assert_eq!(c.sleep(1).await.unwrap(), 1);
    assert_eq!(c.incr("a".into()).await.unwrap(), Ok(1));
    assert_eq!(c.incr("a".into()).await.unwrap(), Ok(2));
    assert_eq!(c.incr("b".into()).await.unwrap(), Ok(1));
    assert_eq!(c.get("k".into()).await.unwrap(), Ok(None));
    assert_eq!(c.put("k".into(), "v".into()).await.unwrap(), Ok(()));
    assert_eq!(c.get("k".into()).await.unwrap(), Ok(Some("v".into())));
    assert_eq!(c.write("k".into(), "w".into()).await.unwrap(), Ok(2));
    assert_eq!(
        c.read("k".into()).await.unwrap(),
        Ok(Versioned {
            version: 2,
            value: Some("w".into())
        })
    );
    let runs = service(&c).executions();
    let expected = [
        ("echo", 1),
        ("get", 2),
        ("incr", 3),
        ("put", 1),
        ("read", 1),
        ("sleep", 1),
        ("work", 1),
        ("write", 1),
    ];
    assert_eq!(runs.into_iter().collect::<Vec<_>>(), expected);
}

#[test]
fn the_demo_is_known_by_name() {
    let codec = crate::service_codec("Demo").unwrap();
    assert_eq!(codec.methods(), DemoCodec::METHODS);
    assert!(crate::service_codec("Nope").is_none());
    assert_eq!(crate::SERVICE_NAMES, ["Demo"]);
}

#[tokio::test]
async fn executions_count_each_run_per_method() {
    let c = client();
    c.incr("a".into()).await.unwrap().unwrap();
    c.incr("a".into()).await.unwrap().unwrap();
    c.echo("x".into()).await.unwrap();
    let runs = service(&c).executions();
    assert_eq!(runs["incr"], 2);
    assert_eq!(runs["echo"], 1);
    assert_eq!(runs["put"], 0);
    assert_eq!(runs.len(), DemoCodec::METHODS.len());
}

#[tokio::test]
async fn work_spins_at_least_the_requested_time() {
    let started = std::time::Instant::now();
    let c = client();
    assert_eq!(c.work(2_000).await.unwrap(), 2_000);
    assert!(started.elapsed() >= std::time::Duration::from_micros(2_000));
}

#[tokio::test(start_paused = true)]
async fn sleep_waits_at_most_max_sleep_millis() {
    let c = client();
    let started = tokio::time::Instant::now();
    assert_eq!(c.sleep(u64::MAX).await.unwrap(), MAX_SLEEP_MILLIS);
    // Paused time advances only as far as the sleep asked.
    assert_eq!(
        started.elapsed(),
        std::time::Duration::from_millis(MAX_SLEEP_MILLIS)
    );
}

#[tokio::test]
async fn store_refuses_new_keys_past_max_keys_but_updates_old_ones() {
    let c = client();
    let svc = service(&c);
    for i in 0..MAX_KEYS {
        svc.put(format!("k{i}"), "v".into()).await.unwrap();
    }
    let full = Err(DemoError::StoreFull { max_keys: MAX_KEYS });
    assert_eq!(c.put("new".into(), "v".into()).await.unwrap(), full);
    assert_eq!(c.put("k0".into(), "w".into()).await.unwrap(), Ok(()));
    assert_eq!(c.get("k0".into()).await.unwrap(), Ok(Some("w".into())));
    // Counters have their own bound.
    assert_eq!(c.incr("c".into()).await.unwrap(), Ok(1));
}

#[tokio::test]
async fn json_dispatch_names_arguments() {
    let server = DemoServer::new(DemoService::new());
    let v = server
        .dispatch_json("incr", json!({"key": "a"}))
        .await
        .unwrap();
    assert_eq!(v, json!({"Ok": 1}));
    let v = server
        .dispatch_json("put", json!({"key": "a", "value": "b"}))
        .await
        .unwrap();
    assert_eq!(v, json!({"Ok": null}));
    let v = server
        .dispatch_json("get", json!({"key": "a"}))
        .await
        .unwrap();
    assert_eq!(v, json!({"Ok": "b"}));
    let e = server.dispatch_json("work", json!({"micros": "ten"})).await;
    assert!(
        matches!(&e, Err(ebb::rpc::service::DispatchError::BadArgs(m)) if m.contains("`micros` expects u64")),
        "{e:?}"
    );
}

/// A slow node's `work` holds it `scale` times as long (sleep and spin both
/// last at least the time asked, so the lower bound cannot flake) and
/// answers exactly as a normal node does.
#[tokio::test]
async fn work_scale_stretches_work_but_not_the_reply() {
    for mode in [WorkMode::Block, WorkMode::Spin] {
        let slow = DemoClient::new(LocalTransport::new(DemoServer::new(
            DemoService::new().with_work(5, mode),
        )));
        let started = Instant::now();
        assert_eq!(slow.work(2_000).await.unwrap(), 2_000);
        assert!(started.elapsed() >= Duration::from_millis(10), "{mode:?}");
    }
}
