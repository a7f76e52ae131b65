//! The event sinks' counters, per sink and per shard.
//!
//! Each shard's sink tasks write their own [`SinkShardMetrics`] directly
//! (one writer, relaxed atomics, on counts per frame or per dropped event, so
//! nothing is touched per event that is sent); `/metrics` sums over shards.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::EVENT_HOOKS;

/// One `[[events.sinks]]` entry's numbers.
#[derive(Debug)]
pub struct EventSinkMetrics {
    /// The sink's label in `/metrics`: its address (with `#n` when two sinks
    /// share one).
    pub name: String,
    /// The hooks the sink was configured with, as indices into [`EVENT_HOOKS`].
    pub hooks: Vec<usize>,
    shards: Box<[SinkShardMetrics]>,
}

/// One sink on one shard.
#[derive(Debug, Default)]
pub struct SinkShardMetrics {
    /// Events written to a consumer connection (a replay counts again).
    pub sent: AtomicU64,
    /// Events dropped because the sink's buffer was full, by hook (indices of
    /// [`EVENT_HOOKS`]).
    pub dropped: [AtomicU64; EVENT_HOOKS.len()],
    /// Connections established.
    pub connects: AtomicU64,
    /// Connections lost (closed, reset, or a protocol error from the peer).
    pub disconnects: AtomicU64,
    /// Bytes held for the sink: unsent batches and unacked frames.
    pub buffered: AtomicU64,
}

impl SinkShardMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed) + n, Relaxed);
    }
}

impl EventSinkMetrics {
    pub fn new(name: String, hooks: Vec<usize>, nr_shards: usize) -> EventSinkMetrics {
        EventSinkMetrics {
            name,
            hooks,
            shards: (0..nr_shards)
                .map(|_| SinkShardMetrics::default())
                .collect(),
        }
    }

    pub fn shard(&self, shard: usize) -> &SinkShardMetrics {
        &self.shards[shard]
    }

    fn sum(&self, field: impl Fn(&SinkShardMetrics) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| field(s).load(Relaxed)).sum()
    }

    /// Events sent, node-wide.
    pub fn sent(&self) -> u64 {
        self.sum(|s| &s.sent)
    }

    /// Events of hook `hook` (an index of [`EVENT_HOOKS`]) dropped, node-wide.
    pub fn dropped(&self, hook: usize) -> u64 {
        self.sum(|s| &s.dropped[hook])
    }

    /// Events dropped, every hook, node-wide.
    pub fn dropped_total(&self) -> u64 {
        self.hooks.iter().map(|&h| self.dropped(h)).sum()
    }

    pub fn connects(&self) -> u64 {
        self.sum(|s| &s.connects)
    }

    pub fn disconnects(&self) -> u64 {
        self.sum(|s| &s.disconnects)
    }

    pub fn buffered(&self) -> u64 {
        self.sum(|s| &s.buffered)
    }
}
