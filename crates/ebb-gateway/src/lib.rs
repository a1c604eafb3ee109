//! The gateway: one front door for a pool of nodes.
//!
//! - [`registry`]: nodes, their states and in-flight counts, the held FIFO;
//!   the balancer (any `ebb_policy::balance` spec) picks among them.
//! - [`forward`]: one request's path and its call semantics.
//! - [`pool`]: the manager thread that drives a `NodeProvider` to a target.
//! - [`ingress`]: the RPC ingress (the gateway as one ebb server).
//! - [`http`]: `/status`, `/metrics`, `/pool`, `/rpc/{Service}/{method}`.
//! - [`front`]: each HTTP connection's service: calls straight to the
//!   ingress, the rest through the router.
//! - [`signals`]: what an autoscaler is told each tick, and its seam.
//! - [`auth`]: bearer tokens and per-caller bounds for the HTTP and RPC
//!   ingress.
//! - [`decisions`]: the autoscaler's recent decisions with their signals,
//!   for `/status`, `/metrics` and the dashboard.
//! - [`service`]: the service the pool serves, built in or learned from the
//!   nodes' `Describe`.
//! - [`busy_poll`]: the opt-in spinner that keeps a one-thread runtime
//!   polling instead of sleeping while requests come and go.
//!
//! The gateway contains no policy: balancing, admission and the retry
//! budget are `ebb-policy` code, fed with what the gateway measures.

pub mod auth;
pub mod busy_poll;
pub mod clock;
pub mod decisions;
pub mod forward;
pub mod front;
pub mod http;
pub mod ingress;
pub mod metrics;
pub mod pool;
pub mod registry;
pub mod service;
pub mod signals;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ebb_core::Nanos;
use ebb_node::provider::NodeProvider;
use ebb_policy::admission::AdmissionConfig;
use ebb_policy::balance;
use ebb_policy::hedge::HedgeConfig;
use ebb_policy::outlier::OutlierConfig;
use ebb_policy::retry::RetryBudgetConfig;
use ebb_rpc::transport::Server;
use serde_json::{Value, json};

pub use forward::GatewayError;
pub use pool::Scaler;
pub use pool::{NodeChange, PoolConfig, PoolError};
pub use registry::Life;
pub use service::ServiceSource;

/// Everything a gateway is started with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// RPC ingress address; port 0 picks a free port.
    pub rpc_addr: String,
    /// HTTP address; port 0 picks a free port.
    pub http_addr: String,
    /// A balancer spec as `ebb_policy::balance::parse` takes it.
    pub balance: String,
    pub admission: AdmissionConfig,
    /// Deadline of a call that brings none.
    pub default_deadline: Nanos,
    pub retry: RetryBudgetConfig,
    pub outlier: OutlierConfig,
    pub pool: PoolConfig,
    /// Seeds the balancer's random choices.
    pub seed: u64,
    /// Hedge slow idempotent calls (off when `None`).
    pub hedge: Option<HedgeConfig>,
    /// `/`, `/status`, `/metrics` and `/pool` on this address instead of
    /// the HTTP one (port 0 picks a free port).
    pub admin_addr: Option<String>,
    /// Bearer tokens the HTTP and RPC ingress and `POST /pool` require;
    /// `None`: no authentication.
    pub tokens: Option<auth::Tokens>,
    /// HTTP requests, and RPC calls, one caller (a token, or a peer address
    /// without tokens) may have in flight at once (each ingress counts its
    /// own).
    pub max_in_flight_per_caller: usize,
    /// What the gateway presents to its nodes: the bearer token (and TLS)
    /// that nodes started with `--token-file` (or a certificate) require.
    pub node_credentials: ebb_rpc::transport::Credentials,
    /// Busy polling: after each request in or out, the runtime polls
    /// instead of sleeping until none came or went for this long (a core
    /// kept busy meanwhile); zero: off. Needs a current-thread runtime.
    pub busy_poll: Nanos,
}

/// Default of [`GatewayConfig::max_in_flight_per_caller`].
pub const DEFAULT_MAX_IN_FLIGHT_PER_CALLER: usize = 1_024;

impl Default for GatewayConfig {
    /// Loopback ingress on the documented ports, `p2c`, the policies'
    /// own defaults, no hedging.
    fn default() -> GatewayConfig {
        GatewayConfig {
            rpc_addr: "127.0.0.1:7000".into(),
            http_addr: "127.0.0.1:8080".into(),
            balance: "p2c".into(),
            admission: AdmissionConfig::default(),
            default_deadline: Nanos::from_secs(1),
            retry: RetryBudgetConfig::default(),
            outlier: OutlierConfig::default(),
            pool: PoolConfig::default(),
            seed: 1,
            hedge: None,
            admin_addr: None,
            tokens: None,
            max_in_flight_per_caller: DEFAULT_MAX_IN_FLIGHT_PER_CALLER,
            node_credentials: ebb_rpc::transport::Credentials::default(),
            busy_poll: Nanos::ZERO,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("balance policy: {0}")]
    Balance(#[from] balance::ParseError),
    #[error("RPC ingress: {0}")]
    Rpc(#[from] ebb_rpc::transport::TransportError),
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Http {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the pool manager: {0}")]
    Pool(std::io::Error),
    /// On a multi-thread runtime another worker sleeps on the driver and
    /// takes the wake-ups busy polling is meant to spare.
    #[error("busy polling needs a current-thread runtime (one gateway thread)")]
    BusyPollNeedsOneThread,
}

/// What the HTTP handlers share.
pub struct Shared {
    forwarder: Arc<forward::Forwarder>,
    service: service::ServiceCell,
    default_deadline: Nanos,
    decisions: decisions::DecisionLog,
    pool: Mutex<pool::PoolHandle>,
    clock: clock::Clock,
    autoscaler: Option<String>,
    admission: AdmissionConfig,
    retry: RetryBudgetConfig,
    outlier: OutlierConfig,
    hedge: Option<HedgeConfig>,
    tokens: Option<auth::Tokens>,
    callers: auth::CallerBounds,
    /// The RPC ingress's session counts, once it serves.
    rpc_stats: std::sync::OnceLock<RpcStats>,
}

/// Reads the RPC ingress server's decision counts.
type RpcStats = Box<dyn Fn() -> ebb_rpc::semantics::ServerStats + Send + Sync>;

impl Shared {
    fn pool(&self) -> std::sync::MutexGuard<'_, pool::PoolHandle> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_target(&self, target: usize) -> Result<usize, PoolError> {
        self.pool().set_target(target)
    }

    /// Sets every node's capacity by hand (scale up or down in place).
    pub fn set_capacity(&self, capacity: u32) -> Result<u32, PoolError> {
        self.pool().set_capacity(capacity)
    }

    /// `POST /pool`: the target and, if given, the capacity per node, both
    /// checked before either changes.
    pub fn set_pool(&self, target: usize, capacity: Option<u32>) -> Result<usize, PoolError> {
        self.pool().set_pool(target, capacity)
    }

    /// The ingress, once the pool's service is known (a learned one is
    /// known when the first node has described it); waits at most `wait`.
    pub async fn ingress_within(&self, wait: Nanos) -> Option<ingress::RpcIngress> {
        let served = self.service.known_within(wait).await?;
        Some(ingress::RpcIngress::new(
            Arc::clone(&self.forwarder),
            served,
            self.default_deadline,
        ))
    }

    /// `GET /status`.
    pub fn status(&self) -> Value {
        let registry = self.forwarder.registry();
        let nodes = registry.status(self.clock.now());
        let (held, held_bytes) = registry.held();
        let pool = self.pool();
        let cfg = *pool.config();
        json!({
            "service": self.service.get().map(|s| s.name()),
            "pool": {
                "kind": pool.kind().as_str(),
                "target": pool.target(),
                "min": cfg.min,
                "max": cfg.max,
                "capacity_per_node": pool.capacity(),
                "max_capacity_per_node": cfg.max_capacity_per_node,
                "cost_per_node_sec_micros": cfg.cost_per_node_sec_micros,
            },
            "policies": {
                "balance": registry.policy_name(),
                "admission": {
                    "deadline_check": self.admission.deadline_check,
                    "service_time_from": self.admission.service_time_from.as_str(),
                    "max_held_requests": self.admission.max_held_requests,
                    "max_held_bytes": self.admission.max_held_bytes,
                    "max_gateway_delay_ms": self.admission.max_gateway_delay.as_millis(),
                },
                "retry_budget": {
                    "ratio": self.retry.ratio,
                    "floor_per_sec": self.retry.floor_per_sec,
                    "window_ms": self.retry.window.as_millis(),
                },
                "outlier_ejection": {
                    "consecutive_failures": self.outlier.consecutive_failures,
                    "base_ejection_ms": self.outlier.base_ejection.as_millis(),
                    "max_ejected_fraction": self.outlier.max_ejected_fraction,
                },
                "autoscaler": self.autoscaler,
                "authentication": self.tokens.as_ref().map_or("none", |_| "bearer"),
                "max_in_flight_per_caller": self.callers.max_per_caller(),
                "hedge": self.hedge.map(|h| json!({
                    "percentile": h.percentile,
                    "min_samples": h.min_samples,
                    "window": h.window,
                })),
            },
            "scaling": self.decisions.summary(),
            "held": held,
            "held_bytes": held_bytes,
            "nodes": nodes,
        })
    }

    /// `GET /metrics`.
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        let registry = self.forwarder.registry();
        let nodes = registry.status(self.clock.now());
        let target = self.pool().target();
        let metrics = self.forwarder.metrics();
        if let Some(stats) = self.rpc_stats.get() {
            metrics.rpc_refusals(&stats());
        }
        metrics.render(&nodes, registry.held(), target)
    }
}

/// A running gateway. Drop or [`Gateway::shutdown`] stops it.
pub struct Gateway {
    shared: Arc<Shared>,
    rpc_addr: SocketAddr,
    http_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Binds both ingresses, starts the pool manager (which starts the
    /// initial nodes) and serves. The pool manager's thread opens node
    /// connections as tasks spawned on this runtime, so a current-thread
    /// runtime works only while its own thread stays in `Runtime::block_on`,
    /// driving the I/O: `ebb up` does that.
    ///
    /// A service learned from the nodes opens the RPC ingress only once the
    /// first node has described it (it must answer `Describe`); its address
    /// is bound, and printed, from the start, and HTTP calls wait for it
    /// within their deadline.
    pub async fn start(
        cfg: GatewayConfig,
        service: impl Into<ServiceSource>,
        provider: Box<dyn NodeProvider>,
        autoscaler: Option<Scaler>,
        on_change: pool::OnChange,
    ) -> Result<Gateway, StartError> {
        let busy = cfg.busy_poll > Nanos::ZERO;
        if busy
            && tokio::runtime::Handle::current().runtime_flavor()
                != tokio::runtime::RuntimeFlavor::CurrentThread
        {
            return Err(StartError::BusyPollNeedsOneThread);
        }
        let balancer = balance::parse(&cfg.balance)?;
        let registry = registry::Registry::new(balancer, cfg.admission, cfg.seed)
            .with_outliers(cfg.outlier)
            .with_max_in_flight_per_node(cfg.pool.max_in_flight_per_node);
        let clock = clock::Clock::new();
        let metrics = metrics::Metrics::new();
        let scaler_metrics = metrics.clone();
        let decisions = decisions::DecisionLog::default();
        let mut forwarder = forward::Forwarder::new(registry.clone(), clock, metrics, cfg.retry);
        if let Some(h) = cfg.hedge {
            forwarder = forwarder.with_hedging(h);
        }
        let forwarder = Arc::new(forwarder);
        let spinner = busy.then(|| {
            busy_poll::spin(
                cfg.busy_poll,
                forwarder.activity().clone(),
                clock,
                forwarder.metrics().busy_poll().clone(),
            )
        });
        let service = service::ServiceCell::new(service.into());
        let rpc_err = |source| {
            StartError::Rpc(ebb_rpc::transport::TransportError::Bind {
                addr: cfg.rpc_addr.clone(),
                source,
            })
        };
        let rpc_listener = ebb_rpc::transport::listen::bind_std(&cfg.rpc_addr).map_err(rpc_err)?;
        let rpc_addr = rpc_listener.local_addr().map_err(rpc_err)?;
        let http_err = |source| StartError::Http {
            addr: cfg.http_addr.clone(),
            source,
        };
        let listener = ebb_rpc::transport::listen::bind(&cfg.http_addr)
            .await
            .map_err(http_err)?;
        let http_addr = listener.local_addr().map_err(http_err)?;
        let (admin_listener, admin_addr) = match &cfg.admin_addr {
            None => (None, None),
            Some(addr) => {
                let admin_err = |source| StartError::Http {
                    addr: addr.clone(),
                    source,
                };
                let l = ebb_rpc::transport::listen::bind(addr)
                    .await
                    .map_err(admin_err)?;
                let a = l.local_addr().map_err(admin_err)?;
                (Some(l), Some(a))
            }
        };
        let scaler_name = autoscaler.as_ref().map(|a| a.policy.name());
        let pool = pool::spawn(
            provider,
            registry,
            clock,
            tokio::runtime::Handle::current(),
            cfg.pool,
            autoscaler,
            pool::Hooks {
                on_change,
                service: service.clone(),
                decisions: decisions.clone(),
                metrics: scaler_metrics,
                node_credentials: cfg.node_credentials.clone(),
            },
        )
        .map_err(StartError::Pool)?;
        let shared = Arc::new(Shared {
            forwarder,
            service,
            default_deadline: cfg.default_deadline,
            decisions,
            pool: Mutex::new(pool),
            clock,
            autoscaler: scaler_name,
            admission: cfg.admission,
            retry: cfg.retry,
            outlier: cfg.outlier,
            hedge: cfg.hedge,
            tokens: cfg.tokens.clone(),
            callers: auth::CallerBounds::new(cfg.max_in_flight_per_caller),
            rpc_stats: std::sync::OnceLock::new(),
        });
        let http_cfg = ebb_http::HttpConfig {
            default_deadline_ms: cfg.default_deadline.as_millis().max(1),
            ..ebb_http::HttpConfig::default()
        };
        let calls = http::gateway_calls(&shared, http_cfg);
        let (app, admin_app) = http::routers(
            Arc::clone(&shared),
            Arc::clone(&calls),
            admin_listener.is_some(),
        );
        // Calls skip the router; everything else takes it.
        let front = front::MakeFront { calls, router: app };
        let rpc_shared = Arc::clone(&shared);
        let rpc_max_per_caller = cfg.max_in_flight_per_caller;
        // Each HTTP listener holds at most this many connections, as a node's
        // own HTTP port does; more wait in the kernel's accept backlog.
        let max_http_connections = ebb_http::DEFAULT_MAX_CONNECTIONS;
        let mut tasks = vec![
            tokio::spawn(async move {
                let Some(served) = rpc_shared.service.known().await else {
                    return;
                };
                let ingress = ingress::RpcIngress::new(
                    Arc::clone(&rpc_shared.forwarder),
                    served,
                    rpc_shared.default_deadline,
                );
                let config = auth::rpc_server_config(rpc_max_per_caller);
                if let Ok(mut server) = Server::from_std(rpc_listener, ingress, config) {
                    if let Some(tokens) = rpc_shared.tokens.clone() {
                        server = server.with_tokens(tokens);
                    }
                    let _ = rpc_shared.rpc_stats.set(Box::new(server.stats_reader()));
                    let _ = server.run().await;
                }
            }),
            tokio::spawn(async move {
                let bounded = ebb_http::BoundedListener::new(listener, max_http_connections);
                ebb_http::serve_http1(bounded, move |peer| front.front(peer)).await;
            }),
        ];
        if let Some(spinner) = spinner {
            tasks.push(tokio::spawn(spinner));
        }
        if let (Some(listener), Some(admin)) = (admin_listener, admin_app) {
            tasks.push(tokio::spawn(async move {
                let _ = ebb_http::serve(listener, admin, max_http_connections).await;
            }));
        }
        Ok(Gateway {
            shared,
            rpc_addr,
            http_addr,
            admin_addr,
            tasks,
        })
    }

    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where `/status`, `/metrics`, `/pool` and the dashboard are served
    /// when they have their own address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Refuses new calls, drains every node (in-flight calls finish and
    /// their replies go out), stops the nodes, then closes the listeners.
    pub async fn shutdown(mut self) {
        self.shared.forwarder.stop_taking_calls();
        let shared = Arc::clone(&self.shared);
        let _ = tokio::task::spawn_blocking(move || shared.pool().shutdown()).await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
