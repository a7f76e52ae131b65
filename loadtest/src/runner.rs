//! Runs a plan: one pinned glommio executor per core (the `shards` crate), connections
//! spread round-robin over them, a shared start instant once every connection is
//! ready, and the figures merged at the end.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use shardmq::protocol::{QoS, Version};
use shards::{PoolBuilder, ShardContext};

use crate::cli::Rate;
use crate::client::Conn;
use crate::scenario::{Plan, Role};
use crate::stats::{Live, Stats};
use crate::{idle, publisher, storm, subscriber};

/// Everything a run needs, resolved from the command line.
#[derive(Debug, Clone)]
pub struct Spec {
    pub broker: SocketAddr,
    pub plan: Plan,
    pub qos: QoS,
    pub version: Version,
    pub payload: usize,
    pub rate: Rate,
    pub warmup: Duration,
    pub duration: Duration,
    pub cores: Vec<usize>,
}

impl Spec {
    /// Start of the measured window, ns since the shared start.
    pub fn warmup_ns(&self) -> u64 {
        self.warmup.as_nanos() as u64
    }

    /// End of the measured window, when publishers stop.
    pub fn end_ns(&self) -> u64 {
        (self.warmup + self.duration).as_nanos() as u64
    }

    /// Whether a message intended at `ns` counts in the figures.
    pub fn measured(&self, ns: u64) -> bool {
        (self.warmup_ns()..self.end_ns()).contains(&ns)
    }
}

/// What every executor shares.
#[derive(Debug, Default)]
pub struct Shared {
    /// Connections done connecting (successfully or not).
    ready: AtomicUsize,
    /// Set once every connection is ready; every intended time counts from it.
    start: OnceLock<Instant>,
    pub live: Live,
}

impl Shared {
    /// The start instant, once every one of `total` connections is ready.
    async fn start(&self, total: usize) -> Instant {
        self.ready.fetch_add(1, Ordering::AcqRel);
        loop {
            if let Some(start) = self.start.get() {
                return *start;
            }
            if self.ready.load(Ordering::Acquire) >= total {
                return *self.start.get_or_init(Instant::now);
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Whether the run has started (for the progress line).
    pub fn started(&self) -> bool {
        self.start.get().is_some()
    }
}

/// Runs `spec` to the end and returns the merged figures.
pub fn run(spec: Spec, shared: Arc<Shared>) -> anyhow::Result<Stats> {
    let spec = Arc::new(spec);
    let cores = spec.cores.clone();
    let pool = PoolBuilder::new(cores.clone())
        .name("loadtest")
        .start(move |ctx: ShardContext<()>| shard(ctx, spec, shared))
        .with_context(|| format!("cannot start load generator executors on cores {cores:?}"))?;
    let mut total = Stats::default();
    for stats in pool.join().context("a load generator executor failed")? {
        total.merge(&stats);
    }
    Ok(total)
}

async fn shard(ctx: ShardContext<()>, spec: Arc<Spec>, shared: Arc<Shared>) -> io::Result<Stats> {
    let (me, n) = (ctx.id(), ctx.nr_shards());
    let tasks: Vec<_> = spec
        .plan
        .roles
        .iter()
        .enumerate()
        .filter(|(i, _)| i % n == me)
        .map(|(i, role)| {
            glommio::spawn_local(connection(spec.clone(), shared.clone(), i, role.clone()))
        })
        .collect();
    let mut stats = Stats::default();
    for task in tasks {
        stats.merge(&task.await);
    }
    Ok(stats)
}

/// One connection, from connect to disconnect.
async fn connection(spec: Arc<Spec>, shared: Arc<Shared>, index: usize, role: Role) -> Stats {
    let total = spec.plan.roles.len();
    if let Role::Storm { worker } = role {
        let start = shared.start(total).await;
        return storm::run(&spec, &shared, start, worker).await;
    }
    let client_id = format!("loadtest-{}-{index}", std::process::id());
    let connected = match &role {
        Role::Subscriber { filter } => {
            match Conn::connect(spec.broker, &client_id, spec.version).await {
                Ok(mut conn) => conn
                    .subscribe(filter.clone(), spec.qos)
                    .await
                    .map(|()| conn),
                Err(e) => Err(e),
            }
        }
        Role::Publisher { .. } | Role::Idle | Role::Storm { .. } => {
            Conn::connect(spec.broker, &client_id, spec.version).await
        }
    };
    let start = shared.start(total).await;
    let conn = match connected {
        Ok(conn) => {
            Live::add(&shared.live.connected, 1);
            conn
        }
        Err(e) => {
            let mut stats = Stats::default();
            stats.error(e.reason());
            Live::add(&shared.live.errors, 1);
            return stats;
        }
    };
    match role {
        Role::Publisher { id, topic } => {
            publisher::run(&spec, &shared, start, id, topic, conn).await
        }
        Role::Subscriber { .. } => subscriber::run(&spec, &shared, start, conn).await,
        Role::Idle => idle::run(&spec, start, conn).await,
        Role::Storm { .. } => unreachable!("storm workers returned above"),
    }
}
