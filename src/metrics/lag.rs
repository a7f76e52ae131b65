//! The event-loop lag histogram: how late a shard's periodic timer fires.
//!
//! A shard that is busy (a long task, a stall, a flood of packets) runs its
//! timer late; the lag is how long any waiting task on that shard would also
//! have waited.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds; a last bucket takes the rest.
pub const BOUNDS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// A fixed-bucket histogram written by one shard, read by any thread.
#[derive(Debug, Default)]
pub struct LagHistogram {
    /// Observations per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    /// Sum of the observations, in microseconds.
    sum_us: AtomicU64,
}

/// A copy of a [`LagHistogram`], in Prometheus' shape.
#[derive(Debug, Clone, PartialEq)]
pub struct LagSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl LagHistogram {
    /// Records one lag. Only the owning shard calls this, so a load and a store
    /// suffice.
    pub fn observe(&self, lag: Duration) {
        let us = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        let index = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BOUNDS_US.len());
        let bucket = &self.buckets[index];
        bucket.store(bucket.load(Relaxed) + 1, Relaxed);
        self.sum_us
            .store(self.sum_us.load(Relaxed).saturating_add(us), Relaxed);
    }

    pub fn snapshot(&self) -> LagSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(BOUNDS_US.len());
        for (bound, bucket) in BOUNDS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            buckets.push((*bound as f64 / 1e6, cumulative));
        }
        cumulative += self.buckets[BOUNDS_US.len()].load(Relaxed);
        LagSnapshot {
            buckets,
            count: cumulative,
            sum: self.sum_us.load(Relaxed) as f64 / 1e6,
        }
    }
}
