//! What the broker reports about itself: per-shard metrics that the HTTP thread
//! reads, the node-wide connection limit, and the broker's health.
//!
//! # Layout
//! - this file: [`Metrics`] (shared by every shard and the HTTP thread),
//!   [`ShardMetrics`], [`Health`] and the `max-connections` [`Admission`];
//! - `events`: the event sinks' counters;
//! - `lag`: the event-loop lag histogram;
//! - `prometheus`: the `/metrics` text;
//! - `store`: the store's health and start-up loading;
//! - `sys`: the `$SYS/broker/...` topics;
//! - `tasks`: the per-shard sampler and shard 0's `$SYS` publisher.
//!
//! # Why
//! A shard's state is `!Send` and never locked. Rather than ask shards for
//! numbers, each shard copies its counters into its own [`ShardMetrics`] (relaxed
//! atomics, one writer) every [`SAMPLE_PERIOD`]; readers only load. Nothing is
//! touched per message: the broker keeps plain `u64` counters (`broker::Stats`).

mod cluster;
mod events;
mod lag;
mod prometheus;
mod store;
mod sys;
mod tasks;

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::auth::Failure;
use crate::broker::Broker;
use crate::ratelimit::RateLimits;

pub use cluster::ClusterHealth;
pub use events::{EventSinkMetrics, SinkShardMetrics};
pub use lag::{LagHistogram, LagSnapshot};
pub use prometheus::{render, CONTENT_TYPE};
pub use store::StoreHealth;
pub use sys::sys_messages;
pub use tasks::{publish_sys, sample};

/// How often each shard copies its counters and measures its event-loop lag.
pub const SAMPLE_PERIOD: Duration = Duration::from_millis(250);

/// Queue depths walk every session, so they are sampled only every this many
/// periods (once a second).
const DEPTH_EVERY: u64 = 4;

/// Where the broker is in its life, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Shards are starting: clients cannot connect yet.
    Starting = 0,
    /// Every shard is serving.
    Serving = 1,
    /// Shutdown has begun: connections are being closed.
    Stopping = 2,
}

/// Everything the shards report, shared with the HTTP thread.
#[derive(Debug)]
pub struct Metrics {
    /// For uptime.
    started: Instant,
    /// A [`Health`], written by the server and the shards.
    health: AtomicU8,
    /// `[mqtt] max-connections`; 0 means no limit.
    max_connections: u64,
    /// Connections admitted node-wide, checked against `max_connections`.
    connections: AtomicU64,
    /// One per shard, by shard id.
    shards: Box<[ShardMetrics]>,
    /// `[acl.rate-limit]`, shared with the shards: refusals per label.
    rate_limits: RateLimits,
    /// One per `[[events.sinks]]` entry, in config order.
    event_sinks: Vec<Arc<EventSinkMetrics>>,
    /// `[store] kind = "redis"`: its connections and loading.
    pub store: StoreHealth,
    /// `[cluster] bind`: the node's lease and peers.
    pub cluster: ClusterHealth,
}

/// One shard's numbers. Each field has one writer: the shard itself (the
/// connection gauge and refusal counter are written by connection tasks, still
/// on that shard).
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// Connections past CONNECT served here, counted against `max-connections`.
    pub connections: AtomicU64,
    /// Connections refused because `max-connections` was reached.
    pub refused: AtomicU64,
    /// CONNECTs the broker accepted (CONNACK success).
    pub connects: AtomicU64,
    /// Sessions held, online or not.
    pub sessions: AtomicU64,
    /// Connections with a writer task: writing, or parked for at most two
    /// retire ticks after their last output. An idle one has none.
    pub writers: AtomicU64,
    /// Connections with a reader task: one that must wait (flow control,
    /// loading) or has more input than one read. The others' readers sleep
    /// in the epoll set (`connection::serve`).
    pub readers: AtomicU64,
    /// Subscriptions held.
    pub subscriptions: AtomicU64,
    /// Retained messages (every shard holds a full copy).
    pub retained: AtomicU64,
    /// Messages waiting in session queues (behind the inflight window or offline).
    pub queued: AtomicU64,
    /// Messages sent and not yet acknowledged.
    pub inflight: AtomicU64,
    /// PUBLISH packets received from clients, by QoS.
    pub received: [AtomicU64; 3],
    /// PUBLISH packets sent to clients, by QoS.
    pub sent: [AtomicU64; 3],
    /// Deliveries dropped, by [`DropKind`].
    pub dropped: [AtomicU64; DropKind::ALL.len()],
    /// Refused CONNECTs by [`Failure`], indexed by its discriminant.
    pub auth_failures: [AtomicU64; Failure::ALL.len()],
    /// PUBLISH packets the ACL denied.
    pub publishes_denied: AtomicU64,
    /// PUBLISH packets over their label's rate limit.
    pub publishes_rate_limited: AtomicU64,
    /// QoS 1/2 PUBLISH packets not acknowledged because their message could
    /// not be stored (`durability = "messages"`).
    pub publishes_unstored: AtomicU64,
    /// Subscriptions removed after an ACL reload denied them.
    pub subscriptions_revoked: AtomicU64,
    /// In a cluster: filters known of other nodes' subscribers.
    pub cluster_routes: AtomicU64,
    /// How late the shard's periodic timer fires.
    pub lag: LagHistogram,
}

/// Why a delivery was dropped, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    QueueFull,
    Expired,
    Offline,
    NotAcked,
    TooLarge,
}

impl DropKind {
    pub const ALL: [DropKind; 5] = [
        DropKind::QueueFull,
        DropKind::Expired,
        DropKind::Offline,
        DropKind::NotAcked,
        DropKind::TooLarge,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropKind::QueueFull => "queue_full",
            DropKind::Expired => "expired",
            DropKind::Offline => "offline",
            DropKind::NotAcked => "not_acked",
            DropKind::TooLarge => "too_large",
        }
    }
}

/// Node-wide sums of the shard metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub connections: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    /// Retained messages of one shard (each holds them all).
    pub retained: u64,
    pub queued: u64,
    pub inflight: u64,
    pub received: u64,
    pub sent: u64,
    pub dropped: u64,
}

impl Metrics {
    pub fn new(nr_shards: usize, max_connections: u32) -> Metrics {
        Metrics {
            started: Instant::now(),
            health: AtomicU8::new(Health::Starting as u8),
            max_connections: u64::from(max_connections),
            connections: AtomicU64::new(0),
            shards: (0..nr_shards).map(|_| ShardMetrics::default()).collect(),
            rate_limits: RateLimits::default(),
            event_sinks: Vec::new(),
            store: StoreHealth::default(),
            cluster: ClusterHealth::default(),
        }
    }

    /// Reports the node's lease and peers (`[cluster] bind`).
    pub fn with_cluster(mut self) -> Metrics {
        self.cluster = ClusterHealth::cluster();
        self
    }

    /// Reports a Redis store's health (`[store] kind = "redis"`).
    pub fn with_store(mut self) -> Metrics {
        self.store = StoreHealth::redis(self.shards.len());
        self
    }

    /// Reports the event sinks, in config order.
    pub fn with_event_sinks(mut self, sinks: Vec<Arc<EventSinkMetrics>>) -> Metrics {
        self.event_sinks = sinks;
        self
    }

    /// The event sinks' counters, in config order.
    pub fn event_sinks(&self) -> &[Arc<EventSinkMetrics>] {
        &self.event_sinks
    }

    /// Reports the refusals of `limits` (the shards' shared rate limits).
    pub fn with_rate_limits(mut self, limits: RateLimits) -> Metrics {
        self.rate_limits = limits;
        self
    }

    /// Publishes refused per `[acl.rate-limit]` label, node-wide.
    pub fn rate_limited(&self) -> Vec<(Arc<str>, u64)> {
        self.rate_limits.refused()
    }

    pub fn health(&self) -> Health {
        match self.health.load(Relaxed) {
            0 => Health::Starting,
            1 => Health::Serving,
            _ => Health::Stopping,
        }
    }

    /// Moves the health on. It never goes back from `Stopping`.
    pub fn set_health(&self, health: Health) {
        let _ = self.health.fetch_update(Relaxed, Relaxed, |h| {
            (h < health as u8).then_some(health as u8)
        });
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// `[mqtt] max-connections`; 0 means no limit.
    pub fn max_connections(&self) -> u64 {
        self.max_connections
    }

    /// The metrics of each shard, by shard id.
    pub fn shards(&self) -> &[ShardMetrics] {
        &self.shards
    }

    /// The metrics of `shard`.
    pub fn shard(&self, shard: usize) -> &ShardMetrics {
        &self.shards[shard]
    }

    /// Node-wide sums, as last sampled.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for s in self.shards.iter() {
            t.connections += s.connections.load(Relaxed);
            t.sessions += s.sessions.load(Relaxed);
            t.subscriptions += s.subscriptions.load(Relaxed);
            t.retained = t.retained.max(s.retained.load(Relaxed));
            t.queued += s.queued.load(Relaxed);
            t.inflight += s.inflight.load(Relaxed);
            t.received += s.received.iter().map(|c| c.load(Relaxed)).sum::<u64>();
            t.sent += s.sent.iter().map(|c| c.load(Relaxed)).sum::<u64>();
            t.dropped += s.dropped.iter().map(|c| c.load(Relaxed)).sum::<u64>();
        }
        t
    }

    /// Admits a connection on `shard` under `max-connections`, or refuses it
    /// (`None`, counted). At the limit, a client taking over its own online
    /// session is still admitted (`takeover` says whether it is one; it is only
    /// asked at the limit): its old connection is about to close, and refusing
    /// it would lock a client out behind its own half-open socket until the
    /// keepalive ran out. The count is released when the [`Admission`] drops.
    pub fn admit(
        self: &Arc<Self>,
        shard: usize,
        takeover: impl FnOnce() -> bool,
    ) -> Option<Admission> {
        let max = self.max_connections;
        let counted = self
            .connections
            .fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .is_ok();
        if !counted {
            if !takeover() {
                self.shards[shard].refused.fetch_add(1, Relaxed);
                return None;
            }
            self.connections.fetch_add(1, Relaxed);
        }
        self.shards[shard].connections.fetch_add(1, Relaxed);
        Some(Admission {
            metrics: self.clone(),
            shard,
        })
    }
}

/// A connection counted against `max-connections`, until it drops.
#[derive(Debug)]
pub struct Admission {
    metrics: Arc<Metrics>,
    shard: usize,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.connections.fetch_sub(1, Relaxed);
        self.metrics.shards[self.shard]
            .connections
            .fetch_sub(1, Relaxed);
    }
}

impl ShardMetrics {
    /// Copies what `broker` counts. `depths` also walks the sessions for the
    /// queue depths.
    pub fn store(&self, broker: &Broker, depths: bool) {
        let stats = &broker.stats;
        self.connects.store(stats.connections, Relaxed);
        self.sessions.store(broker.session_count() as u64, Relaxed);
        self.subscriptions
            .store(broker.subscription_count() as u64, Relaxed);
        self.retained.store(broker.retained_count() as u64, Relaxed);
        for (to, from) in self.received.iter().zip(stats.messages_in) {
            to.store(from, Relaxed);
        }
        for (to, from) in self.sent.iter().zip(stats.messages_sent) {
            to.store(from, Relaxed);
        }
        let dropped = [
            stats.dropped_queue_full,
            stats.dropped_expired,
            stats.dropped_offline,
            stats.dropped_not_acked,
            stats.dropped_too_large,
        ];
        for (to, from) in self.dropped.iter().zip(dropped) {
            to.store(from, Relaxed);
        }
        for (to, from) in self.auth_failures.iter().zip(stats.auth_failures) {
            to.store(from, Relaxed);
        }
        self.publishes_denied.store(stats.publishes_denied, Relaxed);
        self.publishes_rate_limited
            .store(stats.publishes_rate_limited, Relaxed);
        self.publishes_unstored
            .store(stats.publishes_unstored, Relaxed);
        self.subscriptions_revoked
            .store(stats.subscriptions_revoked, Relaxed);
        self.cluster_routes
            .store(broker.node_route_count() as u64, Relaxed);
        if depths {
            let (queued, inflight) = broker.queue_depths();
            self.queued.store(queued as u64, Relaxed);
            self.inflight.store(inflight as u64, Relaxed);
        }
    }

    /// Dropped deliveries for `kind`.
    pub fn dropped(&self, kind: DropKind) -> u64 {
        self.dropped[kind as usize].load(Relaxed)
    }
}

#[cfg(test)]
mod tests;
