//! What the run counts: sent, acked, received, lost, duplicated, reordered, errors by
//! reason, and the latency distribution (HdrHistogram, µs).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;

/// The highest latency recorded exactly, in µs (60 s); above it, values saturate.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in µs with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_max(MAX_LATENCY_US, 3).expect("valid bounds")
}

/// Records a latency given in nanoseconds, in µs.
pub fn record_latency(hist: &mut Histogram<u64>, latency_ns: u64) {
    hist.saturating_record(latency_ns / 1_000);
}

/// The figures of one connection, one executor or the whole run (merged).
#[derive(Debug, Clone)]
pub struct Stats {
    /// Publishes written whose intended time is in the measured window.
    pub sent: u64,
    /// Of those, acknowledged by the broker (QoS 1).
    pub acked: u64,
    /// Publishes received in the measured window (counting every subscriber).
    pub received: u64,
    /// Publishes that arrived while the measured window was open, whenever they were
    /// meant to be sent: what the broker delivered in that time. Under overload the
    /// two differ: a broker working through a backlog from the warm-up delivers a lot
    /// in the window and nothing sent in it.
    pub arrived: u64,
    /// Sequence gaps never filled, per (subscriber, publisher).
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Receive time minus intended send time, µs.
    pub latency: Histogram<u64>,
    /// Connection refusals, drops and protocol errors, by reason.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            sent: 0,
            acked: 0,
            received: 0,
            arrived: 0,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            latency: latency_histogram(),
            errors: BTreeMap::new(),
        }
    }
}

impl Stats {
    pub fn error(&mut self, reason: impl Into<String>) {
        *self.errors.entry(reason.into()).or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.received += other.received;
        self.arrived += other.arrived;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.latency
            .add(&other.latency)
            .expect("histograms share their bounds");
        for (reason, n) in &other.errors {
            *self.errors.entry(reason.clone()).or_default() += n;
        }
    }
}

/// What the progress line reads once a second, fed from every executor.
#[derive(Debug)]
pub struct Live {
    /// Connections that got their CONNACK (and SUBACK).
    pub connected: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
    /// Latencies since the last progress line; executors add theirs about once a
    /// second, not per message.
    pub interval: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            connected: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            interval: Mutex::new(latency_histogram()),
        }
    }
}

impl Live {
    pub fn add_interval(&self, hist: &mut Histogram<u64>) {
        if hist.is_empty() {
            return;
        }
        if let Ok(mut shared) = self.interval.lock() {
            let _ = shared.add(&*hist);
        }
        hist.reset();
    }

    /// The p99 since the last call, in µs (0 when nothing arrived).
    pub fn take_p99(&self) -> u64 {
        match self.interval.lock() {
            Ok(mut shared) => {
                let p99 = shared.value_at_quantile(0.99);
                shared.reset();
                p99
            }
            Err(_) => 0,
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hdr_records_microseconds_and_merges() {
        let mut a = Stats::default();
        for us in 1..=1000 {
            record_latency(&mut a.latency, us * 1_000 + 999);
        }
        let mut b = Stats::default();
        record_latency(&mut b.latency, 5_000_000_000); // 5 s
        record_latency(&mut b.latency, 3_600_000_000_000); // 1 h: saturates
        b.error("connack: 0x87");
        a.merge(&b);
        let h = &a.latency;
        assert_eq!(h.len(), 1002);
        assert_eq!(h.min(), 1);
        assert_eq!(h.value_at_quantile(0.5), 501);
        // 3 significant digits: 990 µs is exact.
        assert_eq!(h.value_at_quantile(0.99), 992);
        assert!(h.equivalent(h.max(), MAX_LATENCY_US), "{}", h.max());
        assert_eq!(h.count_between(4_990_000, 5_010_000), 1);
        assert_eq!(a.error_count(), 1);
    }

    #[test]
    fn live_interval_resets() {
        let live = Live::default();
        let mut local = latency_histogram();
        local.record(250).unwrap();
        live.add_interval(&mut local);
        assert!(local.is_empty());
        assert_eq!(live.take_p99(), 250);
        assert_eq!(live.take_p99(), 0);
    }
}
