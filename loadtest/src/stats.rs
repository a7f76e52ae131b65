//! What the run counts: sent, acked, received, lost, duplicated, reordered, errors by
//! reason, and the latency distribution (HdrHistogram, µs).

use std::borrow::Cow;
use std::cell::RefCell;
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

/// A latency histogram (µs) allocated at its first value.
///
/// A histogram up to 60 s at 3 significant digits is 17,408 counters, 136 KiB, zeroed
/// when made. Every connection used to make two to four (its figures, its receiver's,
/// the progress line's): 10,000 connections on one executor zeroed about 3 GB as
/// they started, in page faults (58 % of the executor's time in `clear_page_erms`,
/// perf, 2026-12-06), and receipt waited seconds behind it: the "receipt stalls above
/// about 8,000 connections per executor" of issue 15. Empty, this costs a pointer.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Option<Box<Histogram<u64>>>);

impl Latencies {
    /// Records a latency given in nanoseconds.
    pub fn record_ns(&mut self, latency_ns: u64) {
        let h = self.0.get_or_insert_with(|| Box::new(latency_histogram()));
        record_latency(h, latency_ns);
    }

    /// Adds every value of `other`.
    pub fn add(&mut self, other: &Histogram<u64>) {
        if other.is_empty() {
            return;
        }
        match &mut self.0 {
            Some(h) => h.add(other).expect("histograms share their bounds"),
            None => self.0 = Some(Box::new(other.clone())),
        }
    }

    pub fn merge(&mut self, other: &Latencies) {
        if let Some(h) = &other.0 {
            self.add(h);
        }
    }

    /// The histogram, empty if nothing was recorded.
    pub fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        match &self.0 {
            Some(h) => Cow::Borrowed(h),
            None => Cow::Owned(latency_histogram()),
        }
    }

    pub fn len(&self) -> u64 {
        self.0.as_ref().map_or(0, |h| h.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One executor's latency histograms, which all its connections record into rather
/// than into histograms of their own (see [`Latencies`]); shard-local, `Rc`-shared.
#[derive(Debug)]
pub struct Recorder {
    /// Messages meant for the measured window.
    pub latency: RefCell<Latencies>,
    /// Since the last progress line.
    pub interval: RefCell<Histogram<u64>>,
    /// fleet: reconnect times.
    pub reconnect: RefCell<Latencies>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            latency: RefCell::new(Latencies::default()),
            interval: RefCell::new(latency_histogram()),
            reconnect: RefCell::new(Latencies::default()),
        }
    }
}

impl Recorder {
    /// Hands the progress line this executor's latencies since the last feed.
    pub fn feed(&self, live: &Live) {
        live.add_interval(&mut self.interval.borrow_mut());
    }

    /// Moves what was recorded into `stats`, at the end of the executor's run.
    pub fn drain_into(&self, stats: &mut Stats) {
        stats.latency.merge(&self.latency.take());
        stats.reconnect.merge(&self.reconnect.take());
    }
}

/// The figures of one connection, one executor or the whole run (merged).
#[derive(Debug, Clone, Default)]
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
    /// Receive time minus intended send time, µs. Receivers record into their
    /// executor's [`Recorder`], merged in here at the end.
    pub latency: Latencies,
    /// Connection refusals, drops and protocol errors, by reason.
    pub errors: BTreeMap<String, u64>,
    /// fleet: reconnect times (connect to CONNACK) of the reconnect storm, µs.
    pub reconnect: Latencies,
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
        self.latency.merge(&other.latency);
        self.reconnect.merge(&other.reconnect);
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
            a.latency.record_ns(us * 1_000 + 999);
        }
        let mut b = Stats::default();
        b.latency.record_ns(5_000_000_000); // 5 s
        b.latency.record_ns(3_600_000_000_000); // 1 h: saturates
        b.error("connack: 0x87");
        a.merge(&b);
        let h = a.latency.histogram();
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
    fn figures_without_latencies_hold_no_histogram() {
        // Regression (issue 15): a histogram per connection zeroed gigabytes.
        let stats = Stats::default();
        assert!(stats.latency.0.is_none() && stats.reconnect.0.is_none());
        let mut merged = Stats::default();
        merged.merge(&stats);
        assert!(merged.latency.0.is_none());
        assert_eq!(merged.latency.histogram().len(), 0);
        let recorder = Recorder::default();
        recorder.latency.borrow_mut().record_ns(2_000);
        recorder.drain_into(&mut merged);
        assert_eq!(merged.latency.len(), 1);
        assert!(recorder.latency.borrow().is_empty());
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
