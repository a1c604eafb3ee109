//! Admission control: refuse at once what cannot finish in time.
//!
//! A request that would wait behind more work than its deadline allows is
//! better refused now, with a hint of when to come back, than accepted and
//! timed out later: the caller learns in microseconds instead of after its
//! whole deadline, and the pool spends no capacity on an answer nobody will
//! read. The estimate is the one of an M/G/k queue in its simplest form:
//! the work ahead (requests held plus in service) spread over the ready
//! nodes, times the measured service time, plus the request's own service.
//!
//! The figures come from the nodes when they report them ([`from_nodes`]):
//! the calls each node says it is executing, and the service time each
//! measured itself. A gateway's own timing of its calls includes its own
//! queueing, so once its core is saturated it would see slow nodes where
//! there are fast ones, and refuse work the nodes could do.
//!
//! The estimate sees only the work the gateway has handed on. Requests
//! that wait inside the gateway itself (behind a saturated ingress, or in
//! its held FIFO) are not in it; [`admit_delay`] refuses by that delay:
//! once requests wait longer than `max_gateway_delay` in the gateway
//! before their dispatch decision, or the oldest held one has, new ones
//! are refused at once. Refusing is cheaper than forwarding, so the
//! gateway catches up, and what it does take is fresh enough to meet its
//! deadline (the idea of CoDel, Nichols and Jacobson 2012: judge a queue by
//! how long its items wait, not by its length).
//!
//! State: none; the caller passes what it measured. Cost: O(1), O(nodes)
//! for [`from_nodes`].

use ebb_core::{Instant, Nanos};

/// Whose figures the estimated wait is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ServiceTimeSource {
    /// The nodes' own reports ([`from_nodes`]): calls executing and the
    /// service time each measured itself.
    #[default]
    Nodes,
    /// The gateway's own count of calls in flight and its own timing of
    /// calls that had their node to themselves, its queueing included.
    /// What admission judged by before nodes reported; kept to compare.
    Gateway,
}

impl ServiceTimeSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTimeSource::Nodes => "nodes",
            ServiceTimeSource::Gateway => "gateway",
        }
    }
}

/// How the held queue is bounded, and whether deadlines are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Check deadlines against the estimated wait. The queue bounds apply
    /// either way: they protect the gateway's memory, not the caller.
    pub deadline_check: bool,
    /// Whose figures the estimated wait is made of.
    pub service_time_from: ServiceTimeSource,
    /// Requests that may be held (waiting for a node) at once.
    pub max_held_requests: usize,
    /// Argument bytes that may be held at once.
    pub max_held_bytes: usize,
    /// Longest a request may have waited inside the gateway (from its
    /// arrival to its dispatch decision, or in the held FIFO) before new
    /// requests are refused ([`admit_delay`]). Applies with
    /// `deadline_check`.
    pub max_gateway_delay: Nanos,
}

impl Default for AdmissionConfig {
    fn default() -> AdmissionConfig {
        AdmissionConfig {
            deadline_check: true,
            service_time_from: ServiceTimeSource::Nodes,
            max_held_requests: DEFAULT_MAX_HELD_REQUESTS,
            max_held_bytes: DEFAULT_MAX_HELD_BYTES,
            max_gateway_delay: DEFAULT_MAX_GATEWAY_DELAY,
        }
    }
}

/// [`AdmissionConfig::max_gateway_delay`] when the config sets none: long
/// beside the gateway's own cost per request (tens of microseconds), short
/// beside the deadlines callers give (hundreds of milliseconds and up).
pub const DEFAULT_MAX_GATEWAY_DELAY: Nanos = Nanos::from_millis(20);

/// Held requests when the config sets none.
pub const DEFAULT_MAX_HELD_REQUESTS: usize = 10_000;
/// Held argument bytes when the config sets none (64 MiB).
pub const DEFAULT_MAX_HELD_BYTES: usize = 64 << 20;
/// The retry-after hint when no figure to base it on exists yet.
pub const UNMEASURED_RETRY_AFTER: Nanos = Nanos::from_millis(100);

/// What the gateway knows at the moment a request arrives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Load {
    /// Requests held at the gateway, waiting for a node.
    pub held: usize,
    /// Argument bytes of those held requests.
    pub held_bytes: usize,
    /// Requests sent to nodes and not yet answered.
    pub in_flight: usize,
    /// Nodes that take work now.
    pub ready: usize,
    /// Measured mean service time of one request; zero if none measured.
    pub service_time: Nanos,
    /// When the first node still booting is expected to be ready, if no node
    /// is ready but some are on their way.
    pub capacity_at: Option<Instant>,
}

/// One ready node as admission sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLoad {
    /// Calls the gateway has sent to it and not seen answered.
    pub in_flight: u32,
    /// Calls the node last said it was executing (other callers' included).
    pub reported_queue: u32,
    /// The service time the node last reported measuring itself, if any.
    pub reported_service_time: Option<Nanos>,
}

/// The work ahead and the service time, as the ready nodes report them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLoad {
    /// Calls on the ready nodes: per node the larger of what the gateway
    /// has in flight there and what the node reports executing.
    pub in_flight: usize,
    /// The service time that spreads the work over the ready nodes as their
    /// capacities add up: `ready / sum(1 / s_i)` (the harmonic mean), so
    /// `work × service_time / ready = work / capacity`. A node that reported
    /// none counts with `fallback`; zero when no node has a figure.
    pub service_time: Nanos,
}

/// What [`Load::in_flight`] and [`Load::service_time`] are, from the ready
/// nodes' own reports; `fallback` (the gateway's own timing) stands in for
/// a node that has not reported a service time yet.
pub fn from_nodes(nodes: impl IntoIterator<Item = NodeLoad>, fallback: Nanos) -> PoolLoad {
    let mut in_flight = 0usize;
    // Capacity in calls per nanosecond, summed over the nodes with a figure.
    let mut capacity = 0.0;
    let mut counted = 0usize;
    let mut seen = 0usize;
    for n in nodes {
        seen += 1;
        in_flight += n.in_flight.max(n.reported_queue) as usize;
        let s = n
            .reported_service_time
            .filter(|s| *s > Nanos::ZERO)
            .unwrap_or(fallback);
        if s > Nanos::ZERO {
            capacity += 1.0 / s.as_nanos() as f64;
            counted += 1;
        }
    }
    let service_time = if counted == 0 {
        Nanos::ZERO
    } else {
        Nanos((counted as f64 / capacity).round() as u64)
    };
    debug_assert!(counted <= seen);
    PoolLoad {
        in_flight,
        service_time,
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The estimated finish is past the deadline.
    DeadlineUnmeetable { expected_finish: Instant },
    /// The held queue is full in requests.
    QueueFull { limit: usize },
    /// The held queue is full in bytes.
    QueueBytesFull { limit: usize },
    /// No node is ready and none is on its way.
    NoCapacity,
    /// Requests wait in the gateway itself longer than the bound.
    GatewayBehind { delay: Nanos, limit: Nanos },
}

impl Refusal {
    /// Every rule's name, in [`Refusal::rule`]'s order: what a metrics
    /// label can take.
    pub const RULES: [&'static str; 5] = [
        "deadline",
        "held_queue_full",
        "held_bytes",
        "no_capacity",
        "gateway_behind",
    ];

    /// The rule that refused, as a short stable name: which bound an
    /// operator would raise (or which capacity add) to refuse less.
    pub fn rule(&self) -> &'static str {
        let i = match self {
            Refusal::DeadlineUnmeetable { .. } => 0,
            Refusal::QueueFull { .. } => 1,
            Refusal::QueueBytesFull { .. } => 2,
            Refusal::NoCapacity => 3,
            Refusal::GatewayBehind { .. } => 4,
        };
        Refusal::RULES[i]
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::DeadlineUnmeetable { .. } => {
                write!(f, "the deadline cannot be met given the work ahead")
            }
            Refusal::QueueFull { limit } => write!(f, "{limit} requests already held"),
            Refusal::QueueBytesFull { limit } => {
                write!(f, "{limit} bytes of requests already held")
            }
            Refusal::NoCapacity => write!(f, "no node is ready or booting"),
            Refusal::GatewayBehind { delay, limit } => write!(
                f,
                "requests wait {delay} in the gateway before dispatch, over its {limit} bound"
            ),
        }
    }
}

/// The decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Refuse now; the caller may try again after `retry_after`.
    Refuse {
        why: Refusal,
        retry_after: Nanos,
    },
}

/// Decides whether a request of `bytes` argument bytes with `deadline`,
/// arriving at `now`, is taken. A request that would be sent to a node at
/// once (`would_hold == false`) is never refused for queue room.
pub fn admit(
    cfg: &AdmissionConfig,
    load: &Load,
    bytes: usize,
    deadline: Instant,
    now: Instant,
    would_hold: bool,
) -> Admit {
    let hint = if load.service_time == Nanos::ZERO {
        UNMEASURED_RETRY_AFTER
    } else {
        load.service_time
    };
    if would_hold && load.held >= cfg.max_held_requests {
        let why = Refusal::QueueFull {
            limit: cfg.max_held_requests,
        };
        return Admit::Refuse {
            why,
            retry_after: hint,
        };
    }
    if would_hold && load.held_bytes.saturating_add(bytes) > cfg.max_held_bytes {
        let why = Refusal::QueueBytesFull {
            limit: cfg.max_held_bytes,
        };
        return Admit::Refuse {
            why,
            retry_after: hint,
        };
    }
    if load.ready == 0 && load.capacity_at.is_none() {
        return Admit::Refuse {
            why: Refusal::NoCapacity,
            retry_after: UNMEASURED_RETRY_AFTER,
        };
    }
    if !cfg.deadline_check {
        return Admit::Accept;
    }
    let expected_finish = expected_finish(load, now);
    if expected_finish <= deadline {
        return Admit::Accept;
    }
    Admit::Refuse {
        why: Refusal::DeadlineUnmeetable { expected_finish },
        // By then the work ahead of this request has been served.
        retry_after: expected_finish.saturating_since(now),
    }
}

/// The gateway's own delay as a request reaches its dispatch decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatewayDelay {
    /// When the request arrived at the gateway (as early as the ingress
    /// can tell).
    pub arrived: Instant,
    /// When the oldest request still in the held FIFO arrived, if any is.
    pub oldest_held: Option<Instant>,
}

/// Refuses a request at `now` when the gateway is behind: it waited in the
/// gateway, or the oldest held request has, longer than
/// `max_gateway_delay`. The hint to come back is that delay: by then what
/// is ahead now has been dispatched or refused.
pub fn admit_delay(cfg: &AdmissionConfig, delay: GatewayDelay, now: Instant) -> Admit {
    if !cfg.deadline_check {
        return Admit::Accept;
    }
    let own = now.saturating_since(delay.arrived);
    let held = delay
        .oldest_held
        .map_or(Nanos::ZERO, |at| now.saturating_since(at));
    let worst = own.max(held);
    if worst <= cfg.max_gateway_delay {
        return Admit::Accept;
    }
    Admit::Refuse {
        why: Refusal::GatewayBehind {
            delay: worst,
            limit: cfg.max_gateway_delay,
        },
        retry_after: worst,
    }
}

/// When a request arriving now is expected to be answered: the work ahead
/// spread over the ready nodes, then its own service. With nothing measured
/// yet the estimate is `now`: no evidence, no refusal.
pub fn expected_finish(load: &Load, now: Instant) -> Instant {
    let start = match (load.ready, load.capacity_at) {
        (0, Some(at)) => at.max(now),
        _ => now,
    };
    let servers = load.ready.max(1) as u64;
    let ahead = (load.held + load.in_flight) as u64;
    // Requests ahead beyond the free nodes queue; whole rounds of service.
    let rounds = ahead
        .saturating_sub(servers.saturating_sub(1))
        .div_ceil(servers);
    let wait = load.service_time.as_nanos().saturating_mul(rounds);
    let finish = Nanos(wait).saturating_add(load.service_time);
    debug_assert!(finish >= load.service_time);
    start + finish
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn a_gateway_behind_refuses_by_its_own_delay_or_its_oldest_held() {
        let cfg = AdmissionConfig {
            max_gateway_delay: Nanos::from_millis(20),
            ..AdmissionConfig::default()
        };
        let now = T0 + Nanos::from_millis(1_000);
        let at = |ms_ago: u64| T0 + Nanos::from_millis(1_000 - ms_ago);
        let fresh = GatewayDelay {
            arrived: now,
            oldest_held: None,
        };
        assert_eq!(admit_delay(&cfg, fresh, now), Admit::Accept);
        let bound = GatewayDelay {
            arrived: at(20),
            oldest_held: Some(at(20)),
        };
        assert_eq!(admit_delay(&cfg, bound, now), Admit::Accept, "at the bound");
        // This request waited 30 ms before its decision.
        let late = GatewayDelay {
            arrived: at(30),
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
        // A fresh request behind a held one that waited 50 ms.
        let stuck = GatewayDelay {
            oldest_held: Some(at(50)),
            ..fresh
        };
        assert!(matches!(
            admit_delay(&cfg, stuck, now),
            Admit::Refuse {
                why: Refusal::GatewayBehind { delay, .. },
                ..
            } if delay == Nanos::from_millis(50)
        ));
        // Admission off: no refusal for delay.
        let off = AdmissionConfig {
            deadline_check: false,
            ..cfg
        };
        assert_eq!(admit_delay(&off, stuck, now), Admit::Accept);
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
    }
}
