//! The admission rules, one test each, with time as plain integers.

use ebb_core::{Instant, Nanos};

use super::*;

fn load(held: usize, in_flight: usize, ready: usize, service_ms: u64) -> Load {
    Load {
        held,
        held_bytes: 0,
        in_flight,
        ready,
        service_time: Nanos::from_millis(service_ms),
        capacity_at: None,
    }
}

const T0: Instant = Instant::EPOCH;

#[test]
fn an_idle_pool_takes_anything_that_fits_one_service_time() {
    let cfg = AdmissionConfig::default();
    let l = load(0, 0, 2, 10);
    let d = T0 + Nanos::from_millis(10);
    assert_eq!(admit(&cfg, &l, 0, d, T0, false), Admit::Accept);
    let tight = T0 + Nanos::from_millis(9);
    assert!(matches!(
        admit(&cfg, &l, 0, tight, T0, false),
        Admit::Refuse {
            why: Refusal::DeadlineUnmeetable { .. },
            ..
        }
    ));
}

#[test]
fn work_ahead_is_spread_over_ready_nodes() {
    // 2 nodes, 2 in service, 4 held: the new one waits 3 rounds of 10 ms.
    let l = load(4, 2, 2, 10);
    assert_eq!(expected_finish(&l, T0), T0 + Nanos::from_millis(40));
    let cfg = AdmissionConfig::default();
    let refused = admit(&cfg, &l, 0, T0 + Nanos::from_millis(39), T0, true);
    assert_eq!(
        refused,
        Admit::Refuse {
            why: Refusal::DeadlineUnmeetable {
                expected_finish: T0 + Nanos::from_millis(40)
            },
            retry_after: Nanos::from_millis(40),
        }
    );
    assert_eq!(
        admit(&cfg, &l, 0, T0 + Nanos::from_millis(40), T0, true),
        Admit::Accept
    );
}

#[test]
fn nothing_measured_means_no_deadline_refusal() {
    let cfg = AdmissionConfig::default();
    let l = load(100, 100, 1, 0);
    assert_eq!(admit(&cfg, &l, 0, T0, T0, true), Admit::Accept);
}

#[test]
fn the_held_queue_is_bounded_in_requests_and_bytes_only_when_holding() {
    let cfg = AdmissionConfig {
        deadline_check: false,
        max_held_requests: 2,
        max_held_bytes: 100,
        ..AdmissionConfig::default()
    };
    let far = T0 + Nanos::from_secs(100);
    let full = load(2, 0, 1, 1);
    assert!(matches!(
        admit(&cfg, &full, 0, far, T0, true),
        Admit::Refuse {
            why: Refusal::QueueFull { limit: 2 },
            ..
        }
    ));
    assert_eq!(admit(&cfg, &full, 0, far, T0, false), Admit::Accept);
    let bytes = Load {
        held_bytes: 60,
        ..load(1, 0, 1, 1)
    };
    assert!(matches!(
        admit(&cfg, &bytes, 41, far, T0, true),
        Admit::Refuse {
            why: Refusal::QueueBytesFull { limit: 100 },
            ..
        }
    ));
    assert_eq!(admit(&cfg, &bytes, 40, far, T0, true), Admit::Accept);
}

fn node(in_flight: u32, reported_queue: u32, service_ms: Option<u64>) -> NodeLoad {
    NodeLoad {
        in_flight,
        reported_queue,
        reported_service_time: service_ms.map(Nanos::from_millis),
    }
}

/// Four nodes, 40 calls on them, 20 held, a 100 ms deadline.
fn saturated_gateway(nodes: &[NodeLoad], gateway_timing: Nanos) -> (Admit, Admit) {
    let cfg = AdmissionConfig::default();
    let deadline = T0 + Nanos::from_millis(100);
    let by_gateway = Load {
        held: 20,
        held_bytes: 0,
        in_flight: nodes.iter().map(|n| n.in_flight as usize).sum(),
        ready: nodes.len(),
        service_time: gateway_timing,
        capacity_at: None,
    };
    let reported = from_nodes(nodes.iter().copied(), gateway_timing);
    let by_nodes = Load {
        in_flight: reported.in_flight,
        service_time: reported.service_time,
        ..by_gateway
    };
    (
        admit(&cfg, &by_gateway, 0, deadline, T0, true),
        admit(&cfg, &by_nodes, 0, deadline, T0, true),
    )
}

#[test]
fn fast_nodes_behind_a_slow_gateway_are_not_refused() {
    // The gateway's own timing (its queueing included) says 20 ms per
    // call; the nodes measured 1 ms themselves. 60 calls ahead over 4
    // nodes is 15 rounds: 300 ms by the gateway's figure, 16 ms by the
    // nodes'.
    let nodes = [node(10, 3, Some(1)); 4];
    let (by_gateway, by_nodes) = saturated_gateway(&nodes, Nanos::from_millis(20));
    assert!(
        matches!(by_gateway, Admit::Refuse { .. }),
        "the gateway's figure refuses: {by_gateway:?}"
    );
    assert_eq!(by_nodes, Admit::Accept, "the nodes' figures take it");
}

#[test]
fn slow_nodes_are_refused_however_fast_the_gateway_saw_them() {
    // The gateway saw 1 ms calls (say, cheap ones that happened to go
    // alone); the nodes report 20 ms of service per call.
    let nodes = [node(10, 10, Some(20)); 4];
    let (by_gateway, by_nodes) = saturated_gateway(&nodes, Nanos::from_millis(1));
    assert_eq!(by_gateway, Admit::Accept, "the gateway's figure takes it");
    assert!(
        matches!(
            by_nodes,
            Admit::Refuse {
                why: Refusal::DeadlineUnmeetable { .. },
                ..
            }
        ),
        "the nodes' figures refuse: {by_nodes:?}"
    );
}

#[test]
fn node_reports_add_up_as_capacities() {
    // 1 ms and 4 ms nodes: 1.25 calls per ms together, 1.6 ms each as
    // the harmonic mean; the work is the larger count per node.
    let l = from_nodes([node(2, 5, Some(1)), node(3, 0, Some(4))], Nanos::ZERO);
    assert_eq!(l.in_flight, 8);
    assert_eq!(l.service_time, Nanos::from_micros(1_600));
    // A node without a report counts with the fallback; with neither,
    // nothing is measured (and nothing is refused for time).
    let l = from_nodes(
        [node(0, 0, Some(2)), node(0, 0, None)],
        Nanos::from_millis(2),
    );
    assert_eq!(l.service_time, Nanos::from_millis(2));
    let l = from_nodes([node(1, 0, None)], Nanos::ZERO);
    assert_eq!(l.service_time, Nanos::ZERO);
    // No ready node: no capacity to spread work over, no figure.
    assert_eq!(
        from_nodes([], Nanos::from_millis(1)).service_time,
        Nanos::ZERO
    );
}

/// The wait from a request's read to its dispatch decision is always the
/// gateway's own: refused past the bound, whatever the nodes are doing.
#[test]
fn a_request_read_long_before_its_decision_is_refused_as_gateway_behind() {
    let cfg = AdmissionConfig {
        max_gateway_delay: Nanos::from_millis(20),
        ..AdmissionConfig::default()
    };
    let now = T0 + Nanos::from_millis(1_000);
    let fresh = GatewayDelay {
        arrived: now,
        oldest_held: None,
        dispatch_behind: false,
    };
    assert_eq!(admit_delay(&cfg, fresh, now), Admit::Accept);
    let at_bound = GatewayDelay {
        arrived: now.saturating_sub(Nanos::from_millis(20)),
        ..fresh
    };
    assert_eq!(
        admit_delay(&cfg, at_bound, now),
        Admit::Accept,
        "at the bound"
    );
    let past = GatewayDelay {
        arrived: now.saturating_sub(Nanos::from_millis(20) + Nanos(1)),
        ..fresh
    };
    assert!(matches!(
        admit_delay(&cfg, past, now),
        Admit::Refuse {
            why: Refusal::GatewayBehind { .. },
            ..
        }
    ));
    // Read 30 ms ago, with every node busy and nothing held: still the
    // gateway's own delay.
    let late = GatewayDelay {
        arrived: now.saturating_sub(Nanos::from_millis(30)),
        ..fresh
    };
    assert_eq!(
        admit_delay(&cfg, late, now),
        Admit::Refuse {
            why: Refusal::GatewayBehind {
                delay: Nanos::from_millis(30),
                limit: Nanos::from_millis(20),
            },
            retry_after: Nanos::from_millis(30),
        }
    );
    // Admission off: no refusal for delay.
    let off = AdmissionConfig {
        deadline_check: false,
        ..cfg
    };
    assert_eq!(admit_delay(&off, late, now), Admit::Accept);
}

/// The held FIFO's age is the gateway's delay only while dispatch is
/// behind; a FIFO waiting for busy nodes is left to the work ahead, which
/// refuses it as `deadline` when the nodes cannot make it.
#[test]
fn a_held_wait_is_the_gateways_only_while_dispatch_is_behind() {
    let cfg = AdmissionConfig {
        max_gateway_delay: Nanos::from_millis(20),
        ..AdmissionConfig::default()
    };
    let now = T0 + Nanos::from_millis(1_000);
    let node_bound = GatewayDelay {
        arrived: now,
        oldest_held: Some(now.saturating_sub(Nanos::from_millis(50))),
        dispatch_behind: false,
    };
    assert_eq!(
        admit_delay(&cfg, node_bound, now),
        Admit::Accept,
        "held 50 ms for busy nodes: not the gateway's delay"
    );
    // The same wait, judged by the work ahead: one node busy for 10 ms a
    // call, five held ahead, a 30 ms deadline.
    let busy = load(5, 1, 1, 10);
    assert!(matches!(
        admit(&cfg, &busy, 0, now + Nanos::from_millis(30), now, true),
        Admit::Refuse {
            why: Refusal::DeadlineUnmeetable { .. },
            ..
        }
    ));
    let behind = GatewayDelay {
        dispatch_behind: true,
        ..node_bound
    };
    assert_eq!(
        admit_delay(&cfg, behind, now),
        Admit::Refuse {
            why: Refusal::GatewayBehind {
                delay: Nanos::from_millis(50),
                limit: Nanos::from_millis(20),
            },
            retry_after: Nanos::from_millis(50),
        }
    );
    let at_bound = GatewayDelay {
        oldest_held: Some(now.saturating_sub(Nanos::from_millis(20))),
        ..behind
    };
    assert_eq!(
        admit_delay(&cfg, at_bound, now),
        Admit::Accept,
        "at the bound"
    );
    let past = GatewayDelay {
        oldest_held: Some(now.saturating_sub(Nanos::from_millis(20) + Nanos(1))),
        ..behind
    };
    assert!(matches!(
        admit_delay(&cfg, past, now),
        Admit::Refuse {
            why: Refusal::GatewayBehind { .. },
            ..
        }
    ));
    // Dispatch behind but nothing held: only the request's own wait counts.
    let empty = GatewayDelay {
        oldest_held: None,
        ..behind
    };
    assert_eq!(admit_delay(&cfg, empty, now), Admit::Accept);
}

/// Dispatch is behind when a node reported executing fewer calls than the
/// gateway counts there, by more than the one the gateway sends in each
/// slot a read reply frees.
#[test]
fn dispatch_is_behind_when_a_node_has_answered_calls_the_gateway_still_counts() {
    let node = |in_flight, reported| NodeCalls {
        in_flight,
        reported,
    };
    // Starved: the node runs nothing, the gateway counts 1024 there.
    assert!(dispatch_behind([node(1_024, Some(0))]));
    // Busy, steady state: the reply that carried 1023 freed the slot the
    // gateway refilled.
    assert!(!dispatch_behind([node(1_024, Some(1_023))]));
    assert!(!dispatch_behind([node(1_024, Some(1_024))]));
    // The boundary: two calls answered and not yet read.
    assert!(dispatch_behind([node(1_024, Some(1_022))]));
    // Other callers' calls make a node busier than the gateway's count.
    assert!(!dispatch_behind([node(3, Some(40))]));
    // A node that never reported is no evidence.
    assert!(!dispatch_behind([node(1_024, None)]));
    assert!(!dispatch_behind([]));
    // One node behind is enough.
    assert!(dispatch_behind([node(8, Some(8)), node(8, Some(2))]));
}

#[test]
fn no_ready_node_waits_for_the_booting_one_or_refuses() {
    let cfg = AdmissionConfig::default();
    let none = load(0, 0, 0, 10);
    assert!(matches!(
        admit(&cfg, &none, 0, T0 + Nanos::from_secs(9), T0, true),
        Admit::Refuse {
            why: Refusal::NoCapacity,
            ..
        }
    ));
    let booting = Load {
        capacity_at: Some(T0 + Nanos::from_millis(500)),
        ..none
    };
    assert_eq!(expected_finish(&booting, T0), T0 + Nanos::from_millis(510));
    assert_eq!(
        admit(&cfg, &booting, 0, T0 + Nanos::from_millis(510), T0, true),
        Admit::Accept
    );
    assert!(matches!(
        admit(&cfg, &booting, 0, T0 + Nanos::from_millis(509), T0, true),
        Admit::Refuse { .. }
    ));
}

/// Each refusal names its own rule, one of `RULES`, so a metric
/// labelled by rule tells the five apart.
#[test]
fn every_refusal_names_a_distinct_published_rule() {
    let all = [
        Refusal::DeadlineUnmeetable {
            expected_finish: T0,
        },
        Refusal::QueueFull { limit: 1 },
        Refusal::QueueBytesFull { limit: 1 },
        Refusal::NoCapacity,
        Refusal::GatewayBehind {
            delay: Nanos::from_millis(2),
            limit: Nanos::from_millis(1),
        },
    ];
    let rules: Vec<&str> = all.iter().map(Refusal::rule).collect();
    assert_eq!(rules, Refusal::RULES);
    // The two ways of being behind share one rule (one bound to raise)
    // and the words a caller's message names it by.
    assert_eq!(Refusal::DispatchBehind.rule(), "gateway_behind");
    for behind in [all[4], Refusal::DispatchBehind] {
        let said = behind.to_string();
        assert!(said.contains("in the gateway before dispatch"), "{said}");
    }
}

/// A request that finds no node with room is held while the nodes are
/// what it waits for, and refused at once while the gateway is (dispatch
/// behind); with admission off it is held either way.
#[test]
fn a_request_is_not_held_for_room_the_gateway_has_not_read_back() {
    let cfg = AdmissionConfig::default();
    assert_eq!(admit_hold(&cfg, false), Admit::Accept, "busy nodes: held");
    assert_eq!(
        admit_hold(&cfg, true),
        Admit::Refuse {
            why: Refusal::DispatchBehind,
            retry_after: cfg.max_gateway_delay,
        }
    );
    let off = AdmissionConfig {
        deadline_check: false,
        ..cfg
    };
    assert_eq!(admit_hold(&off, true), Admit::Accept);
}

/// What a gateway starved of CPU in front of an idle node looks like to
/// admission (figures from a 30k calls/s sweep on a loaded machine): its
/// node reports 1 ns of service per call and nothing executing, the
/// gateway counts 1024 calls there (their replies not read yet) and holds
/// 2000 more, and callers give 2 s. The work ahead cannot refuse that:
/// the node would finish it in microseconds. What refuses is the
/// gateway's own delay, once the oldest held request has waited past the
/// bound, and a pool that is slow for real is still refused by the work
/// ahead.
#[test]
fn a_starved_gateway_before_an_idle_node_is_refused_by_its_delay_not_the_work_ahead() {
    let cfg = AdmissionConfig::default();
    let now = T0 + Nanos::from_secs(10);
    let deadline = now + Nanos::from_secs(2);
    let held = 2_000;
    let idle_node = NodeLoad {
        in_flight: 1_024,
        reported_queue: 0,
        reported_service_time: Some(Nanos(1)),
    };
    // The gateway's own timing of its calls, its queueing included.
    let gateway_timing = Nanos::from_millis(60);
    let reported = from_nodes([idle_node], gateway_timing);
    assert_eq!(reported.service_time, Nanos(1), "the node's figure is used");
    let starved = Load {
        held,
        held_bytes: 0,
        in_flight: reported.in_flight,
        ready: 1,
        service_time: reported.service_time,
        capacity_at: None,
    };
    assert_eq!(
        expected_finish(&starved, now),
        now + Nanos(3_025),
        "3024 calls ahead of 1 ns each, then its own"
    );
    assert_eq!(
        admit(&cfg, &starved, 64, deadline, now, true),
        Admit::Accept
    );
    // The oldest held request waited 25 ms while the node had answered
    // what the gateway still counts there: the gateway is behind.
    let calls = NodeCalls {
        in_flight: idle_node.in_flight,
        reported: Some(idle_node.reported_queue),
    };
    let behind = GatewayDelay {
        arrived: now,
        oldest_held: Some(now.saturating_sub(Nanos::from_millis(25))),
        dispatch_behind: dispatch_behind([calls]),
    };
    assert!(behind.dispatch_behind);
    assert!(matches!(
        admit_delay(&cfg, behind, now),
        Admit::Refuse { why: Refusal::GatewayBehind { delay, .. }, .. }
            if delay == Nanos::from_millis(25)
    ));
    // Held 20 ms, at the bound: taken.
    let at_bound = GatewayDelay {
        oldest_held: Some(now.saturating_sub(cfg.max_gateway_delay)),
        ..behind
    };
    assert_eq!(admit_delay(&cfg, at_bound, now), Admit::Accept);
    // The same queue before a node that needs 1 ms a call: 3 s of work
    // for a 2 s deadline, refused by the work ahead.
    let slow = Load {
        service_time: Nanos::from_millis(1),
        ..starved
    };
    match admit(&cfg, &slow, 64, deadline, now, true) {
        Admit::Refuse {
            why: Refusal::DeadlineUnmeetable { expected_finish },
            retry_after,
        } => {
            assert_eq!(expected_finish, now + Nanos::from_millis(3_025));
            assert_eq!(retry_after, Nanos::from_millis(3_025));
        }
        other => panic!("a slow pool's 3 s of work was taken for 2 s: {other:?}"),
    }
}
